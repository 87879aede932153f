/**
 * Issue 18's proof: real programs snapshotted whole (`appshot snapshot AID -o
 * FILE --stop`) and restored (`appshot restore FILE --aid NAME`) through the
 * real CLI, continuing where they were: ckptapp (threads counting in memory,
 * a child over pipes, eventfd, timerfd and epoll, a listening socket on a
 * virtual port), Debian's redis-server with keys that lived only in memory,
 * python3 with a dict and a multiprocessing child, node serving HTTP from an
 * in-memory counter; a restored application snapshotted and restored again;
 * a restore beside the still-running original; and the same as an
 * unprivileged user. Identity and --no-identity modes.
 *
 * The tests of one group run at once (they share one home, each under its
 * own AIDs), so this file keeps its own harness processes instead of
 * helpers.ts's appshotAsync, whose afterEach would end the other tests'.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import { MODES, freePort, lineFrom, makeHome, waitFor } from './helpers.js';

const CKPTAPP = builtProgram('ckptapp');
const CKPTSYSV = builtProgram('ckptsysv');
const FIXTURES = join(import.meta.dirname, 'fixtures');
const PYTHON = '/usr/bin/python3';
const NODE = '/usr/bin/node';
const NOBODY = 65534;
const AS_NOBODY = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];

/** One home for the root tests of this file, each under AIDs of its own. */
const HOME = makeHome();

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** An appshot command of this file, running; as: a prefix (setpriv) to run it as another user. */
interface Cmd {
  child: ChildProcess;
  done: Promise<Result>;
  out: () => string;
  err: () => string;
}

function start(home: string, args: string[], as: string[] = [], env: NodeJS.ProcessEnv = {}): Cmd {
  const full: NodeJS.ProcessEnv = { ...process.env, APPSHOT_HOME: home, ...env };
  delete full.APPSHOT_AID;
  delete full.LD_PRELOAD;
  const argv = [...as, process.execPath, CLI_PATH, ...args];
  const child = spawn(argv[0], argv.slice(1), { env: full, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Result>((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : null), stdout, stderr })));
  return { child, done, out: () => stdout, err: () => stderr };
}

/** An appshot command run to its end. */
function appshot(home: string, args: string[], as: string[] = []): Promise<Result> {
  return start(home, args, as).done;
}

/** What the numbers of the report are made from: per program and mode,
 * the snapshot's own seconds and the image's size (printed at the end). */
const measured: string[] = [];
afterAll(() => {
  if (measured.length) console.log(`checkpoint-programs: snapshot seconds and image sizes\n${measured.join('\n')}`);
});

/**
 * Takes a whole snapshot of aid with --stop and waits for its harness (run
 * or restore) to end with SIGKILL's status: the file.
 */
async function snapshotStop(home: string, aid: string, harness: Cmd, as: string[] = [], what = aid): Promise<string> {
  const file = join(home, `${aid}.snap`);
  const s = await appshot(home, ['snapshot', aid, '-o', file, '--stop', '--json'], as);
  if (s.code !== 0) throw new Error(`snapshot of ${aid} failed (${s.code}): ${s.stderr}`);
  const sum = JSON.parse(s.stdout);
  if (!sum.whole || !sum.stopped) throw new Error(`snapshot of ${aid} is not whole and stopped: ${s.stdout}`);
  measured.push(`${what}: ${sum.processes} process(es), snapshot ${sum.seconds.toFixed(3)} s, image ${(statSync(file).size / 1048576).toFixed(1)} MiB`);
  const r = await harness.done;
  if (r.code !== 137) throw new Error(`${aid}'s harness ended with ${r.code}, not SIGKILL's 137: ${r.stderr}`);
  return file;
}

/** Resolves to probe's first value that is not undefined (a failing probe is
 * tried again: what it waits for is not there yet), within 20 s. */
async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + 20_000;
  let last = '';
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The rows of one type of an application. */
async function rows(home: string, aid: string, type: string, as: string[] = []): Promise<{ virtual: number; system: number }[]> {
  const r = await appshot(home, ['tables', '--json', '--aid', aid, '--type', type], as);
  if (r.code !== 0) throw new Error(`tables of ${aid}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The system port behind an application's virtual TCP port. */
async function systemPort(home: string, aid: string, port: number, as: string[] = []): Promise<number> {
  const found = (await rows(home, aid, 'port', as)).find((r) => r.virtual === port);
  if (!found) throw new Error(`no port row ${port} for ${aid}`);
  return found.system;
}

/** [vpid, spid] of each process of an application, by vpid. */
async function processes(home: string, aid: string, as: string[] = []): Promise<[number, number][]> {
  const r = await appshot(home, ['ps', '--aid', aid, '--json'], as);
  if (r.code !== 0) throw new Error(`ps of ${aid}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { vpid: number; spid: number }[]).map((p) => [p.vpid, p.spid] as [number, number]).sort((a, b) => a[0] - b[0]);
}

/** The pipes and sockets a process holds, as its descriptors name them ("pipe:[123]"). */
function kernelFiles(spid: number): string[] {
  const dir = `/proc/${spid}/fd`;
  return readdirSync(dir)
    .map((fd) => {
      try {
        return readlinkSync(join(dir, fd));
      } catch {
        return '';
      }
    })
    .filter((l) => /^(pipe|socket):\[\d+\]$/.test(l));
}

/** Ends an application and waits for its harness. */
async function end(home: string, aid: string, harness: Cmd, as: string[] = []): Promise<void> {
  await appshot(home, ['kill', aid], as);
  await harness.done;
}

/** GET / from 127.0.0.1:port. */
function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET from ${port} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

// --- ckptapp (item 1), again after a second snapshot (item 4) -----------------

const TICK = /^tick (\d+) counter (\d+) answer pong (\d+) events (\d+)$/gm;

/** The tick lines of an output: [tick, counter, pong, events]. */
function ticks(out: string): number[][] {
  return [...out.matchAll(TICK)].map((m) => m.slice(1).map(Number));
}

/** Resolves once the output holds a tick line with tick >= n: that line. */
async function tickAtLeast(out: () => string, n: number): Promise<number[]> {
  await waitFor(() => (ticks(out()).some((t) => t[0] >= n) ? 'yes' : ''), /yes/);
  return ticks(out()).find((t) => t[0] >= n)!;
}

/** ckptapp serving port under aid, once it has ticked 3 times: its harness and its child's vpid. */
async function ckptapp(home: string, aid: string, flags: readonly string[], port: number, as: string[] = []) {
  const h = start(home, ['run', ...flags, '--aid', aid, '--', CKPTAPP, 'serve', String(port)], as);
  const child = Number((await waitFor(h.out, /^child (\d+)$/m))[1]);
  await tickAtLeast(h.out, 3);
  return { h, child };
}

/** The line `ckptapp connect` run inside the application gets: [counter, pong]. */
async function inside(home: string, aid: string, port: number, as: string[] = []): Promise<number[]> {
  const r = await appshot(home, ['exec', aid, '--', CKPTAPP, 'connect', String(port)], as);
  const m = /^counter (\d+) answer pong (\d+)\n$/.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`ckptapp connect inside ${aid}: ${r.code} ${r.stdout} ${r.stderr}`);
  return [Number(m[1]), Number(m[2])];
}

type Expect = typeof import('vitest').expect;

/**
 * A restore of ckptapp's image under aid: it goes on from the last tick
 * the image's run printed (last), its counter from there, its child
 * answering the pings that follow, under the same vpids, and clients inside
 * and outside the application reach it at its virtual port. The restore's
 * harness, and the last tick line seen.
 */
async function restoredCkptapp(expect: Expect, home: string, file: string, aid: string, last: number[], vpids: number[], port: number, as: string[] = []) {
  const h = start(home, ['restore', file, '--aid', aid], as);
  // The ticks go on from the saved count (by the timer's expirations while
  // the restore held it: a few), the counter from its saved value.
  const first = await tickAtLeast(h.out, last[0] + 1);
  expect(ticks(h.out())[0]).toEqual(first);
  expect(first[0]).toBeLessThan(last[0] + 100);
  expect(first[1]).toBeGreaterThanOrEqual(last[1]);
  expect(first[1]).toBeLessThan(last[1] + 3000);
  // The child answers the pings sent after the restore, over the same pipes.
  const later = await tickAtLeast(h.out, first[0] + 3);
  expect(later[2]).toBeGreaterThan(first[2]);
  expect(later[2]).toBeGreaterThan(last[0]);
  expect(later[1]).toBeGreaterThan(first[1]);
  expect(later[3]).toBeGreaterThanOrEqual(last[3]); // eventfd posts go on
  expect((await processes(home, aid, as)).map((p) => p[0])).toEqual(vpids);
  // A client inside the application at the virtual port, one outside at the system port.
  const [counter, pong] = await inside(home, aid, port, as);
  expect(counter).toBeGreaterThan(first[1]);
  expect(pong).toBeGreaterThanOrEqual(first[0]);
  const outside = /^counter (\d+) answer pong (\d+)\n$/.exec(await lineFrom(await systemPort(home, aid, port, as)));
  expect(Number(outside![1])).toBeGreaterThanOrEqual(counter);
  return { h, last: ticks(h.out()).at(-1)! };
}

describe.concurrent.each(MODES)('ckptapp (item 1), %s', (mode, flags) => {
  it('snapshot --stop, restore: the counter goes on from its saved value, the child answers on the pipe, a client connects to the virtual port; snapshot the restored one --stop, restore again: still continuing (item 4)', async ({ expect }) => {
    const port = await freePort();
    const a = `ck1-${mode}`;
    const { h, child } = await ckptapp(HOME, a, flags, port);
    const vpids = (await processes(HOME, a)).map((p) => p[0]);
    expect(vpids).toContain(child);
    if (mode === 'remapped') expect(child).toBeGreaterThanOrEqual(0x10000000);
    const file = await snapshotStop(HOME, a, h, [], `ckptapp ${mode}`);
    const last = ticks((await h.done).stdout).at(-1)!;

    const b = await restoredCkptapp(expect, HOME, file, `ck1-${mode}-b`, last, vpids, port);
    const again = await snapshotStop(HOME, `ck1-${mode}-b`, b.h, [], `ckptapp ${mode}, restored`);
    const c = await restoredCkptapp(expect, HOME, again, `ck1-${mode}-c`, ticks((await b.h.done).stdout).at(-1)!, vpids, port);
    await end(HOME, `ck1-${mode}-c`, c.h);
  });

  it('a restore while the original still runs (item 5): both go on side by side, each with its own processes, port and counter, under the same vpids and virtual port', async ({ expect }) => {
    const port = await freePort();
    const a = `ck5-${mode}`;
    const { h } = await ckptapp(HOME, a, flags, port);
    const file = join(HOME, `${a}.snap`);
    const s = await appshot(HOME, ['snapshot', a, '-o', file]);
    expect(s.stderr).toBe('');
    expect(s.code).toBe(0);
    const atSnapshot = ticks(h.out()).at(-1)!;
    const twin = start(HOME, ['restore', file, '--aid', `${a}-twin`]);
    await tickAtLeast(twin.out, atSnapshot[0] + 3);
    // The original was let go and goes on too.
    await tickAtLeast(h.out, atSnapshot[0] + 3);

    const [orig, copy] = [await processes(HOME, a), await processes(HOME, `${a}-twin`)];
    expect(copy.map((p) => p[0])).toEqual(orig.map((p) => p[0]));
    for (const [, spid] of copy) expect(orig.map((p) => p[1])).not.toContain(spid);
    // Kernel objects of its own: none of the twin's pipes and sockets is the original's.
    const ko = new Set(orig.flatMap(([, spid]) => kernelFiles(spid)));
    const kc = copy.flatMap(([, spid]) => kernelFiles(spid));
    expect(kc.filter((k) => k.startsWith('pipe:')).length).toBeGreaterThanOrEqual(4);
    expect(kc.filter((k) => ko.has(k))).toEqual([]);
    const [po, pc] = [await systemPort(HOME, a, port), await systemPort(HOME, `${a}-twin`, port)];
    expect(pc).not.toBe(po);
    if (mode === 'identity') expect(po).toBe(port);
    // Each answers at the one virtual port inside its own application.
    const [ci, ct] = [await inside(HOME, a, port), await inside(HOME, `${a}-twin`, port)];
    expect(ci[0]).toBeGreaterThan(atSnapshot[1]);
    expect(ct[0]).toBeGreaterThan(atSnapshot[1]);
    expect(await lineFrom(pc)).toMatch(/^counter \d+ answer pong \d+\n$/);

    // Ending one leaves the other running.
    await end(HOME, a, h);
    const n = ticks(twin.out()).at(-1)![0];
    await tickAtLeast(twin.out, n + 2);
    await end(HOME, `${a}-twin`, twin);
  });
});

describe.concurrent.each(MODES)('SysV shared memory side by side (item 5), %s', (mode, flags) => {
  it("a restore of ckptsysv beside its running original: the same virtual shmid, attached at the same address, each its own segment counting on from the saved count", async ({ expect }) => {
    const a = `sv5-${mode}`;
    const TICKLINE = /^tick (\d+) (\d+) (0x[0-9a-f]+) (\d+)$/gm;
    const last = (out: string) => [...out.matchAll(TICKLINE)].at(-1)!.slice(1);
    const h = start(HOME, ['run', ...flags, '--aid', a, '--', CKPTSYSV, '50']);
    await waitFor(h.out, /^tick \d+ \d+ 0x[0-9a-f]+ 5$/m);
    const file = join(HOME, `${a}.snap`);
    expect((await appshot(HOME, ['snapshot', a, '-o', file])).code).toBe(0);
    const twin = start(HOME, ['restore', file, '--aid', `${a}-twin`]);
    await waitFor(twin.out, /^tick /m);
    const [, shmid, addr, count] = last(h.out());
    const first = [...twin.out().matchAll(TICKLINE)][0].slice(1);
    // The same vpid, virtual shmid and address; the count from the saved one on.
    expect(first.slice(0, 3)).toEqual(last(h.out()).slice(0, 3));
    expect(first[1]).toBe(shmid);
    expect(first[2]).toBe(addr);
    expect(Number(first[3])).toBeLessThanOrEqual(Number(count) + 1);
    expect(Number(first[3])).toBeGreaterThan(5);
    // Each its own segment: one virtual shmid, two system ones.
    const [ro, rt] = [await rows(HOME, a, 'shm'), await rows(HOME, `${a}-twin`, 'shm')];
    expect(rt.map((r) => r.virtual)).toEqual(ro.map((r) => r.virtual));
    expect(rt[0].system).not.toBe(ro[0].system);
    if (mode === 'identity') expect(ro[0].system).toBe(Number(shmid));
    // Both count on, each in its own segment: ending the original leaves the twin counting.
    await end(HOME, a, h);
    const n = Number(last(twin.out())[3]);
    await waitFor(twin.out, new RegExp(`^tick \\d+ \\d+ 0x[0-9a-f]+ ${n + 3}$`, 'm'));
    await end(HOME, `${a}-twin`, twin);
  });
});

// --- redis-server (item 2), and again (item 4) --------------------------------

/** redis-cli run inside the application (the virtual port). */
async function redis(home: string, aid: string, port: number, ...args: string[]): Promise<string> {
  const r = await appshot(home, ['exec', aid, '--', 'redis-cli', '-p', String(port), ...args]);
  if (r.code !== 0) throw new Error(`redis-cli ${args.join(' ')} in ${aid}: ${r.code} ${r.stderr}`);
  return r.stdout.trim();
}

describe.concurrent.each(MODES)('redis-server (item 2), %s', (mode, flags) => {
  it("--save '' --appendonly no with keys set: snapshot --stop, restore: GET returns the values, which lived only in memory; snapshotted and restored again: still there and counting (item 4); a client connected at the snapshot comes back reset and is let go", async ({ expect }) => {
    const port = await freePort();
    const a = `rd-${mode}`;
    const dir = mkdtempSync(join(HOME, 'redis-'));
    const h = start(HOME, ['run', ...flags, '--aid', a, '--', 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
    await waitFor(h.out, /Ready to accept connections/);
    // Inside the application at the virtual port, outside at the system port.
    expect(await redis(HOME, a, port, 'SET', 'greeting', 'hello from memory')).toBe('OK');
    const sys = await systemPort(HOME, a, port);
    expect(await redisOut(sys, 'INCRBY', 'visits', '41')).toBe('41');
    // A megabyte of value, so the image holds more than the server's start.
    expect(await redisOut(sys, 'SETRANGE', 'big', '1048575', 'z')).toBe('1048576');
    // A client still connected from outside when the snapshot is taken.
    const held = connect(sys, '127.0.0.1');
    let heldGot = '';
    held.on('data', (d) => (heldGot += d));
    held.on('error', () => {});
    held.write('SET held yes\r\n');
    await waitFor(() => heldGot, /^\+OK\r\n$/);
    const file = await snapshotStop(HOME, a, h, [], `redis ${mode}`);
    held.destroy();

    let harness: Cmd | undefined;
    let image = file;
    for (const [b, visits] of [[`${a}-b`, '42'], [`${a}-c`, '43']] as const) {
      harness = start(HOME, ['restore', image, '--aid', b]);
      const sysB = await until(`${b}'s port`, () => systemPort(HOME, b, port));
      await until(`${b} answering`, async () => ((await redisOut(sysB, 'PING')) === 'PONG' ? true : undefined));
      expect(await redisOut(sysB, 'GET', 'greeting')).toBe('hello from memory');
      expect(await redisOut(sysB, 'INCR', 'visits')).toBe(visits);
      expect(await redisOut(sysB, 'STRLEN', 'big')).toBe('1048576');
      expect(await redisOut(sysB, 'GET', 'held')).toBe('yes');
      // The held connection came back reset, and redis let it go: the only
      // client is the one asking.
      expect((await redisOut(sysB, 'CLIENT', 'LIST')).split('\n')).toEqual([expect.stringMatching(/ cmd=client\|list /)]);
      // Inside the application, at the virtual port.
      expect(await redis(HOME, b, port, 'GET', 'greeting')).toBe('hello from memory');
      if (b.endsWith('-b')) image = await snapshotStop(HOME, b, harness, [], `redis ${mode}, restored`);
    }
    await end(HOME, `${a}-c`, harness!);
  });
});

/** redis-cli run outside the application, at a system port: its answer. */
function redisOut(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('redis-cli', ['-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out.trim()));
  });
}

// --- python3 and node (item 3) --------------------------------------------------

const PYLINE = /^tick (\d+) entries (\d+) sum (\d+) answer pong (\d+) child (\d+)$/gm;

function pyTicks(out: string): number[][] {
  return [...out.matchAll(PYLINE)].map((m) => m.slice(1).map(Number));
}

/** The sum of k*k for k = 1..n: what the dict holds after n ticks. */
const squares = (n: number) => (n * (n + 1) * (2 * n + 1)) / 6;

/**
 * ckpt-dict.py run under aid, snapshotted --stop after 5 ticks and
 * restored: the restored lines go on at the next tick, the dict whole at
 * every one, the child (its vpid kept) answering each.
 */
async function pythonCase(expect: Expect, home: string, a: string, flags: readonly string[], as: string[], what: string): Promise<void> {
  const h = start(home, ['run', ...flags, '--aid', a, '--', PYTHON, '-u', join(FIXTURES, 'ckpt-dict.py')], as);
  const child = Number((await waitFor(h.out, /^child (\d+)$/m))[1]);
  await waitFor(h.out, /^tick 5 /m);
  const file = await snapshotStop(home, a, h, as, what);
  const last = pyTicks((await h.done).stdout).at(-1)!;
  expect(last[4]).toBe(child);

  const b = start(home, ['restore', file, '--aid', `${a}-b`], as);
  await waitFor(b.out, new RegExp(`^tick ${last[0] + 3} `, 'm'));
  const back = pyTicks(b.out());
  expect(back[0][0]).toBe(last[0] + 1);
  for (const [tick, entries, sum, pong, pid] of back) {
    expect(entries).toBe(tick);
    expect(sum).toBe(squares(tick));
    expect(pong).toBe(tick);
    expect(pid).toBe(child);
  }
  expect((await processes(home, `${a}-b`, as)).map((p) => p[0])).toContain(child);
  await end(home, `${a}-b`, b, as);
}

describe.concurrent.each(MODES)('python3 and node (item 3), %s', (mode, flags) => {
  it('python3 with a dict and a multiprocessing child: restored, the dict goes on growing from its saved entries and the child (same vpid) answers over its Unix socket pair', async ({ expect }) => {
    await pythonCase(expect, HOME, `py-${mode}`, flags, [], `python3 ${mode}`);
  });

  it('node serving HTTP from an in-memory counter (libuv: threads, epoll, eventfd, timers): restored, the count goes on, the timer ticks, under the same pid', async ({ expect }) => {
    await nodeCase(expect, HOME, `js-${mode}`, flags, [], `node ${mode}`);
  });
});

/** node serving HTTP from an in-memory counter (libuv: threads, epoll,
 * eventfd, timers), snapshotted --stop and restored: the count goes on, the
 * timer ticks, under the same pid. */
async function nodeCase(expect: Expect, home: string, a: string, flags: readonly string[], as: string[], what: string): Promise<void> {
    const port = await freePort();
    const h = start(home, ['run', ...flags, '--aid', a, '--', NODE, join(FIXTURES, 'ckpt-http.js'), String(port)], as);
    await waitFor(h.out, /^listening (\d+)$/m);
    const sys = await systemPort(home, a, port, as);
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) seen.push(await get(sys));
    const [, , ticksBefore, pid] = /^count (\d+) ticks (\d+) pid (\d+)\n$/.exec(seen[2])!.map(Number);
    expect(seen[2]).toMatch(/^count 3 /);
    const file = await snapshotStop(home, a, h, as, what);

    const b = start(home, ['restore', file, '--aid', `${a}-b`], as);
    const sysB = await until(`${a}-b's port`, () => systemPort(home, `${a}-b`, port, as));
    const next = /^count (\d+) ticks (\d+) pid (\d+)\n$/.exec(await until(`${a}-b answering`, () => get(sysB)))!.map(Number);
    expect(next[1]).toBe(4);
    expect(next[2]).toBeGreaterThanOrEqual(ticksBefore);
    expect(next[3]).toBe(pid);
    // Timers run: the tick count grows.
    const t0 = next[2];
    let later = next;
    const deadline = Date.now() + 10_000;
    while (later[2] < t0 + 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      later = /^count (\d+) ticks (\d+) pid (\d+)\n$/.exec(await get(sysB))!.map(Number);
    }
    expect(later[2]).toBeGreaterThanOrEqual(t0 + 3);
    expect(later[1]).toBeGreaterThan(4);
    await end(home, `${a}-b`, b, as);
}

// --- io_uring: refused, honestly ---------------------------------------------------

describe.concurrent('node with io_uring (UV_USE_IO_URING=1)', () => {
  it('is refused by name and runs on: libuv 1.46 in this node uses io_uring only when asked, which a snapshot cannot capture', async ({ expect }) => {
    const port = await freePort();
    const a = 'js-uring';
    const h = start(HOME, ['run', '--aid', a, '--', NODE, join(FIXTURES, 'ckpt-http.js'), String(port)], [], { UV_USE_IO_URING: '1' });
    await waitFor(h.out, /^listening (\d+)$/m);
    const sys = await systemPort(HOME, a, port);
    expect(await get(sys)).toMatch(/^count 1 /);
    const file = join(HOME, `${a}.snap`);
    const s = await appshot(HOME, ['snapshot', a, '-o', file, '--stop']);
    expect(s.code).toBe(3);
    expect(s.stderr).toMatch(/^appshot: cannot snapshot process \d+ \(node\): it uses io_uring .*the application runs on/);
    expect(await get(sys)).toMatch(/^count 2 /);
    await end(HOME, a, h);
  });
});

// --- as an unprivileged user ------------------------------------------------------

/** Runs body with a home of nobody's where nobody can reach it, removed after. */
async function asNobody(body: (home: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'appshot-ckpt-programs-'));
  chmodSync(dir, 0o755);
  const home = join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, NOBODY, NOBODY);
  try {
    await body(home);
  } finally {
    await appshot(home, ['gc'], AS_NOBODY);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.concurrent.each(MODES)('as an unprivileged user (nobody), %s', (mode, flags) => {
  it('ckptapp run, snapshotted --stop and restored by nobody: continuing, its child answering, its port reached', async ({ expect }) => {
    await asNobody(async (home) => {
      const port = await freePort();
      const { h, child } = await ckptapp(home, 'ck', flags, port, AS_NOBODY);
      const vpids = (await processes(home, 'ck', AS_NOBODY)).map((p) => p[0]);
      expect(vpids).toContain(child);
      const file = await snapshotStop(home, 'ck', h, AS_NOBODY, `ckptapp ${mode}, as nobody`);
      const last = ticks((await h.done).stdout).at(-1)!;
      const b = await restoredCkptapp(expect, home, file, 'ck-b', last, vpids, port, AS_NOBODY);
      for (const [, spid] of await processes(home, 'ck-b', AS_NOBODY)) expect(statSync(`/proc/${spid}`).uid).toBe(NOBODY);
      await end(home, 'ck-b', b.h, AS_NOBODY);
    });
  });

  it('python3 with its multiprocessing child, snapshotted --stop and restored by nobody: the dict and the child go on', async ({ expect }) => {
    await asNobody((home) => pythonCase(expect, home, 'py', flags, AS_NOBODY, `python3 ${mode}, as nobody`));
  });

  it('redis-server, snapshotted --stop and restored by nobody: a key that lived only in memory is back', async ({ expect }) => {
    await asNobody(async (home) => {
      const port = await freePort();
      const h = start(home, ['run', ...flags, '--aid', 'rd', '--', 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', '/tmp'], AS_NOBODY);
      await waitFor(h.out, /Ready to accept connections/);
      const sys = await systemPort(home, 'rd', port, AS_NOBODY);
      expect(await redisOut(sys, 'SET', 'greeting', 'hello from memory')).toBe('OK');
      const file = await snapshotStop(home, 'rd', h, AS_NOBODY, `redis ${mode}, as nobody`);
      const b = start(home, ['restore', file, '--aid', 'rd-b'], AS_NOBODY);
      const sysB = await until("rd-b's port", () => systemPort(home, 'rd-b', port, AS_NOBODY));
      await until('rd-b answering', async () => ((await redisOut(sysB, 'PING')) === 'PONG' ? true : undefined));
      expect(await redisOut(sysB, 'GET', 'greeting')).toBe('hello from memory');
      for (const [, spid] of await processes(home, 'rd-b', AS_NOBODY)) expect(statSync(`/proc/${spid}`).uid).toBe(NOBODY);
      await end(home, 'rd-b', b, AS_NOBODY);
    });
  });

  it('node serving HTTP, snapshotted --stop and restored by nobody: the count goes on, the timer ticks, under the same pid', async ({ expect }) => {
    await asNobody((home) => nodeCase(expect, home, 'js', flags, AS_NOBODY, `node ${mode}, as nobody`));
  });
});
