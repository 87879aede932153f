import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, freePort, lines, makeHome, tablesJson, waitFor, who } from './helpers.js';

/** Programs no shim reaches (test/fixtures/static, test/fixtures/go, built
 * by npm run build): appshot covers them through the supervisor's
 * seccomp user-notification filter (native/notify). */
const HTTPD = builtProgram('static-httpd');
const TOOL = builtProgram('static-tool');
const GO = builtProgram('go-httpd');
const GO_DYNAMIC = builtProgram('go-httpd-dynamic');
const REMAP_BASE = 0x10000000;
const RANGE = { lo: 20000, hi: 29999 };

interface Server {
  what: string;
  serve: (name: string, port: number) => string[];
  /** A client run inside the application: its output holds the server's name. */
  get: (port: number) => string[];
  /** What ends the server once the client has been answered, if anything. */
  quit?: (port: number) => string[];
}
const SERVERS: Server[] = [
  { what: 'a static C server', serve: (n, p) => [HTTPD, 'serve', n, String(p), '1'], get: (p) => [HTTPD, 'get', String(p)] },
  { what: 'a static Go server', serve: (n, p) => [GO, 'serve', n, String(p)], get: (p) => [GO, 'get', String(p)], quit: (p) => [GO, 'get', String(p), '/quit'] },
  { what: 'a dynamic Go server (cgo)', serve: (n, p) => [GO_DYNAMIC, 'serve', n, String(p)], get: (p) => [GO_DYNAMIC, 'get', String(p)], quit: (p) => [GO_DYNAMIC, 'get', String(p), '/quit'] },
];

describe.each(MODES)('static and Go programs, %s', (mode, flags) => {
  const remapped = mode === 'remapped';

  it.each(SERVERS)('two copies of $what insist on one virtual port at once, each reached by a client inside its own application', async (s) => {
    const home = makeHome();
    const vport = await freePort();
    const tag = s.serve('x', 0)[0].split('/').pop();
    // One after the other, so that in identity mode the first is the one that gets the port itself.
    const servers = [];
    for (const name of ['one', 'two']) {
      const run = appshotAsync(home, ['run', '--aid', `${tag}-${name}`, ...flags, '--', ...s.serve(name, vport)]);
      const m = await waitFor(run.out, /listening (\d+) pid (\d+)(?: ppid \d+)?( shim \w+)?\n/);
      expect(Number(m[1])).toBe(vport); // the listener's own address: the virtual port
      if (s.serve('x', 0)[0] !== HTTPD) expect(m[3]).toBe(' shim no'); // Go never meets the shim, cgo or not
      const pid = Number(m[2]);
      if (remapped) expect(pid).toBeGreaterThanOrEqual(REMAP_BASE);
      else expect(pid).toBeLessThan(REMAP_BASE);
      servers.push({ name, run, pid });
    }
    const rows = tablesJson(home, ['--type', 'port']);
    expect(rows.map((r) => [r.aid, r.virtual]).sort()).toEqual([
      [`${tag}-one`, vport],
      [`${tag}-two`, vport],
    ]);
    const system = (name: string) => rows.find((r) => r.aid === `${tag}-${name}`)!.system as number;
    if (remapped) expect(system('one')).not.toBe(vport);
    else expect(system('one')).toBe(vport);
    expect(system('two')).toBeGreaterThanOrEqual(RANGE.lo);
    expect(system('two')).toBeLessThanOrEqual(RANGE.hi);
    for (const { name, pid } of servers) {
      const r = appshot(home, ['exec', `${tag}-${name}`, '--', ...s.get(vport)]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain(`${name} ${pid}`);
      if (s.get(0)[0] === HTTPD) expect(r.stdout).toMatch(new RegExp(`^peer ${vport} body `)); // getpeername: the virtual port
      if (s.quit) expect(appshot(home, ['exec', `${tag}-${name}`, '--', ...s.quit(vport)]).stdout).toBe('bye\n');
    }
    for (const { run } of servers) {
      const done = await run.done;
      expect(done.stderr).toBe('');
      expect(done.code).toBe(0);
    }
  });

  it.each(SERVERS.slice(0, 2))('two copies of $what publish one public port: its connections go to both', async (s) => {
    const home = makeHome();
    const [vport, pub] = [await freePort(), await freePort()];
    const tag = `pub-${s.serve('x', 0)[0].split('/').pop()}`;
    const runs = [];
    for (const name of ['one', 'two']) {
      // The C server answers two requests and ends; the Go server until /quit.
      const serve = s.quit ? s.serve(name, vport) : [...s.serve(name, vport).slice(0, -1), '2'];
      const run = appshotAsync(home, ['run', '--aid', `${tag}-${name}`, ...flags, '--publish', `127.0.0.1:${pub}:${vport}`, '--', ...serve]);
      await waitFor(run.out, /listening/);
      runs.push(run);
    }
    const bodies = [];
    for (let i = 0; i < 4; i++) bodies.push((await who(pub)).trim().split(' '));
    expect(bodies.map((b) => b[0]).sort()).toEqual(['one', 'one', 'two', 'two']); // round robin over both instances
    // The C server tells the connection's own port: the virtual one, not the public one it came in at.
    if (!s.quit) for (const b of bodies) expect(Number(b[3])).toBe(vport);
    if (s.quit) for (const name of ['one', 'two']) appshot(home, ['exec', `${tag}-${name}`, '--', ...s.quit(vport)]);
    for (const run of runs) {
      const done = await run.done;
      expect(done.stderr).toBe('');
      expect(done.code).toBe(0);
    }
  });

  it('two static UDP services on one virtual port: a static client\'s sendto reaches its own application\'s', async () => {
    const home = makeHome();
    const vport = await freePort();
    const runs = [];
    for (const name of ['one', 'two']) {
      // Each stays until both have been answered: in identity mode the first holds the port itself.
      const out = `${home}/${name}.out`;
      const script = `${TOOL} udpecho ${name} ${vport} > ${out} & until grep -qs bound ${out}; do sleep 0.02; done
        ${TOOL} udpsend ${vport} hello-${name}; wait; until [ -e ${home}/done ]; do sleep 0.02; done`;
      const run = appshotAsync(home, ['run', '--aid', `udp-${name}`, ...flags, '--', 'sh', '-c', script]);
      await waitFor(run.out, /reply/, 15_000);
      runs.push(run);
    }
    writeFileSync(join(home, 'done'), '');
    const [one, two] = await Promise.all(runs.map((r) => r.done));
    expect([one.stdout, one.stderr, two.stdout, two.stderr]).toEqual(['reply one:hello-one\n', '', 'reply two:hello-two\n', '']);
  });

  it('a static server started by a shell under the shim: its pid is the vpid the shell knows, kill of that vpid from a static program reaches it', () => {
    const home = makeHome();
    const out = `${home}/server.out`;
    const script = `${HTTPD} serve one 0 1 > ${out} & server=$!
      until grep -qs listening ${out}; do sleep 0.02; done
      echo "started $server $$"; cat ${out}
      ${TOOL} pid kill $server 15
      wait $server 2>/dev/null; echo "status $?"`;
    const r = appshot(home, ['run', ...flags, '--', 'sh', '-c', script]);
    expect(r.stderr).toBe('');
    const out2 = lines(r.stdout);
    const [, server, shell] = out2[0].split(' ').map(Number);
    if (remapped) expect(server).toBeGreaterThanOrEqual(REMAP_BASE);
    expect(out2[1]).toMatch(new RegExp(`^listening \\d+ pid ${server} ppid ${shell}$`));
    expect(out2[2]).toMatch(new RegExp(`^pid (\\d+) tid \\1 ppid ${shell}$`));
    expect(out2.slice(3)).toEqual(['kill 0', 'status 143']);
  });

  it('a static program forks: fork, waitpid and the child\'s own getpid agree, and the child\'s getppid is its parent\'s vpid', () => {
    // The parent asks its own pid only after: its row comes from its exec.
    const r = appshot(makeHome(), ['run', ...flags, '--', TOOL, 'fork', 'pid']);
    expect(r.stderr).toBe('');
    const [child, waited, self] = lines(r.stdout);
    const pid = Number(self.split(' ')[1]);
    if (remapped) expect(pid).toBeGreaterThanOrEqual(REMAP_BASE);
    const m = child.match(/^child pid (\d+) ppid (\d+)$/)!;
    expect(Number(m[2])).toBe(pid);
    // fork's and waitpid's results are the kernel's; the child is recorded under that number.
    expect(waited).toBe(`forked ${m[1]} waited ${m[1]} 3`);
  });

  it('a dynamic program run by a static one keeps the shim: its bind is translated once, its getpid is its vpid', async () => {
    const home = makeHome();
    const vport = await freePort();
    const py = `import os, socket; s = socket.socket(); s.bind(("127.0.0.1", ${vport})); print(s.getsockname()[1], os.getpid())`;
    const r = appshot(home, ['run', '--keep', '--aid', 'mixed', ...flags, '--', TOOL, 'pid', 'exec', 'python3', '-c', py]);
    expect(r.stderr).toBe('');
    const [pidLine, pyLine] = lines(r.stdout);
    const pid = Number(pidLine.split(' ')[1]);
    expect(pyLine).toBe(`${vport} ${pid}`); // the same process after exec: the same vpid
    const rows = tablesJson(home, ['--type', 'port']);
    expect(rows.map((x) => x.virtual)).toEqual([vport]); // not its system port as one more virtual port
    expect(appshot(home, ['gc', '--kept']).code).toBe(0);
  });

  it('a static program waiting in msgrcv is woken by a message another sends: on a remapped queue the call waits in a supervisor thread and the message is copied back', async () => {
    const home = makeHome();
    const r = appshotAsync(home, ['run', '--aid', 'waiter', ...flags, '--', 'sh', '-c', `${TOOL} msgwait 0x6a17 & sleep 0.5; ${TOOL} msgsend 0x6a17 late; wait; ${TOOL} rmid 0x6a17`]);
    const done = await r.done;
    expect(done.stderr).toBe('');
    expect(lines(done.stdout).sort()).toEqual(['rmid', expect.stringMatching(/^sent \d+$/), 'waited late']);
  });

  it('a fixed IPC key stays apart between two applications: semget, semctl, semop, msgget, msgsnd, msgrcv, IPC_RMID', async () => {
    const home = makeHome();
    // Each application makes its set and queue on key 0x5eed, then, once both
    // have, reads them back and removes them.
    const apps = ['one', 'two'].map((name, i) =>
      appshotAsync(home, ['run', '--aid', `ipc-${name}`, ...flags, '--', 'sh', '-c',
        `${TOOL} sem 0x5eed ${5 + 2 * i} msgsend 0x5eed hello-${name}; until [ -e ${home}/go ]; do sleep 0.02; done; ${TOOL} semget 0x5eed msgrecv 0x5eed rmid 0x5eed semget 0x5eed`]),
    );
    for (const a of apps) await waitFor(a.out, /sent/);
    const keys = tablesJson(home, ['--type', 'semkey']);
    expect(keys.map((r) => [r.aid, r.virtual]).sort()).toEqual([
      ['ipc-one', 0x5eed],
      ['ipc-two', 0x5eed],
    ]);
    expect(new Set(keys.map((r) => r.system)).size).toBe(2);
    writeFileSync(join(home, 'go'), '');
    const [one, two] = await Promise.all(apps.map((a) => a.done));
    for (const [r, value, name] of [[one, 6, 'one'], [two, 8, 'two']] as const) {
      expect(r.stderr).toBe('');
      const [sem, sent, got, recv, rmid, gone] = lines(r.stdout);
      const id = Number(sem.split(' ')[1]);
      if (remapped) expect(id).toBeGreaterThanOrEqual(REMAP_BASE);
      expect(sem).toBe(`sem ${id} ${value}`); // its own set: its own value, plus one
      expect(sent).toMatch(/^sent \d+$/);
      expect(got).toBe(`semget ${id}`);
      expect([recv, rmid, gone]).toEqual([`recv hello-${name}`, 'rmid', 'semget failed ENOENT']);
    }
  });

  it(remapped ? 'shmat and semop with SEM_UNDO on remapped IDs are refused with a message naming the call and the way out' : 'shmat and semop with SEM_UNDO on identity IDs are the program\'s own calls', () => {
    const r = appshot(makeHome(), ['run', ...flags, '--', TOOL, 'shm', '0x5eed', 'undo', '0x5eee']);
    if (!remapped) {
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^shm \d+ attached\nundo 0\n$/);
      return;
    }
    expect(r.stdout).toBe('shm failed ENOSYS\nundo failed ENOSYS\n');
    expect(lines(r.stderr)).toEqual([
      expect.stringMatching(/^appshot: shmat of a remapped segment by a statically linked or Go program \(kernel pid \d+\) is refused: .*; link the program dynamically .*, or run its application without --no-identity$/),
      expect.stringMatching(/^appshot: semop with SEM_UNDO on a remapped semaphore set by a statically linked or Go program \(kernel pid \d+\) is refused: .*the undo list is the caller's.*$/),
    ]);
  });
});
