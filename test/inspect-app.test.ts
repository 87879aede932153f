import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MSGTOOL, SEMTOOL, SHMTOOL, appshot, appshotAsync, makeHome, tablesJson, waitFor } from './helpers.js';
import type { AppDetail } from '../harness/views/app.js';

/** What `inspect --json` prints, read as the library declares it. */
function inspectJson(home: string, aid: string): AppDetail {
  const r = appshot(home, ['inspect', aid, '--json']);
  if (r.code !== 0) throw new Error(`appshot inspect failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * A program that makes one object of each family, keeps the segment
 * attached in a process of its own and listens on a TCP port: it prints
 * the virtual IDs it was given, "sem id N" and so on.
 */
function program(keys: { sem: string; shm: string; msg: string }, port: number): string[] {
  const listen = `import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', ${port})); s.listen(); print('bound', s.getsockname()[1], flush=True); time.sleep(100000)`;
  return [
    'sh',
    '-c',
    `echo sem $(${SEMTOOL} get ${keys.sem} 2 c) && echo msg $(${MSGTOOL} get ${keys.msg} c) && echo shm $(${SHMTOOL} get ${keys.shm} 8192 c) && ` +
      `{ ${SHMTOOL} get ${keys.shm} 8192 - attach - sleep 100000 >/dev/null & } && exec python3 -c "${listen}"`,
  ];
}

describe('appshot inspect', () => {
  it.each([
    { mode: 'identity', flags: [] as string[], keys: { sem: '0x4a1701', shm: '0x4a1702', msg: '0x4a1703' }, port: 47811, publish: 47911 },
    { mode: '--no-identity', flags: ['--no-identity'], keys: { sem: '0x4a1711', shm: '0x4a1712', msg: '0x4a1713' }, port: 47821, publish: null },
  ])('shows a running application whole, then ended ($mode)', async ({ mode, flags, keys, port, publish }) => {
    const home = makeHome();
    const from = join(home, 'data');
    const to = join(home, 'real');
    mkdirSync(to);
    const aid = mode === 'identity' ? 'whole' : 'whole-ni';
    const cmd = program(keys, port);
    const publishing = publish === null ? [] : ['--publish', `${publish}:${port}`];
    const app = appshotAsync(home, ['run', '--aid', aid, ...flags, ...publishing, '--redir', `${from}=${to}`, '--', ...cmd]);
    try {
      await waitFor(app.out, /^bound \d+$/m);
      const printed = (family: string) => Number(app.out().match(new RegExp(`^${family} id (\\d+)$`, 'm'))![1]);
      // The segment's own process has attached it by now once inspect counts 1.
      let d = inspectJson(home, aid);
      for (let i = 0; i < 100 && d.objects.find((o) => o.type === 'shm')?.attachments !== 1; i++) {
        await new Promise((r) => setTimeout(r, 50));
        d = inspectJson(home, aid);
      }

      expect(d).toMatchObject({
        aid,
        state: 'running',
        unsupervised: null,
        identity: mode === 'identity',
        template: null,
        command: cmd,
        ended: null,
        harness: { pid: app.child.pid, running: true },
        redirections: [{ from, to }],
      });
      expect(d.started).toMatch(ISO);
      expect(d.supervisor).toBeGreaterThan(0);

      // The objects, with the virtual IDs the program was given and the
      // system IDs `tables` shows for them.
      const objects = Object.fromEntries(d.objects.map((o) => [o.type, o]));
      expect(Object.keys(objects).sort()).toEqual(['msg', 'sem', 'shm']);
      for (const family of ['sem', 'shm', 'msg'] as const) {
        expect(objects[family].vrid).toBe(printed(family));
        expect(objects[family].key).toBe(Number(keys[family]));
        const row = tablesJson(home, ['--aid', aid, '--type', family])[0];
        expect(objects[family].srid).toBe(row.system);
        if (mode !== 'identity') expect(objects[family].srid).not.toBe(objects[family].vrid);
      }
      expect(objects.shm).toMatchObject({ size: 8192, attachments: 1, removed: false });

      // Its processes as ps shows them: the listener and the segment's holder.
      expect(d.processes.map((p) => p.state)).not.toContain('gone');
      expect(d.processes.some((p) => p.command.includes('python3') && p.command.includes(`${port}`))).toBe(true);
      expect(d.processes.some((p) => p.command.startsWith(SHMTOOL))).toBe(true);
      const ps = JSON.parse(appshot(home, ['ps', '--aid', aid, '--json']).stdout) as { spid: number }[];
      expect(d.processes.map((p) => p.spid).sort()).toEqual(ps.map((p) => p.spid).sort());

      // Its port: the virtual one it bound, the system one, the public one.
      expect(d.ports).toHaveLength(1);
      expect(d.ports[0]).toMatchObject({ proto: 'tcp', virtual: port, published: publish });
      if (mode === 'identity') expect(d.ports[0].system).toBe(port);
      else expect(d.ports[0].system).not.toBe(port);
      expect(d.pools.map((p) => ({ public: p.public, applications: p.applications }))).toEqual(publish === null ? [] : [{ public: publish, applications: [aid] }]);

      const human = appshot(home, ['inspect', aid]);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(new RegExp(`^application\\s+${aid}$`, 'm'));
      expect(human.stdout).toMatch(/^state\s+running$/m);
      expect(human.stdout).toMatch(new RegExp(`^harness\\s+pid ${app.child.pid} \\(running\\)$`, 'm'));
      expect(human.stdout).toMatch(mode === 'identity' ? /^identity\s+a virtual ID is its system ID where that one is free$/m : /^identity\s+no virtual ID equals its system ID \(--no-identity\)$/m);
      for (const heading of ['Processes:', 'Objects:', 'Shared memory segments:', 'Ports:', 'Path redirections:']) expect(human.stdout).toContain(`\n${heading}\n`);
      expect(human.stdout.includes('\nPools behind published ports:\n')).toBe(publish !== null);
      expect(human.stdout).toContain(from);

      // Every process ends: the application has ended.
      for (const p of d.processes) process.kill(p.spid, 'SIGTERM');
      expect((await app.done).code).not.toBeNull();
      const ended = inspectJson(home, aid);
      expect(ended).toMatchObject({ state: 'ended', unsupervised: null, supervisor: null, harness: { pid: app.child.pid, running: false }, processes: [], objects: [], ports: [] });
      expect(ended.ended).toMatch(ISO);
      expect(Date.parse(ended.ended!)).toBeGreaterThanOrEqual(Date.parse(ended.started));
      expect(appshot(home, ['inspect', aid]).stdout).toMatch(/^ended\s+\d{4}-/m);
    } finally {
      app.child.kill('SIGTERM');
      await app.done;
    }
  });

  it('an AID never registered: exit 1 naming it and the home; an invalid one: exit 2; a fresh home: exit 1 and nothing made', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--aid', 'there', '--', 'true']).code).toBe(0);
    const none = appshot(home, ['inspect', 'nobody']);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(`appshot: no application 'nobody' in ${home}: nothing has run under that AID here; 'appshot tables --apps' lists the applications there are\n`);
    expect(none.stdout).toBe('');
    expect(inspectJson(home, 'there')).toMatchObject({ aid: 'there', state: 'ended', command: ['true'] });

    const bad = appshot(home, ['inspect', '../x']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^appshot: '\.\.\/x' is not a valid application ID/);
    expect(appshot(home, ['inspect']).code).toBe(2);

    const fresh = makeHome();
    const r = appshot(fresh, ['inspect', 'nobody', '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`appshot: no application 'nobody' in ${fresh}: nothing has run under that AID here; 'appshot tables --apps' lists the applications there are\n`);
    expect(readdirSync(fresh)).toEqual([]);
    // A home that does not exist yet is not made either.
    const missing = join(fresh, 'not-yet');
    expect(appshot(missing, ['inspect', 'nobody']).code).toBe(1);
    expect(readdirSync(fresh)).toEqual([]);
  });
});
