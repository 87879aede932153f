/**
 * The published pool steered in the kernel (the default where the daemon,
 * as root, may load eBPF): each instance's listening descriptor is a member
 * of the public port's SO_REUSEPORT group and the daemon's program picks the
 * member of each connection. test/poolsteer-channel.test.ts tests the
 * instances that take their turns through a member of the daemon's (a
 * channel) and takeover from a forked worker. These tests clear APPSHOT_POOL_STEER, so that they test the
 * default even in a run that forces the hand-off (APPSHOT_POOL_STEER=user),
 * which test/pool.test.ts and the others then test.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';
import { MODES, type WhoLoad, appshot, appshotAsync, freePort, makeHome, waitFor, who, whoUnderLoad } from './helpers.js';
import { KERNEL, type PubRow, connectError, instance, listeningPorts, serverSpid, stop, tally } from './poolsteer-help.js';

const NETTOOL = join(ROOT, 'test', 'fixtures', 'nettool.py');

describe.each(MODES)('published ports steered in the kernel (%s)', (_mode, flags) => {
  it('round robin is exact; each instance listens on a member of the public port itself; ps counts what the kernel handed', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub, [...flags]), await instance(home, 'b', pub, [...flags]), await instance(home, 'c', pub, [...flags])];
    try {
      const answers: string[] = [];
      for (let i = 0; i < 30; i++) answers.push(await who(pub));
      expect(tally(answers)).toEqual({ a: 10, b: 10, c: 10 });
      // The server's listening descriptor is a TCP listener on the public
      // port: the kernel queues its connections there, no daemon between.
      for (const aid of ['a', 'b', 'c']) expect(listeningPorts(serverSpid(home, aid))).toEqual([pub]);
      // Its own (system) port reaches the same member, and counts; only at
      // the address the program bound (127.0.0.1), as natively.
      const sport = (JSON.parse(appshot(home, ['tables', '--type', 'port', '--aid', 'a', '--json']).stdout) as { system: number }[])[0].system;
      expect(await who(sport)).toBe('a');
      expect(await connectError('127.0.0.2', sport)).toBe('ECONNREFUSED');
      const rows = JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout) as PubRow[];
      expect(rows[0].pool.steer).toBe('kernel');
      expect(rows[0].pool.instances.map((i) => [i.aid, i.handed, i.unacked]).sort()).toEqual([['a', 11, 0], ['b', 10, 0], ['c', 10, 0]]);
      expect(readFileSync(join(home, 'pools', `${pub}.log`), 'utf8')).toContain('steering in the kernel');
    } finally {
      await stop(list);
    }
  });

  it('the descriptor answers as the program bound it, across exec and in forked workers; an epoll server (node, non-blocking accepts) serves', async () => {
    const home = makeHome();
    const pub = await freePort(2);
    const h = appshotAsync(home, ['run', ...flags, '--aid', 'handover', '--publish', `${pub}:8080`, '--', 'python3', '-u', NETTOOL, 'handover', '127.0.0.1', '8080'], KERNEL);
    await waitFor(h.out, /inherited.*\n/);
    expect(h.out()).toBe('inherited AF_INET SOCK_STREAM 8080\n');
    const pids = [await who(pub), await who(pub)].map(Number);
    expect(new Set(pids).size).toBe(2);
    const r = await h.done;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');

    const server = `const s = require('net').createServer((c) => c.end('node ' + s.address().port + '\\n'));
      s.listen(8080, '127.0.0.1', () => console.log('up', s.address().port));`;
    const n = appshotAsync(home, ['run', ...flags, '--aid', 'node', '--publish', `${pub + 1}:8080`, '--', process.execPath, '-e', server], KERNEL);
    try {
      await waitFor(n.out, /up \d+\n/);
      expect(n.out()).toBe('up 8080\n');
      const line = () =>
        new Promise<string>((resolve, reject) => {
          let got = '';
          const s = connect(pub + 1, '127.0.0.1');
          s.on('data', (d) => (got += d));
          s.on('end', () => resolve(got));
          s.on('error', reject);
        });
      expect([await line(), await line(), await line()]).toEqual(['node 8080\n', 'node 8080\n', 'node 8080\n']);
    } finally {
      await stop([n]);
    }
  });
});

describe('published ports steered in the kernel: no connection lost, and the fallback', () => {
  it('a program of the application connecting to its own published port reaches its own instance (its system port is steered to its member)', async () => {
    const home = makeHome();
    const pub = await freePort();
    const others = [await instance(home, 'a', pub)];
    try {
      const dir = join(home, 'self');
      mkdirSync(dir);
      writeFileSync(join(dir, 'who.txt'), 'self');
      const script = `python3 -u -m http.server 8080 --bind 127.0.0.1 --directory ${dir} > ${dir}/log 2>&1 &
        until grep -q Serving ${dir}/log; do sleep 0.05; done
        for i in 1 2 3 4; do python3 ${NETTOOL} get 127.0.0.1 8080 /who.txt; done
        kill $!`;
      const r = appshot(home, ['run', '--no-identity', '--aid', 'self', '--publish', `${pub}:8080`, '--', 'sh', '-c', script], KERNEL);
      expect(r.stdout).toBe('self\nself\nself\nself\n');
    } finally {
      await stop(others);
    }
  });

  it('600 requests while one instance is killed with SIGKILL: its queued connections move to the others; only requests in flight at it fail', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub), await instance(home, 'b', pub), await instance(home, 'c', pub)];
    try {
      const TOTAL = 600;
      const CONCURRENCY = 4;
      let diedAt = Infinity;
      const load: WhoLoad = { answers: [], failures: [] };
      const { answers, failures } = load;
      const killer = (async () => {
        await waitFor(() => String(answers.length), /^[2-9]\d\d$/);
        const spid = serverSpid(home, 'b');
        process.kill(spid, 'SIGKILL');
        await list[1].done;
        diedAt = performance.now();
      })();
      await Promise.all([killer, whoUnderLoad(pub, TOTAL, CONCURRENCY, load)]);
      expect(answers.length).toBeGreaterThanOrEqual(TOTAL);
      for (const f of failures) expect(f.startedAt, `a request started after the instance died failed: ${f.error}`).toBeLessThan(diedAt);
      expect(failures.length).toBeLessThanOrEqual(CONCURRENCY);
      expect(answers.filter((a) => a.startedAt > diedAt && a.who === 'b')).toEqual([]);
      // The daemon finds the member's end in its map and shows two.
      await waitFor(() => appshot(home, ['tables', '--type', 'publish', '--json']).stdout, /^(?![\s\S]*"aid":"b")[\s\S]*"aid":"c"/, 5000);
    } finally {
      await stop([list[0], list[2]]);
    }
  });

  it('an instance that stops accepting is taken out (its slot emptied; round robin alternates exactly over the others) and put back when it accepts again', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub), await instance(home, 'b', pub), await instance(home, 'c', pub)];
    const spid = serverSpid(home, 'b');
    try {
      process.kill(spid, 'SIGSTOP');
      // Three connections: one goes to b and waits in its queue.
      const first = [who(pub, 20_000), who(pub, 20_000), who(pub, 20_000)];
      await waitFor(() => readFileSync(join(home, 'pools', `${pub}.log`), 'utf8'), /instance of b .* is not accepting/, 5000);
      const meanwhile: string[] = [];
      for (let i = 0; i < 20; i++) meanwhile.push(await who(pub, 5000));
      expect(tally(meanwhile)).toEqual({ a: 10, c: 10 });
      process.kill(spid, 'SIGCONT');
      expect(tally(await Promise.all(first))).toEqual({ a: 1, b: 1, c: 1 });
      await waitFor(() => readFileSync(join(home, 'pools', `${pub}.log`), 'utf8'), /instance of b .* accepts again: back in the pool/, 5000);
      const after: string[] = [];
      for (let i = 0; i < 6; i++) after.push(await who(pub));
      expect(tally(after)).toEqual({ a: 2, b: 2, c: 2 });
    } finally {
      process.kill(spid, 'SIGCONT');
      await stop(list);
    }
  });

  it('kill -9 of the daemon: the port serves on through the program in the kernel; the next daemon takes the members over from their processes, and ps and the own ports are back', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub), await instance(home, 'b', pub)];
    try {
      const status = () => (JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout) as (PubRow & { pool: { pid: number } })[])[0].pool;
      const old = status().pid;
      process.kill(old, 'SIGKILL');
      // Served with no daemon, or by the next one (whose counter starts again).
      for (let k = 0; k < 4; k++) expect(await who(pub)).toMatch(/^[ab]$/);
      await waitFor(() => JSON.stringify(status()), /"instances":\[\{"aid":"[ab]".*"aid":"[ab]"/, 10_000);
      const now = status() as unknown as { pid: number; steer: string; instances: { aid: string; sport: number }[] };
      expect(now.pid).not.toBe(old);
      expect(now.steer).toBe('kernel');
      for (const i of now.instances) expect(await who(i.sport)).toBe(i.aid);
      const answers: string[] = [];
      for (let k = 0; k < 10; k++) answers.push(await who(pub));
      expect(tally(answers)).toEqual({ a: 5, b: 5 });
      expect(readFileSync(join(home, 'pools', `${pub}.log`), 'utf8')).toMatch(/instance of a taken over[\s\S]*2 instance\(s\) taken over/);
    } finally {
      await stop(list);
    }
  });

  it('a connection made before the first instance listens waits at the daemon\'s own member and is answered by it', async () => {
    const home = makeHome();
    const pub = await freePort();
    const dir = join(home, 'late');
    mkdirSync(dir);
    writeFileSync(join(dir, 'who.txt'), 'late');
    const h = appshotAsync(home, ['run', '--aid', 'late', '--publish', `127.0.0.1:${pub}:8080`, '--', 'sh', '-c',
      `until [ -e ${dir}/go ]; do sleep 0.05; done; exec python3 -u -m http.server 8080 --bind 127.0.0.1 --directory ${dir}`], KERNEL);
    try {
      await waitFor(() => appshot(home, ['tables', '--type', 'publish', '--json']).stdout, /"steer":"kernel"/, 5000);
      const s = connect(pub, '127.0.0.1');
      let got = '';
      s.on('data', (d) => (got += d));
      const ended = new Promise((resolve, reject) => (s.on('end', resolve), s.on('error', reject)));
      await new Promise((resolve) => s.once('connect', resolve)); // taken by the daemon's member: nothing listens yet
      expect(h.out()).toBe('');
      writeFileSync(join(dir, 'go'), '');
      s.write('GET /who.txt HTTP/1.0\r\n\r\n');
      await ended;
      expect(got).toMatch(/^HTTP\/1\.0 200[\s\S]*\r\n\r\nlate$/);
    } finally {
      await stop([h]);
    }
  });

  it('least connections: a new connection goes to the member with the fewest open ones, as the daemon counted them and the program picked since', async () => {
    const home = makeHome();
    const pub = await freePort();
    const list = [await instance(home, 'a', pub, ['--balance', 'lc']), await instance(home, 'b', pub, ['--balance', 'lc']), await instance(home, 'c', pub, ['--balance', 'lc'])];
    const held = [0, 1].map(() => connect(pub, '127.0.0.1'));
    try {
      await Promise.all(held.map((s) => new Promise((resolve) => s.once('connect', resolve))));
      // The two idle connections went to two members; every short request
      // after the daemon counted them goes to the third.
      const answers: string[] = [];
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 250));
        answers.push(await who(pub));
      }
      expect(new Set(answers).size).toBe(1);
      const rows = JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout) as PubRow[];
      expect(rows[0].pool.steer).toBe('kernel');
      const inst = rows[0].pool.instances as unknown as { aid: string; active: number }[];
      expect(inst.filter((i) => i.aid !== answers[0]).map((i) => i.active)).toEqual([1, 1]);
      expect(listeningPorts(serverSpid(home, answers[0]))).toEqual([pub]);
    } finally {
      for (const s of held) s.destroy();
      await stop(list);
    }
  });

  it('with APPSHOT_POOL_STEER=user the daemon hands connections over in user space, and says so in its log', async () => {
    const home = makeHome();
    const plain = await freePort();
    const dir = join(home, 'p');
    mkdirSync(dir);
    writeFileSync(join(dir, 'who.txt'), 'p');
    const p = appshotAsync(home, ['run', '--aid', 'p', '--publish', `${plain}:8080`, '--', 'python3', '-u', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', dir], { APPSHOT_POOL_STEER: 'user' });
    try {
      await waitFor(p.out, /Serving HTTP/);
      expect(await who(plain)).toBe('p');
      const rows = JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout) as PubRow[];
      expect(rows.map((r) => r.pool.steer)).toEqual(['user']);
      expect(readFileSync(join(home, 'pools', `${plain}.log`), 'utf8')).toContain('steering in user space, as APPSHOT_POOL_STEER=user asks: each connection is accepted');
      expect(listeningPorts(serverSpid(home, 'p'))).toEqual([]);
    } finally {
      await stop([p]);
    }
  });

  it('a bad APPSHOT_POOL_STEER: run says which value and what it takes, exit 2, nothing runs', () => {
    const home = makeHome();
    for (const [, flags] of MODES) {
      const r = appshot(home, ['run', ...flags, '--aid', 'bad', '--publish', '18999:8080', '--', 'true'], { APPSHOT_POOL_STEER: 'kernal' });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^appshot: APPSHOT_POOL_STEER is 'kernal': set it to kernel .* or user .*, or unset it\n$/);
    }
    expect(appshot(home, ['tables', '--apps', '--json']).stdout).not.toContain('"bad"');
  });
});
