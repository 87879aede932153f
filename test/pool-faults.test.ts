import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Socket, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { POOL_PATH } from '../ts/paths.js';
import { appshot, appshotAsync, appshotLater, makeHome, waitFor, who } from './helpers.js';

/** Public ports of the pools these tests publish (pool.test.ts has 18090-18099). */
const PUBLIC = 18110;
/** Another user, for the attacks. */
const NOBODY = 65534;
/** Whether this run can act as NOBODY: root, with that uid mapped (not so
 * in a user namespace that maps only the caller). */
function canBeNobody(): boolean {
  if (process.getuid?.() !== 0) return false;
  return readFileSync('/proc/self/uid_map', 'utf8')
    .trim()
    .split('\n')
    .some((line) => {
      const [inside, , count] = line.trim().split(/\s+/).map(Number);
      return inside <= NOBODY && NOBODY < inside + count;
    });
}

type Harness = ReturnType<typeof appshotAsync>;

/** An application serving who.txt (its own name) with python3 -m
 * http.server on virtual port 8080, published at pub. */
async function instance(home: string, name: string, pub: number): Promise<Harness> {
  const dir = join(home, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'who.txt'), name);
  const h = appshotAsync(home, ['run', '--aid', name, '--publish', `${pub}:8080`, '--', 'python3', '-u', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', dir]);
  await waitFor(h.out, /Serving HTTP/);
  return h;
}

/** A TCP connection opened now, its request sent later with ask(). */
async function openConnection(port: number) {
  const socket = createConnection(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let body = '';
  socket.on('data', (d) => (body += d));
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    async ask(): Promise<string> {
      socket.write('GET /who.txt HTTP/1.0\r\n\r\n');
      await ended;
      return body.slice(body.indexOf('\r\n\r\n') + 4);
    },
  };
}

async function stop(harnesses: Harness[]): Promise<void> {
  for (const h of harnesses) h.child.kill('SIGTERM');
  await Promise.all(harnesses.map((h) => h.done));
}

interface Pool {
  instances: { aid: string; spid: number; sport: number; handed: number }[];
}

/** The pool behind a public port, as its daemon tells tables --json. */
function pool(home: string): Pool | null {
  const r = appshot(home, ['tables', '--type', 'publish', '--json']);
  if (r.code !== 0) throw new Error(`tables failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { pool: Pool | null }[])[0]?.pool ?? null;
}

/** The pid of the pool daemon of a home's public port, from /proc. */
function daemonPid(home: string, pub: number): number {
  const want = [POOL_PATH, home, String(pub)].join('\0');
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1').startsWith(want + '\0')) return Number(name);
    } catch {
      /* gone */
    }
  }
  return 0;
}

/** The running daemon's pid, once there is one other than not (a port
 * steered in the kernel answers before the next daemon runs): never 0,
 * which process.kill would take for the whole process group. */
async function runningDaemon(home: string, pub: number, not = 0): Promise<number> {
  const pid = await waitFor(() => String(daemonPid(home, pub)), new RegExp(`^(?!${not}$)[1-9]\\d*$`), 10_000);
  return Number(pid[0]);
}

/** The CPU time a process has used, in clock ticks (/proc/PID/stat utime + stime). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** The system PID of an application's server process. */
function serverSpid(home: string, aid: string, command = 'http.server'): number {
  const ps = JSON.parse(appshot(home, ['ps', '--aid', aid, '--json']).stdout) as { spid: number; command: string }[];
  const row = ps.find((p) => p.command.includes(command));
  if (!row) throw new Error(`no http.server process in ${aid}: ${JSON.stringify(ps)}`);
  return row.spid;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A python3 program run as another user; resolves once it printed ready. */
async function asNobody(code: string, args: string[] = []) {
  const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '/usr/bin/python3', '-u', '-c', code, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(() => out + err, /ready|Error/);
  if (!out.includes('ready')) throw new Error(`the program of uid ${NOBODY} failed: ${err}`);
  return { out: () => out, kill: async () => (child.kill('SIGKILL'), await exited), exited };
}

describe('a pool daemon that dies or stops answering', () => {
  it('kill -9 of the daemon while two instances serve: the port serves again, no instance spins, connections already taken keep working, its own port answers again', async () => {
    const home = makeHome();
    const pub = PUBLIC;
    const list = [await instance(home, 'a', pub), await instance(home, 'b', pub)];
    try {
      // One connection taken by each instance, its request not sent yet.
      const early = [await openConnection(pub), await openConnection(pub)];
      await waitFor(() => String(pool(home)?.instances.reduce((n, i) => n + i.handed, 0)), /^2$/);
      const before = pool(home)!;
      const oldPid = await runningDaemon(home, pub);
      const spids = ['a', 'b'].map((aid) => serverSpid(home, aid));
      const ticks0 = spids.map(cpuTicks);

      const killedAt = performance.now();
      process.kill(oldPid, 'SIGKILL');
      // Served again: the harnesses start a new daemon, which takes over
      // both instances without restarting them.
      let answer = '';
      for (const end = Date.now() + 10_000; !answer && Date.now() < end; ) answer = await who(pub, 1000).catch(() => '');
      const recoveredMs = performance.now() - killedAt;
      expect(answer).toMatch(/^[ab]$/);
      console.log(`published port served again ${recoveredMs.toFixed(0)} ms after kill -9 of its daemon`);
      const after = pool(home)!;
      expect(await runningDaemon(home, pub, oldPid)).not.toBe(oldPid);
      expect(after.instances.map((i) => i.aid).sort()).toEqual(['a', 'b']);
      expect(after.instances.map((i) => i.spid).sort()).toEqual(before.instances.map((i) => i.spid).sort());

      // The connections each instance took before the kill still work.
      expect((await Promise.all(early.map((c) => c.ask()))).sort()).toEqual(['a', 'b']);
      // Each instance's own port (its listening socket, which died with
      // the daemon that held it) answers again, as the application's own
      // programs reach it.
      for (const i of after.instances) expect(await who(i.sport, 5000)).toBe(i.aid);
      const tally: Record<string, number> = {};
      for (let k = 0; k < 10; k++) {
        const w = await who(pub);
        tally[w] = (tally[w] ?? 0) + 1;
      }
      expect(tally).toEqual({ a: 5, b: 5 });

      // No spinning: over the 2 s after the kill, serving the few requests
      // above is all the work each instance did (a spinning accept loop
      // burns a tick every 10 ms).
      await sleep(Math.max(0, 2000 - (performance.now() - killedAt)));
      const used = spids.map((pid, k) => cpuTicks(pid) - ticks0[k]);
      console.log(`instances' CPU over the 2 s after the kill: ${used.join(', ')} ticks`);
      for (const t of used) expect(t).toBeLessThan(40);
      for (const h of list) expect(h.err()).not.toMatch(/pool daemon .* gone/);
    } finally {
      await stop(list);
    }
  });

  it('kill -9 of the daemon under an epoll server (node, non-blocking accept): its event loop stays quiet and it serves again, same process, twice', async () => {
    const home = makeHome();
    const pub = PUBLIC + 6;
    const server = `require('http').createServer((q, r) => r.end(String(process.pid))).listen(8080, '127.0.0.1', () => console.log('listening'))`;
    const h = appshotAsync(home, ['run', '--aid', 'node', '--publish', `${pub}:8080`, '--', process.execPath, '-e', server]);
    try {
      await waitFor(h.out, /listening/);
      const pid = await who(pub);
      const spid = serverSpid(home, 'node', 'createServer');
      const ticks0 = cpuTicks(spid);
      const killedAt = performance.now();
      // Twice: the daemon that took over keeps the state for the next one.
      for (let round = 0; round < 2; round++) {
        const dead = await runningDaemon(home, pub);
        process.kill(dead, 'SIGKILL');
        let answer = '';
        for (const end = Date.now() + 10_000; !answer && Date.now() < end; ) answer = await who(pub, 1000).catch(() => '');
        expect(answer).toBe(pid);
        expect(await runningDaemon(home, pub, dead)).not.toBe(dead);
      }
      await sleep(Math.max(0, 2000 - (performance.now() - killedAt)));
      const used = cpuTicks(spid) - ticks0;
      console.log(`node's CPU over the 2 s after the kill: ${used} ticks`);
      expect(used).toBeLessThan(40);
    } finally {
      h.child.kill('SIGTERM');
      await h.done;
    }
  });

  it('a stopped daemon: run --publish, ps and tables each give up after their deadline, naming its pid and its log, exit 1', async () => {
    const home = makeHome();
    const pub = PUBLIC + 1;
    const list = [await instance(home, 'a', pub)];
    const pid = await runningDaemon(home, pub);
    process.kill(pid, 'SIGSTOP');
    try {
      const log = join(home, 'pools', `${pub}.log`);
      const ran = join(home, 'ran');
      for (const args of [['run', '--publish', `${pub}:8080`, '--', 'touch', ran], ['ps'], ['tables']]) {
        const r = await appshotLater(home, args);
        expect(r.code, `appshot ${args[0]}: ${r.stderr}`).toBe(1);
        expect(r.stderr).toContain(`appshot: the pool daemon of port ${pub} (pid ${pid}) does not answer within 5 s; see its log ${log}`);
        expect(r.stderr).toContain(`kill -CONT ${pid}`);
      }
      expect(existsSync(ran)).toBe(false);
    } finally {
      process.kill(pid, 'SIGCONT');
      await stop(list);
    }
  });
});

/** A home another user can reach (not write): the test homes' folder is
 * the run's alone. Removed by the test that made it. */
function reachableHome(): { base: string; home: string } {
  const base = mkdtempSync(join(tmpdir(), 'appshot-pool-faults-'));
  chmodSync(base, 0o711);
  const home = join(base, 'home');
  mkdirSync(home, { mode: 0o700 });
  return { base, home };
}

describe.runIf(canBeNobody())('pool sockets: no one else let in', () => {
  it("the shim hands its listening socket only to a daemon of its own user: a fake pools/PORT.sock of another uid gets nothing", async () => {
    const { base, home } = reachableHome();
    const pub = PUBLIC + 2;
    const list = [await instance(home, 'a', pub)];
    const pools = join(home, 'pools');
    // Another user, once able to write the home (the home check refuses
    // such a home; this one was tightened again afterwards), left a socket
    // of its own in the daemon's place.
    chmodSync(home, 0o711);
    chmodSync(pools, 0o777);
    const fake = await asNobody(
      `import os, socket, sys
path = sys.argv[1]
os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
s.listen()
print('ready', flush=True)
c, _ = s.accept()
msg, anc, _, _ = c.recvmsg(4096, 64)
print('got', len(msg), 'bytes', sum(len(d) // 4 for (_, t, d) in anc if t == socket.SCM_RIGHTS), 'descriptors', flush=True)
`,
      [join(pools, `${pub}.sock`)],
    );
    chmodSync(pools, 0o700);
    chmodSync(home, 0o700);
    try {
      const b = await instance(home, 'b', pub);
      list.push(b);
      await waitFor(b.err, /cannot join the pool/);
      expect(b.err()).toContain(`appshot: cannot join the pool of published port ${pub} at ${join(pools, `${pub}.sock`)} (it is served by pid`);
      expect(b.err()).toContain(`of uid ${NOBODY}, not by a daemon of uid 0`);
      await waitFor(fake.out, /descriptors/); // python3 -u writes the line piece by piece
      expect(fake.out()).toContain('got 0 bytes 0 descriptors');
    } finally {
      await fake.kill();
      await stop(list);
      rmSync(base, { recursive: true, force: true });
    }
  });

  it('the harness talks only to a daemon of its own user: a fake control socket of another uid is refused, exit 4, nothing run', async () => {
    const { base, home } = reachableHome();
    const pub = PUBLIC + 3;
    const pools = join(home, 'pools');
    mkdirSync(pools, { mode: 0o777 });
    chmodSync(pools, 0o777);
    chmodSync(home, 0o711);
    const fake = await asNobody(
      `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen()
print('ready', flush=True)
c, _ = s.accept()
print('asked', c.recv(4096), flush=True)
c.sendall(b'ok rr\\n')
`,
      [join(pools, `${pub}.ctl`)],
    );
    chmodSync(pools, 0o700);
    chmodSync(home, 0o700);
    try {
      const ran = join(home, 'ran');
      const r = appshot(home, ['run', '--publish', `${pub}:8080`, '--', 'touch', ran]);
      expect(r.stderr).toMatch(new RegExp(`appshot: .*${pub}\\.ctl is served by pid \\d+ of uid ${NOBODY}, not by a pool daemon of yours \\(uid 0\\)`));
      expect(r.code).toBe(4);
      expect(existsSync(ran)).toBe(false);
      expect(fake.out()).not.toContain('asked');
    } finally {
      await fake.kill();
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("the daemon talks only to its own user: a daemon of another uid refuses root's connection and logs it", async () => {
    // The home of another user, whose daemon this is.
    const { base, home } = reachableHome();
    const pub = PUBLIC + 4;
    try {
      chownSync(home, NOBODY, NOBODY);
      const daemon = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', POOL_PATH, home, String(pub), 'rr'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      daemon.stdout.on('data', (d) => (out += d));
      daemon.stderr.on('data', (d) => (out += d));
      await waitFor(() => out, /ready/);
      const answer = await new Promise<string>((resolve, reject) => {
        const s = new Socket();
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('close', () => resolve(got));
        s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? resolve(got) : reject(e)));
        s.connect(join(home, 'pools', `${pub}.ctl`), () => s.write('status\n'));
      });
      expect(answer).toBe('');
      const log = join(home, 'pools', `${pub}.log`);
      await waitFor(() => (existsSync(log) ? readFileSync(log, 'utf8') : ''), /refused/);
      expect(readFileSync(log, 'utf8')).toMatch(new RegExp(`refused a connection to .*${pub}\\.ctl from pid ${process.pid}, uid 0: only uid ${NOBODY} may use this pool`));
      daemon.kill('SIGTERM');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("a daemon taking over sends nothing to a socket another user bound to an ended instance's name", async () => {
    const home = makeHome();
    const pub = PUBLIC + 7;
    const name = `appshot-listener/4/127.0.0.1/8080/${'5a'.repeat(16)}`;
    // Another user's datagram socket under the name an instance had.
    const squatter = await asNobody(
      `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + sys.argv[1])
s.settimeout(3)
print('ready', flush=True)
try:
    msg, anc, _, _ = s.recvmsg(64, 64)
    print('got', len(msg), 'bytes', flush=True)
except socket.timeout:
    print('nothing', flush=True)
`,
      [name],
    );
    // The state the daemon before had left: that instance, with its inode.
    mkdirSync(join(home, 'pools'), { mode: 0o700 });
    writeFileSync(join(home, 'pools', `${pub}.state`), `${name}\tgone\t8080\t20000\t1\t1\n`);
    const daemon = spawn(POOL_PATH, [home, String(pub), 'rr'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      daemon.stdout.on('data', (d) => (out += d));
      await waitFor(() => out, /ready/);
      const client = createConnection(pub, '127.0.0.1');
      client.on('error', () => {});
      await waitFor(squatter.out, /got|nothing/, 10_000);
      client.destroy();
      expect(squatter.out()).toContain('nothing');
      const log = readFileSync(join(home, 'pools', `${pub}.log`), 'utf8');
      expect(log).toContain('instance of gone (pid 1): its name is held by another socket now; not sending to it');
    } finally {
      daemon.kill('SIGTERM');
      await squatter.kill();
    }
  });

  it('the old predictable name of the channel, bound first by another user, does not keep the port from being published', async () => {
    const home = makeHome();
    const pub = PUBLIC + 5;
    const dir = join(home, 'www');
    mkdirSync(dir);
    writeFileSync(join(dir, 'who.txt'), 'squatted');
    const go = join(home, 'go');
    const h = appshotAsync(home, ['run', '--aid', 'victim', '--publish', `${pub}:8080`, '--', 'sh', '-c', `while [ ! -e ${go} ]; do sleep 0.05; done; exec python3 -u -m http.server 8080 --bind 127.0.0.1 --directory ${dir}`]);
    let squatter: Awaited<ReturnType<typeof asNobody>> | undefined;
    try {
      // The process that will listen (sh, then python3 by exec) and the
      // name the shim used to give its first channel.
      let spid = 0;
      await waitFor(() => {
        const ps = appshot(home, ['ps', '--aid', 'victim', '--json']);
        spid = ps.code === 0 ? ((JSON.parse(ps.stdout) as { spid: number }[])[0]?.spid ?? 0) : 0;
        return String(spid);
      }, /^[1-9]/);
      squatter = await asNobody(
        `import socket, sys, time
name = '\\0appshot-listener/4/127.0.0.1/8080/%s.1' % sys.argv[1]
held = []
for t in (socket.SOCK_SEQPACKET, socket.SOCK_DGRAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, t)
    s.bind(name)
    held.append(s)
print('ready', flush=True)
time.sleep(120)
`,
        [String(spid)],
      );
      writeFileSync(go, '');
      await waitFor(h.out, /Serving HTTP/);
      expect(await who(pub, 5000)).toBe('squatted');
      expect(h.err()).not.toContain('cannot join the pool');
    } finally {
      await squatter?.kill();
      h.child.kill('SIGTERM');
      await h.done;
    }
  });
});

describe('a pool whose last application has ended', () => {
  it('lets go of its public port at once: an application of another home publishes it right after', async () => {
    const pub = PUBLIC + 8;
    const first = makeHome();
    const a = await instance(first, 'first', pub);
    const daemon = daemonPid(first, pub);
    expect(daemon).toBeGreaterThan(0);
    await stop([a]);
    // No wait: the daemon looks at its instances when the last lifeline
    // ends, not at its next probe a second later.
    const b = await instance(makeHome(), 'second', pub);
    expect(b.err()).toBe('');
    expect(await who(pub)).toBe('second');
    await stop([b]);
  });
});
