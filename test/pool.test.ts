import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Socket, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';
import { MODES, type WhoLoad, appshot, appshotAsync, makeHome, waitFor, who, whoUnderLoad } from './helpers.js';

const NETTOOL = join(ROOT, 'test', 'fixtures', 'nettool.py');
/** Public ports of the pools these tests publish. */
const PUBLIC = 18090;

type Harness = ReturnType<typeof appshotAsync>;

/** An application serving who.txt (its own name) with python3 -m
 * http.server on virtual port 8080, published at pub. */
async function instance(home: string, name: string, pub: number, extra: string[] = [], says = name): Promise<Harness> {
  const dir = join(home, says);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'who.txt'), says);
  const h = appshotAsync(home, ['run', '--aid', name, '--publish', `${pub}:8080`, ...extra, '--', 'python3', '-u', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', dir]);
  await waitFor(h.out, /Serving HTTP/);
  return h;
}

/** The system PID of an application's python3 server. */
function serverSpid(home: string, aid: string): number {
  const ps = JSON.parse(appshot(home, ['ps', '--aid', aid, '--json']).stdout) as { spid: number; command: string }[];
  const row = ps.find((p) => p.command.includes('http.server'));
  if (!row) throw new Error(`no http.server process in ${aid}: ${JSON.stringify(ps)}`);
  return row.spid;
}

async function gone(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function stop(harnesses: Harness[]): Promise<void> {
  for (const h of harnesses) h.child.kill('SIGTERM');
  await Promise.all(harnesses.map((h) => h.done));
}

const tally = (names: string[]) => names.reduce<Record<string, number>>((m, n) => ({ ...m, [n]: (m[n] ?? 0) + 1 }), {});

describe('published ports: a pool of instances behind one public port', () => {
  it('round robin: each connection goes to the next instance; ps and tables show the pool', async () => {
    const home = makeHome();
    const pub = PUBLIC;
    const list = [await instance(home, 'a', pub), await instance(home, 'b', pub), await instance(home, 'c', pub)];
    try {
      const answers: string[] = [];
      for (let i = 0; i < 30; i++) answers.push(await who(pub));
      expect(tally(answers)).toEqual({ a: 10, b: 10, c: 10 });

      const ps = appshot(home, ['ps']).stdout;
      expect(ps).toContain('Pools behind published ports');
      expect(ps).toMatch(new RegExp(`${pub}.*round robin.*\\ba\\b.*8080`));
      const pubRows = JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout);
      expect(pubRows).toHaveLength(3);
      expect(pubRows[0]).toMatchObject({ type: 'publish', virtual: 8080, system: pub, proto: 'tcp' });
      expect(pubRows[0].pool.instances.map((i: { aid: string }) => i.aid).sort()).toEqual(['a', 'b', 'c']);
      expect(pubRows[0].pool.instances.reduce((n: number, i: { handed: number }) => n + i.handed, 0)).toBe(30);
    } finally {
      await stop(list);
    }
    // The last application gone, the daemon ends and takes its sockets along.
    await waitFor(() => String(existsSync(join(home, 'pools', `${pub}.ctl`))), /false/, 5000);
  });

  it('1,000 requests while one instance is killed with SIGKILL and restarted: every connection accepted after its death is served', async () => {
    const home = makeHome();
    const pub = PUBLIC + 1;
    const list = [await instance(home, 'a', pub), await instance(home, 'b', pub), await instance(home, 'c', pub)];
    let restarted: Harness | undefined;
    try {
      const TOTAL = 1000;
      const CONCURRENCY = 4;
      let diedAt = Infinity;
      let backAt = Infinity;
      const load: WhoLoad = { answers: [], failures: [] };
      const { answers, failures } = load;
      const killer = (async () => {
        await waitFor(() => String(answers.length), /^[3-9]\d\d$/);
        const spid = serverSpid(home, 'b');
        process.kill(spid, 'SIGKILL');
        await gone(spid);
        diedAt = performance.now();
        const old = await list[1].done;
        expect(old.code).toBe(137);
        restarted = await instance(home, 'b', pub, [], 'b-again');
        backAt = performance.now();
      })();
      // The load goes on until the restarted instance took some.
      await Promise.all([killer, whoUnderLoad(pub, TOTAL, CONCURRENCY, load, () => backAt === Infinity)]);
      expect(answers.length).toBeGreaterThanOrEqual(TOTAL);
      for (const f of failures) expect(f.startedAt, `a request started after the instance died failed: ${f.error}`).toBeLessThan(diedAt);
      expect(failures.length).toBeLessThanOrEqual(CONCURRENCY);
      const byWho = tally(answers.map((a) => a.who));
      expect(Object.keys(byWho).sort()).toEqual(['a', 'b', 'b-again', 'c']);
      // Nothing after its death came from the killed instance; the
      // restarted one joined the pool and serves again.
      expect(answers.filter((a) => a.startedAt > diedAt && a.who === 'b')).toEqual([]);
      expect(Math.min(...answers.filter((a) => a.who === 'b-again').map((a) => a.startedAt))).toBeGreaterThan(diedAt);
      const after: string[] = [];
      for (let i = 0; i < 6; i++) after.push(await who(pub));
      expect(after).toContain('b-again');
    } finally {
      await stop([list[0], list[2], ...(restarted ? [restarted] : [])]);
    }
  });

  it('least connections: a new connection goes to the instance with the fewest open ones', async () => {
    const home = makeHome();
    const pub = PUBLIC + 2;
    const list = [await instance(home, 'a', pub, ['--balance', 'lc']), await instance(home, 'b', pub, ['--balance', 'lc']), await instance(home, 'c', pub, ['--balance', 'lc'])];
    const held = [0, 1].map(() => createConnection(pub));
    try {
      await Promise.all(held.map((h) => h.ready));
      // The two idle connections went to two instances; every short request
      // after the pool counted them goes to the third.
      const answers: string[] = [];
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 250));
        answers.push(await who(pub));
      }
      expect(new Set(answers).size).toBe(1);
    } finally {
      for (const h of held) h.socket.destroy();
      await stop(list);
    }
  });

  it('an instance that stops accepting is taken out of the pool; it is added back when it accepts again', async () => {
    const home = makeHome();
    const pub = PUBLIC + 3;
    const list = [await instance(home, 'a', pub), await instance(home, 'b', pub), await instance(home, 'c', pub)];
    const spid = serverSpid(home, 'b');
    try {
      process.kill(spid, 'SIGSTOP');
      // Three connections: one goes to b and waits there, as it would in a
      // stopped server's backlog.
      const first = [who(pub, 20_000), who(pub, 20_000), who(pub, 20_000)];
      await new Promise((r) => setTimeout(r, 600));
      // By now the pool has seen b sit on a connection: it is out of the pool.
      const meanwhile: string[] = [];
      for (let i = 0; i < 20; i++) meanwhile.push(await who(pub, 5000));
      expect(tally(meanwhile)).toEqual({ a: 10, c: 10 });
      process.kill(spid, 'SIGCONT');
      expect(tally(await Promise.all(first))).toEqual({ a: 1, b: 1, c: 1 });
      // Back within the pool's tick (steered in the kernel, the daemon sees
      // b's queue drained on its next look; handing over, at b's next ack).
      const after: string[] = [];
      for (const until = Date.now() + 5000; !after.includes('b') && Date.now() < until; ) after.push(await who(pub));
      expect(after).toContain('b');
    } finally {
      process.kill(spid, 'SIGCONT');
      await stop(list);
    }
  });

  it('a program of the application connecting to its own published port reaches its own instance', async () => {
    const home = makeHome();
    const pub = PUBLIC + 4;
    const others = [await instance(home, 'a', pub)];
    try {
      const dir = join(home, 'self');
      mkdirSync(dir);
      writeFileSync(join(dir, 'who.txt'), 'self');
      const script = `python3 -u -m http.server 8080 --bind 127.0.0.1 --directory ${dir} > ${dir}/log 2>&1 &
        until grep -q Serving ${dir}/log; do sleep 0.05; done
        for i in 1 2 3 4; do python3 ${NETTOOL} get 127.0.0.1 8080 /who.txt; done
        kill $!`;
      const r = appshot(home, ['run', '--aid', 'self', '--publish', `${pub}:8080`, '--', 'sh', '-c', script]);
      expect(r.stdout).toBe('self\nself\nself\nself\n');
    } finally {
      await stop(others);
    }
  });

  it('a listening socket handed across exec and shared by forked workers stays in the pool', async () => {
    const home = makeHome();
    const pub = PUBLIC + 7;
    const h = appshotAsync(home, ['run', '--aid', 'handover', '--publish', `${pub}:8080`, '--', 'python3', '-u', NETTOOL, 'handover', '127.0.0.1', '8080']);
    // After exec, socket.socket(fileno=) asks the descriptor what it is.
    await waitFor(h.out, /inherited.*\n/); // python3 -u writes print's words one by one
    expect(h.out()).toBe('inherited AF_INET SOCK_STREAM 8080\n');
    const pids = [await who(pub), await who(pub)].map(Number);
    expect(new Set(pids).size).toBe(2);
    const r = await h.done;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('--publish of a port a program outside appshot holds: an error naming the port, exit 3, nothing started', async () => {
    const home = makeHome();
    const pub = PUBLIC + 5;
    const outside = createServer();
    await new Promise<void>((resolve) => outside.listen(pub, resolve));
    try {
      const r = appshot(home, ['run', '--publish', `${pub}:8080`, '--', 'touch', join(home, 'ran')]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`appshot: cannot publish port ${pub}: it is in use by a program outside appshot`);
      expect(existsSync(join(home, 'ran'))).toBe(false);
    } finally {
      outside.close();
    }
  });

  it('joining a pool with another balancing policy: an error naming both, exit 3, nothing started', async () => {
    const home = makeHome();
    const pub = PUBLIC + 6;
    const a = await instance(home, 'a', pub);
    try {
      const r = appshot(home, ['run', '--publish', `${pub}:8080`, '--balance', 'lc', '--', 'touch', join(home, 'ran')]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`port ${pub} is already published with round robin balancing, not least connections`);
      expect(existsSync(join(home, 'ran'))).toBe(false);
    } finally {
      await stop([a]);
    }
  });
});

/** An idle connection to the pool, open until destroyed. */
function createConnection(port: number) {
  const socket = new Socket();
  const ready = new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.connect(port, '127.0.0.1', () => resolve());
  });
  return { socket, ready };
}

/** A server of a close-delimited protocol (HTTP/1.0 without a length, a
 * line protocol): it answers and close()s, and its client reads to EOF. */
const CLOSER = `import socket
s = socket.socket()
s.bind(('127.0.0.1', 8100))
s.listen(16)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    c.recv(16)
    c.sendall(b'hello')
    c.close()`;

/** What a connection to port gets before its EOF. */
function readToEnd(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = connect(port, '127.0.0.1', () => s.write('x'));
    s.setTimeout(10_000, () => s.destroy(new Error(`no EOF from port ${port}`)));
    s.on('data', (d) => (got += d));
    s.on('end', () => (s.destroy(), resolve(got)));
    s.on('error', reject);
  });
}

/** A process's read system calls so far (/proc/PID/io syscr). The pool
 * daemon reads only its timers and its control connections; its sockets it
 * takes with recvmsg and accept, which syscr does not count: at rest, it
 * goes up by one for each of the daemon's ticks. */
function reads(pid: number): number {
  return Number(/^syscr: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
}

describe.each(MODES)('published ports: a server that answers and closes (%s)', (mode, flags) => {
  it('its client gets EOF when it closes: the daemon let go of the connection at the hand-off, not at its next tick', async () => {
    const home = makeHome();
    const pub = PUBLIC + 8 + (mode === 'identity' ? 0 : 1);
    const h = appshotAsync(home, ['run', '--aid', 'closer', ...flags, '--publish', `127.0.0.1:${pub}:8100`, '--', 'python3', '-u', '-c', CLOSER]);
    try {
      await waitFor(h.out, /listening/);
      const pool = JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout)[0].pool as { pid: number };
      // With no other connection in the pool, a daemon that kept its copy
      // of a connection until its tick would deliver the EOF only with a
      // tick read in between, each time. One that lets go when the instance
      // acks delivers it with none between, unless a tick happens to fall
      // into the exchange: a few tries find one without. The same through
      // the instance's own port, whose listener the daemon holds too.
      const ticksBetween = async (port: number) => {
        const between: number[] = [];
        for (let i = 0; i < 20 && !between.includes(0); i++) {
          const before = reads(pool.pid);
          expect(await readToEnd(port)).toBe('hello');
          between.push(reads(pool.pid) - before);
        }
        return between;
      };
      const own = (JSON.parse(appshot(home, ['tables', '--type', 'port', '--json']).stdout) as { system: number }[])[0].system;
      const viaPool = await ticksBetween(pub);
      const viaOwn = await ticksBetween(own);
      expect(viaPool, 'ticks of the daemon between each connection to the public port and its EOF').toContain(0);
      expect(viaOwn, "ticks of the daemon between each connection to the instance's own port and its EOF").toContain(0);
      const instance = JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout)[0].pool.instances[0];
      expect(instance).toMatchObject({ aid: 'closer', unacked: 0, active: 0, handed: viaPool.length + viaOwn.length });
    } finally {
      await stop([h]);
    }
  });
});
