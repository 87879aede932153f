/**
 * Warm clones of real, unmodified third-party programs (issue 19): each is
 * run under appshot, warmed up, snapshotted whole with --stop, made a
 * template, and cloned warm three times (`template clone -n 3`). Every clone
 * continues the saved state (its memory, threads, children, listeners), each
 * apart from the others (its own system PIDs, ports and memory under the saved
 * vpids and virtual port: a write in one is not seen in another); the clones'
 * memory stays shared (their PSS summed, from /proc/PID/smaps_rollup, well
 * under N times one instance's RSS); a clone gives memory back and fills it
 * again; ending one leaves the others running; after the clone command ends,
 * nothing is left and `appshot gc` finds nothing. Identity and --no-identity,
 * and as an unprivileged user.
 *
 * The programs: Debian's redis-server (jemalloc, its bio threads), python3's
 * http.server answering through a multiprocessing pool (forked workers, the
 * pool's threads and queues), node serving HTTP from an in-memory counter
 * (libuv's threads, epoll, timers).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../ts/paths.js';
import { MODES, freePort, makeHome, waitFor } from './helpers.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const PYTHON = '/usr/bin/python3';
const NODE = '/usr/bin/node';
const NOBODY = 65534;
const AS_NOBODY = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];
const N = 3;

interface Cmd {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  out: () => string;
  err: () => string;
}

/** The commands a test started, ended after it (SIGTERM ends a harness's application). */
const started = new Set<Cmd>();
afterEach(async () => {
  for (const c of started) c.child.kill('SIGTERM');
  await Promise.all([...started].map((c) => c.done));
  started.clear();
});

/** An appshot command, running; as: a prefix (setpriv) to run it as another user. */
function start(home: string, args: string[], as: string[] = []): Cmd {
  const env: NodeJS.ProcessEnv = { ...process.env, APPSHOT_HOME: home };
  delete env.APPSHOT_AID;
  delete env.LD_PRELOAD;
  const argv = [...as, process.execPath, CLI_PATH, ...args];
  const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const cmd: Cmd = {
    child,
    out: () => stdout,
    err: () => stderr,
    done: new Promise((resolve) =>
      child.on('close', (code, signal) => {
        started.delete(cmd);
        resolve({ code: code ?? (signal ? 128 : null), stdout, stderr });
      }),
    ),
  };
  started.add(cmd);
  return cmd;
}

/** An appshot command run to its end. */
function appshot(home: string, args: string[], as: string[] = []) {
  return start(home, args, as).done;
}

async function json<T>(home: string, args: string[], as: string[]): Promise<T> {
  const r = await appshot(home, [...args, '--json'], as);
  if (r.code !== 0) throw new Error(`appshot ${args.join(' ')}: ${r.code} ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface Proc {
  aid: string;
  vpid: number;
  spid: number;
}
const ps = (home: string, as: string[]) => json<Proc[]>(home, ['ps'], as);

/** The system port each application's virtual TCP port is leased at. */
async function systemPorts(home: string, port: number, as: string[]): Promise<Map<string, number>> {
  const rows = await json<{ aid: string; virtual: number; system: number }[]>(home, ['tables', '--type', 'port'], as);
  return new Map(rows.filter((r) => r.virtual === port).map((r) => [r.aid, r.system]));
}

/** A figure of /proc/PID/smaps_rollup, in kB. */
function rollup(spid: number, field: 'Rss' | 'Pss'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${spid}/smaps_rollup`, 'utf8'));
  if (!m) throw new Error(`no ${field} for ${spid}`);
  return Number(m[1]);
}

/** GET path from 127.0.0.1:port: the body. */
function get(port: number, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 15_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} from ${port} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** redis-cli at a system port: its answer. */
function redis(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('redis-cli', ['-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out.trim()));
  });
}

/**
 * The program under appshot as application `src`, warmed up by warm(its
 * system port), then snapshotted whole with --stop: the snapshot file, and
 * the source's processes and their RSS (kB) just before.
 */
async function warmedUp(home: string, flags: readonly string[], as: string[], command: string[], port: number, ready: RegExp, warm: (sys: number) => Promise<void>) {
  const src = start(home, ['run', ...flags, '--aid', 'src', '--', ...command], as);
  await waitFor(() => src.out() + src.err(), ready, 30_000);
  await warm((await systemPorts(home, port, as)).get('src')!);
  const procs = (await ps(home, as)).filter((p) => p.aid === 'src');
  const rss = procs.reduce((n, p) => n + rollup(p.spid, 'Rss'), 0);
  const file = join(home, 'src.snap');
  const snap = await appshot(home, ['snapshot', 'src', '-o', file, '--stop', '--json'], as);
  expect(snap.code, snap.stderr).toBe(0);
  expect(JSON.parse(snap.stdout)).toMatchObject({ whole: true, stopped: true, processes: procs.length });
  await src.done;
  return { file, vpids: procs.map((p) => p.vpid).sort(), rss };
}

/**
 * Template `t` of file, cloned warm N times side by side: the clone command,
 * each clone's processes, and its system port. Every clone has the saved
 * vpids over system PIDs of its own, and a system port of its own.
 */
async function warmClones(home: string, file: string, port: number, vpids: number[], as: string[]) {
  const made = await appshot(home, ['template', 'create', 't', '--from', file], as);
  expect(made.code, made.stderr).toBe(0);
  expect(made.stderr).toMatch(new RegExp(`clones of template 't' continue the ${vpids.length} process\\(es\\) of .* where they were \\(warm\\)`));
  const h = start(home, ['template', 'clone', 't', '-n', String(N), '--json'], as);
  await waitFor(h.err, new RegExp(`all ${N} clones of template 't' are running|not made`), 60_000);
  expect(h.err()).toMatch(new RegExp(`all ${N} clones of template 't' are running`));
  await waitFor(h.out, /^\{.*\}$/m); // its own pipe: it may come after stderr's line
  const summary = JSON.parse(h.out().split('\n')[0]) as { clones: { aid: string; warm: boolean }[] };
  const aids = Array.from({ length: N }, (_, i) => `t-${i + 1}`);
  expect(summary.clones.map((c) => [c.aid, c.warm])).toEqual(aids.map((a) => [a, true]));
  const procs = (await ps(home, as)).filter((p) => p.aid.startsWith('t-'));
  for (const aid of aids) expect(procs.filter((p) => p.aid === aid).map((p) => p.vpid).sort()).toEqual(vpids);
  expect(new Set(procs.map((p) => p.spid)).size).toBe(N * vpids.length);
  if (as.length) for (const p of procs) expect(statUid(p.spid)).toBe(NOBODY);
  const ports = await systemPorts(home, port, as);
  expect([...ports.keys()].sort()).toEqual(aids);
  expect(new Set(ports.values()).size).toBe(N);
  return { h, aids, procs, ports };
}

const statUid = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/** The clones' PSS summed, which must stay well under N times one instance's RSS. */
function expectShared(procs: Proc[], rss: number): void {
  const pss = procs.reduce((n, p) => n + rollup(p.spid, 'Pss'), 0);
  expect(pss).toBeLessThan((N * rss) / 2);
}

/** Ends clone aid (appshot kill): its processes go, the others' stay. */
async function endOne(home: string, aid: string, procs: Proc[], as: string[]): Promise<void> {
  expect((await appshot(home, ['kill', aid], as)).code).toBe(0);
  const left = await until(async () => {
    const now = (await ps(home, as)).filter((p) => procs.some((q) => q.aid === p.aid));
    return now.some((p) => p.aid === aid) ? undefined : now;
  });
  expect(left.map((p) => p.spid).sort()).toEqual(procs.filter((p) => p.aid !== aid).map((p) => p.spid).sort());
}

/** The clone command ended: no process, no row, and gc finds nothing. */
async function endAll(home: string, h: Cmd, as: string[]): Promise<void> {
  h.child.kill('SIGTERM');
  await h.done;
  expect(await ps(home, as)).toEqual([]);
  expect((await json<unknown[]>(home, ['tables'], as)).length).toBe(0);
  const gc = await appshot(home, ['gc'], as);
  expect(gc.code, gc.stderr).toBe(0);
  expect(gc.stdout).toMatch(/nothing to clean up/);
}

async function until<T>(probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + 20_000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A home for one test: the run's own for root, else one nobody owns where nobody can reach it. */
function homeFor(as: string[]): string {
  if (!as.length) return makeHome();
  const dir = mkdtempSync(join(tmpdir(), 'appshot-template-programs-'));
  chmodSync(dir, 0o755);
  const home = join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, NOBODY, NOBODY);
  nobodyDirs.push(dir);
  return home;
}
const nobodyDirs: string[] = [];
afterEach(() => {
  for (const d of nobodyDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

// --- redis-server ------------------------------------------------------------------

const FILL = "for i=1,tonumber(ARGV[1]) do redis.call('SET',ARGV[2]..i,string.rep(ARGV[3],50)..i) end return redis.call('DBSIZE')";
const THIN = "for i=1,tonumber(ARGV[1]) do if i%10~=0 then redis.call('DEL','k'..i) end end return redis.call('DBSIZE')";
/** How many of the keys PREFIX..i (i a multiple of STEP up to COUNT) do not hold their value. */
const BAD = "local bad=0 for i=tonumber(ARGV[2]),tonumber(ARGV[1]),tonumber(ARGV[2]) do if redis.call('GET',ARGV[3]..i)~=string.rep(ARGV[4],50)..i then bad=bad+1 end end return bad";
const KEYS = 100_000;

async function redisCase(flags: readonly string[], as: string[]): Promise<void> {
  const home = homeFor(as);
  const port = await freePort();
  const dir = as.length ? '/tmp' : home;
  const cmd = ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  const src = await warmedUp(home, flags, as, cmd, port, /Ready to accept connections/, async (sys) => {
    expect(await redis(sys, 'SET', 'greeting', 'hello from memory')).toBe('OK');
    expect(await redis(sys, 'EVAL', FILL, '0', String(KEYS), 'k', 'v')).toBe(String(KEYS + 1));
  });
  expect(src.rss).toBeGreaterThan(15_000); // the keys: tens of MB
  const { h, aids, procs, ports } = await warmClones(home, src.file, port, src.vpids, as);
  const at = aids.map((a) => ports.get(a)!);

  // Each answers from the data it did not load, and keeps its own writes.
  for (const p of at) expect(await redis(p, 'GET', 'greeting')).toBe('hello from memory');
  for (const p of at) expect(await redis(p, 'SET', 'mine', String(p))).toBe('OK');
  for (const p of at) expect(await redis(p, 'GET', 'mine')).toBe(String(p));
  expectShared(procs, src.rss);

  // The first gives most of its memory back (jemalloc: madvise over pages
  // mapped from the image) and fills it again: every value right, in it and in the others.
  expect(await redis(at[0], 'EVAL', THIN, '0', String(KEYS))).toBe(String(KEYS / 10 + 2));
  expect(await redis(at[0], 'MEMORY', 'PURGE')).toBe('OK');
  expect(await redis(at[0], 'EVAL', FILL, '0', String(KEYS), 'n', 'w')).toBe(String(KEYS + KEYS / 10 + 2));
  expect(await redis(at[0], 'EVAL', BAD, '0', String(KEYS), '10', 'k', 'v')).toBe('0');
  expect(await redis(at[0], 'EVAL', BAD, '0', String(KEYS), '1', 'n', 'w')).toBe('0');
  for (const p of at.slice(1)) {
    expect(await redis(p, 'DBSIZE')).toBe(String(KEYS + 2));
    expect(await redis(p, 'EVAL', BAD, '0', String(KEYS), '1', 'k', 'v')).toBe('0');
  }

  await endOne(home, aids[1], procs, as);
  for (const p of [at[0], at[2]]) expect(await redis(p, 'GET', 'mine')).toBe(String(p));
  await endAll(home, h, as);
}

describe.each(MODES)('redis-server, %s', (_mode, flags) => {
  it(`${N} warm clones each answer GET from the saved keys and keep their own writes; memory shared; one deletes, MEMORY PURGE, refills; ending one leaves the others; nothing left`, async () => {
    await redisCase(flags, []);
  });
});

// --- python3: http.server with a multiprocessing pool --------------------------------

interface PoolAnswer {
  pid: number;
  worker: number;
  square: number;
  entries: number;
  entry: string;
  answered: number;
}

async function poolCase(flags: readonly string[], as: string[]): Promise<void> {
  const home = homeFor(as);
  const port = await freePort();
  const cmd = [PYTHON, '-u', join(FIXTURES, 'warm-pool.py'), String(port)];
  let first: PoolAnswer[] = [];
  const src = await warmedUp(home, flags, as, cmd, port, /^serving /m, async (sys) => {
    first = [JSON.parse(await get(sys, '/3')), JSON.parse(await get(sys, '/4'))];
  });
  // The server, and the pool's two workers (whose threads have rows of their own: Python asks each thread's id).
  expect(src.vpids.length).toBe(3);
  expect(first[1]).toMatchObject({ square: 16, entries: 100_000, answered: 2 });
  const workers = src.vpids.filter((v) => v !== first[0].pid);
  const { h, aids, procs, ports } = await warmClones(home, src.file, port, src.vpids, as);

  // All at once: each goes on from the saved count, its own pool's saved workers answering.
  const answers: PoolAnswer[] = await Promise.all(aids.map(async (a) => JSON.parse(await get(ports.get(a)!, '/7'))));
  for (const a of answers) {
    expect(a).toMatchObject({ pid: first[0].pid, square: 49, entries: 100_000, entry: `7:${'y'.repeat(60)}`, answered: 3 });
    expect(workers).toContain(a.worker);
  }
  // Apart: two more requests to the first leave the others' counts where they were.
  for (const n of [8, 9]) expect(JSON.parse(await get(ports.get(aids[0])!, `/${n}`))).toMatchObject({ square: n * n });
  expect(JSON.parse(await get(ports.get(aids[0])!, '/2')).answered).toBe(6);
  expect(JSON.parse(await get(ports.get(aids[2])!, '/2')).answered).toBe(4);
  expectShared(procs, src.rss);

  await endOne(home, aids[1], procs, as);
  expect(JSON.parse(await get(ports.get(aids[2])!, '/5'))).toMatchObject({ square: 25, answered: 5 });
  await endAll(home, h, as);
}

describe.each(MODES)('python3 http.server with a multiprocessing pool, %s', (_mode, flags) => {
  it(`${N} warm clones each continue the count, their own pool (workers and its threads) answering; memory shared; ending one leaves the others; nothing left`, async () => {
    await poolCase(flags, []);
  });
});

// --- node: HTTP from an in-memory counter -------------------------------------------

const COUNT = /^count (\d+) ticks (\d+) pid (\d+)\n$/;

async function nodeCase(flags: readonly string[], as: string[]): Promise<void> {
  const home = homeFor(as);
  const port = await freePort();
  let saved: number[] = [];
  const src = await warmedUp(home, flags, as, [NODE, join(FIXTURES, 'ckpt-http.js'), String(port)], port, /^listening \d+$/m, async (sys) => {
    await get(sys);
    saved = COUNT.exec(await get(sys))!.slice(1).map(Number);
  });
  expect(saved[0]).toBe(2);
  const { h, aids, procs, ports } = await warmClones(home, src.file, port, src.vpids, as);
  const next = async (aid: string) => COUNT.exec(await get(ports.get(aid)!))!.slice(1).map(Number);

  const answers = await Promise.all(aids.map(next));
  for (const [count, ticks, pid] of answers) {
    expect(count).toBe(3);
    expect(ticks).toBeGreaterThanOrEqual(saved[1]);
    expect(pid).toBe(saved[2]);
  }
  // libuv's timers and thread pool go on in each; the counts stay apart.
  for (let i = 0; i < 2; i++) await next(aids[0]);
  const later = await until(async () => {
    const v = await next(aids[0]);
    return v[1] >= answers[0][1] + 3 ? v : undefined;
  });
  expect(later[0]).toBeGreaterThanOrEqual(6);
  expect((await next(aids[2]))[0]).toBe(4);
  for (const p of procs) expect(Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${p.spid}/status`, 'utf8'))![1])).toBeGreaterThan(4);
  expectShared(procs, src.rss);

  await endOne(home, aids[1], procs, as);
  expect((await next(aids[2]))[0]).toBe(5);
  await endAll(home, h, as);
}

describe.each(MODES)('node serving HTTP from an in-memory counter, %s', (_mode, flags) => {
  it(`${N} warm clones each continue the count, libuv's timers and threads running; memory shared; ending one leaves the others; nothing left`, async () => {
    await nodeCase(flags, []);
  });
});

// --- as an unprivileged user -----------------------------------------------------------

// Each program in one mode (the root tests above run both), to keep the file's time down.
describe('as an unprivileged user (nobody)', () => {
  it('redis-server, remapped: snapshot, template and warm clones made by nobody, run as nobody', async () => {
    await redisCase(['--no-identity'], AS_NOBODY);
  });

  it('python3 with its multiprocessing pool, identity: warm clones made by nobody, run as nobody', async () => {
    await poolCase([], AS_NOBODY);
  });
});

// --- PostgreSQL 15: six processes, SysV and shared anonymous memory, a data directory ---

const PG_BIN = '/usr/lib/postgresql/15/bin';
/** Two clones: each seeds its own copy of the 39 MB data directory, about 2 s here, one after another. */
const PG_N = 2;

function userIds(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim() || NaN);
  const [uid, gid] = [id('-u'), id('-g')];
  if (!(uid > 0)) throw new Error(`no user ${name}: scripts/system-deps.sh installs postgresql, which makes it`);
  return { uid, gid };
}

/** A folder postgres owns with a fresh cluster in data/ and a home; its prefix to run as postgres. */
function pgCluster(): { dir: string; home: string; as: string[] } {
  const pg = userIds('postgres');
  const dir = mkdtempSync(join(tmpdir(), 'appshot-template-pg-'));
  nobodyDirs.push(dir);
  chmodSync(dir, 0o755);
  chownSync(dir, pg.uid, pg.gid);
  const r = spawnSync(join(PG_BIN, 'initdb'), ['-D', join(dir, 'data'), '-U', 'postgres', '--no-sync'], { uid: pg.uid, gid: pg.gid, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`initdb failed: ${r.stderr}`);
  const home = join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, pg.uid, pg.gid);
  return { dir, home, as: ['setpriv', `--reuid=${pg.uid}`, `--regid=${pg.gid}`, '--clear-groups'] };
}

/** psql at a system port: its rows, one line each. */
function psql(port: number, sql: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-qAtc', sql], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`psql ${sql}: ${code} ${err}`))));
  });
}

/** postgres on 127.0.0.1:port (no Unix socket), under appshot, with a table holding 42, snapshotted --stop. */
async function pgWarmedUp(c: { dir: string; home: string; as: string[] }, flags: readonly string[], port: number, extra: string[]) {
  const cmd = [join(PG_BIN, 'postgres'), '-D', join(c.dir, 'data'), '-k', '', '-c', 'listen_addresses=127.0.0.1', '-p', String(port), ...extra];
  let shm: string[] = [];
  const src = await warmedUp(c.home, flags, c.as, cmd, port, /ready to accept connections/, async (sys) => {
    // The POSIX shared memory objects it made (left behind by its SIGKILL): removed after the test.
    const spids = (await ps(c.home, c.as)).filter((p) => p.aid === 'src').map((p) => p.spid);
    shm = [...new Set(spids.flatMap((s) => [...readFileSync(`/proc/${s}/maps`, 'utf8').matchAll(/ (\/dev\/shm\/PostgreSQL\.\d+)$/gm)].map((m) => m[1])))];
    shmLeft.push(...shm);
    expect(await psql(sys, 'create table t(x int); insert into t values (42); select sum(x) from t')).toBe('42');
  });
  expect(src.vpids.length).toBeGreaterThanOrEqual(5); // postmaster, checkpointer, writers, launchers
  return { ...src, shm };
}
const shmLeft: string[] = [];
afterEach(() => {
  for (const f of shmLeft.splice(0)) rmSync(f, { force: true });
});

/** Each clone's data directory its own (seeded from the template's at the clone). */
const pgRules = (dir: string) => `DEFINE <APPL-ID> AS PROPERTY application-id\nREDIR PATH "${join(dir, 'data')}" TO "${join(dir, 'clones')}/<APPL-ID>/data"\n`;

describe.each(MODES)('postgres 15, %s', (_mode, flags) => {
  it(`with SysV dynamic shared memory and its data directory under a REDIR rule: ${PG_N} warm clones each continue the saved table in their own data directory and segments; ending one leaves the others; nothing left`, async () => {
    const c = pgCluster();
    const port = await freePort();
    const src = await pgWarmedUp(c, flags, port, ['-c', 'dynamic_shared_memory_type=sysv', '-c', 'shared_buffers=16MB']);
    expect(src.shm).toEqual([]);
    writeFileSync(join(c.dir, 'pg.rules'), pgRules(c.dir));
    chownSync(join(c.dir, 'pg.rules'), userIds('postgres').uid, userIds('postgres').gid);
    const made = await appshot(c.home, ['template', 'create', 'pg', '--from', src.file, '--rules', join(c.dir, 'pg.rules')], c.as);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toMatch(/clones of template 'pg' continue the \d process\(es\)/);
    const h = start(c.home, ['template', 'clone', 'pg', '-n', String(PG_N)], c.as);
    await waitFor(h.err, new RegExp(`all ${PG_N} clones of template 'pg' are running|not made`), 60_000);
    expect(h.err()).toMatch(new RegExp(`all ${PG_N} clones of template 'pg' are running`));
    const aids = Array.from({ length: PG_N }, (_, i) => `pg-${i + 1}`);
    const procs = (await ps(c.home, c.as)).filter((p) => p.aid.startsWith('pg-'));
    for (const aid of aids) expect(procs.filter((p) => p.aid === aid).map((p) => p.vpid).sort()).toEqual(src.vpids);
    const ports = await systemPorts(c.home, port, c.as);
    // Each its own row in the one table, its own SysV segments.
    for (const aid of aids) expect(await psql(ports.get(aid)!, `insert into t values (${aid.slice(3)}); select count(*), sum(x) from t`)).toBe(`2|${42 + Number(aid.slice(3))}`);
    const shmRows = (await json<{ aid: string; system: number }[]>(c.home, ['tables', '--type', 'shm'], c.as)).filter((r) => r.aid.startsWith('pg-'));
    expect(new Set(shmRows.map((r) => r.system)).size).toBe(shmRows.length);
    expect(shmRows.length).toBeGreaterThanOrEqual(PG_N);
    for (const aid of aids) expect(existsSync(join(c.dir, 'clones', aid, 'data', 'PG_VERSION'))).toBe(true);
    measured.push(`postgres ${_mode}: ${PG_N} clones of ${src.vpids.length} processes, PSS ${procs.reduce((n, p) => n + rollup(p.spid, 'Pss'), 0)} kB against the source's RSS ${src.rss} kB; ${h.err().match(/ready in [\d.]+ ms/g)?.join(', ')}`);

    await endOne(c.home, aids[1], procs, c.as);
    expect(await psql(ports.get(aids[0])!, 'select sum(x) from t')).toBe('43');
    await endAll(c.home, h, c.as);
    expect(h.err()).not.toMatch(/could not (open|remove) shared memory/);
  });
});

describe("postgres 15 with its default (POSIX) dynamic shared memory", () => {
  it('create and clone name the /dev/shm object every clone would share (exit 3, nothing left); --cold starts postgres again in each clone', async () => {
    const c = pgCluster();
    const port = await freePort();
    const src = await pgWarmedUp(c, [], port, []);
    expect(src.shm.length).toBeGreaterThan(0);
    writeFileSync(join(c.dir, 'pg.rules'), pgRules(c.dir));
    const made = await appshot(c.home, ['template', 'create', 'pg', '--from', src.file, '--rules', join(c.dir, 'pg.rules')], c.as);
    expect(made.code, made.stderr).toBe(0);
    const why = `the mapping of /dev/shm/PostgreSQL\\.\\d+ in process \\d+ \\(postgres\\): /dev/shm/PostgreSQL\\.\\d+ is a POSIX shared memory object \\(shm_open\\) the process maps shared: every clone would share that one object`;
    expect(made.stderr).toMatch(new RegExp(`template 'pg' cannot be cloned warm: ${why}`));
    const refused = await appshot(c.home, ['template', 'clone', 'pg', '-n', '2'], c.as);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(new RegExp(`made 0 of 2 clones of template 'pg'; the remaining 2 were not made: template 'pg' cannot be cloned warm: ${why}`));
    expect(await ps(c.home, c.as)).toEqual([]);

    const cold = start(c.home, ['template', 'clone', 'pg', '-n', '2', '--cold'], c.as);
    await waitFor(() => cold.out() + cold.err(), /ready to accept connections[^]*ready to accept connections/, 60_000);
    const ports = await systemPorts(c.home, port, c.as);
    for (const aid of ['pg-1', 'pg-2']) expect(await psql(ports.get(aid)!, 'select sum(x) from t')).toBe('42');
    await endAll(c.home, cold, c.as);
  });
});

const measured: string[] = [];
afterAll(() => {
  if (measured.length) console.log(`template-programs:\n${measured.join('\n')}`);
});
