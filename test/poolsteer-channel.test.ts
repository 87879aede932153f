/**
 * The published pool steered in the kernel (the default), for the instances
 * that cannot take a member: a static program under the supervisor, a
 * restored one. They register a channel, and a member of the daemon's own
 * (a relay) takes their turns in the group, handing each connection down
 * the channel; and what the pool keeps of every instance: ACTIVE under round
 * robin, takeover from whichever process holds a member. APPSHOT_POOL_STEER
 * is cleared (KERNEL), so that these test the default in any run.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, type WhoLoad, appshot, appshotAsync, freePort, makeHome, waitFor, who, whoUnderLoad } from './helpers.js';
import { KERNEL, type PubRow, instance, stop, tally } from './poolsteer-help.js';

const HTTPD = builtProgram('static-httpd');

describe.each(MODES)('published ports steered in the kernel, every instance in turn (%s)', (_mode, flags) => {
  it('a static program under the supervisor (a channel) takes its turns through the daemon\'s member: round robin stays exact over it and a member', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub, [...flags])];
    const st = appshotAsync(home, ['run', ...flags, '--aid', 'st', '--publish', `${pub}:8080`, '--', HTTPD, 'serve', 'st', '8080', '5'], KERNEL);
    try {
      await waitFor(st.out, /listening/);
      const answers: string[] = [];
      for (let i = 0; i < 10; i++) answers.push((await who(pub)).trim().split(' ')[0]);
      expect(tally(answers)).toEqual({ a: 5, st: 5 });
      expect((await st.done).code).toBe(0);
      expect(readFileSync(join(home, 'pools', `${pub}.log`), 'utf8')).toMatch(/instance of st registered: .* through a channel .* its turns are taken by the daemon's member in slot 1/);
    } finally {
      await stop([...list, st]);
    }
  });

  it('ps counts open connections under round robin (ACTIVE), as the kernel\'s socket table holds them', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub, [...flags]), await instance(home, 'b', pub, [...flags]), await instance(home, 'c', pub, [...flags])];
    const held = [0, 1].map(() => connect(pub, '127.0.0.1'));
    try {
      await Promise.all(held.map((s) => new Promise((resolve) => s.once('connect', resolve))));
      const rows = JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout) as PubRow[];
      const inst = rows[0].pool.instances as unknown as { aid: string; active: number }[];
      expect(inst.map((i) => [i.aid, i.active]).sort()).toEqual([['a', 1], ['b', 1], ['c', 0]]);
    } finally {
      for (const s of held) s.destroy();
      await stop(list);
    }
  });
});

describe('published ports steered in the kernel: channels that end, members held by a worker', () => {
  it('a static program (a channel) killed with SIGKILL under load: what waited at the daemon\'s member for it moves to the other instance; only requests in flight at it fail', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub)];
    const st = appshotAsync(home, ['run', '--aid', 'st', '--publish', `${pub}:8080`, '--', HTTPD, 'serve', 'st', '8080', '100000'], KERNEL);
    list.push(st);
    try {
      await waitFor(st.out, /listening/);
      const ps = JSON.parse(appshot(home, ['ps', '--aid', 'st', '--json']).stdout) as { spid: number; command: string }[];
      const spid = ps.find((p) => p.command.includes('static-httpd'))?.spid ?? 0;
      expect(spid).toBeGreaterThan(0);
      const TOTAL = 400;
      const CONCURRENCY = 4;
      let diedAt = Infinity;
      const load: WhoLoad = { answers: [], failures: [] };
      const killer = (async () => {
        await waitFor(() => String(load.answers.filter((a) => a.who.startsWith('st ')).length), /^(?:[5-9]\d|\d{3,})$/);
        process.kill(spid, 'SIGKILL');
        await st.done;
        diedAt = performance.now();
      })();
      await Promise.all([killer, whoUnderLoad(pub, TOTAL, CONCURRENCY, load)]);
      expect(load.answers.length).toBeGreaterThanOrEqual(TOTAL);
      for (const f of load.failures) expect(f.startedAt, `a request started after the instance died failed: ${f.error}`).toBeLessThan(diedAt);
      expect(load.failures.length).toBeLessThanOrEqual(CONCURRENCY);
      expect(load.answers.filter((a) => a.startedAt > diedAt && a.who.startsWith('st '))).toEqual([]);
      expect(load.answers.filter((a) => a.startedAt > diedAt && a.who === 'a').length).toBeGreaterThan(0);
      await waitFor(() => appshot(home, ['tables', '--type', 'publish', '--json']).stdout, /^(?![\s\S]*"aid":"st")[\s\S]*"aid":"a"/, 5000);
    } finally {
      await stop(list);
    }
  });

  it('kill -9 of the daemon after the process that listened let go of its socket: the next daemon finds the member in the forked worker that holds it', async () => {
    const home = makeHome();
    const pub = await freePort();
    const server = `import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 8080))
s.listen()
if os.fork() == 0:
    while True:
        c, _ = s.accept()
        c.recv(1000)
        c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nworker')
        c.close()
s.close()
print('worker', flush=True)
os.wait()`;
    const list = [await instance(home, 'a', pub)];
    const w = appshotAsync(home, ['run', '--aid', 'w', '--publish', `${pub}:8080`, '--', 'python3', '-u', '-c', server], KERNEL);
    list.push(w);
    let worker = 0;
    try {
      await waitFor(w.out, /worker/);
      const status = () => (JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout) as (PubRow & { pool: { pid: number } })[])[0].pool;
      const spid = () => (status().instances as unknown as { aid: string; spid: number }[]).find((i) => i.aid === 'w')?.spid ?? 0;
      const registered = spid();
      const old = status().pid;
      process.kill(old, 'SIGKILL');
      await waitFor(() => JSON.stringify(status()), /"instances":\[\{"aid":"[aw]".*"aid":"[aw]"/, 10_000);
      expect(status().pid).not.toBe(old);
      // The worker, which the application's harness waits for, is ended by us.
      worker = spid();
      expect(worker).not.toBe(registered);
      expect(readFileSync(`/proc/${worker}/cmdline`, 'utf8')).toContain('python3');
      const answers: string[] = [];
      for (let k = 0; k < 10; k++) answers.push(await who(pub));
      expect(tally(answers)).toEqual({ a: 5, worker: 5 });
      expect(readFileSync(join(home, 'pools', `${pub}.log`), 'utf8')).toMatch(/instance of w: its member is held by pid \d+ now/);
    } finally {
      if (worker > 0) process.kill(worker, 'SIGTERM');
      await stop(list);
    }
  });

});
