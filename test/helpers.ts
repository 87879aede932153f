import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { CLI_PATH, builtProgram } from '../ts/paths.js';

/** This run's own folder of test homes, made by global setup: one per run,
 * so two runs at once never end each other's processes. */
export function testRoot(): string {
  const root = process.env.APPSHOT_TEST_ROOT;
  if (!root) throw new Error('APPSHOT_TEST_ROOT is not set: run the tests with npm test');
  return root;
}
export const SEMTOOL = builtProgram('semtool');
export const SEMLOOP = builtProgram('semloop');
export const SHMTOOL = builtProgram('shmtool');
export const MSGTOOL = builtProgram('msgtool');
export const PRODCONS = builtProgram('prodcons');
export const PIDTOOL = builtProgram('pidtool');

/** The homes this test file made, which it sweeps when it ends (setup-each.ts). */
export const madeHomes: string[] = [];

/** A fresh APPSHOT_HOME for one test; the file's end (and, for what is
 * left after that, global teardown) cleans them all. */
export function makeHome(): string {
  const home = mkdtempSync(join(testRoot(), 'home-'));
  madeHomes.push(home);
  return home;
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cleanEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, APPSHOT_HOME: home, ...extra };
  delete env.APPSHOT_AID;
  delete env.LD_PRELOAD;
  return env;
}

/** Runs the appshot command to completion. */
export function appshot(home: string, args: string[], extraEnv?: NodeJS.ProcessEnv): Result {
  const r = spawnSync(process.execPath, [CLI_PATH, ...args], { env: cleanEnv(home, extraEnv), encoding: 'utf8', timeout: 50_000, maxBuffer: 1 << 28 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const running = new Set<Promise<Result>>();
const runningChildren = new Set<ChildProcess>();

/** Ends every harness a test started and left running (SIGTERM reaches
 * its application), and waits for their cleanup. A harness still waiting
 * after a grace period waits on processes SIGTERM did not end (a failed
 * test's forked workers, say): `appshot kill` ends its applications, as an
 * operator would, so that one failure does not hang the file's later tests. */
export async function stopAll(): Promise<void> {
  for (const child of runningChildren) child.kill('SIGTERM');
  const all = Promise.all([...running]);
  const late = await Promise.race([all.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), STOP_GRACE_MS))]);
  if (late) for (const home of new Set([...runningChildren].map((c) => homeOf.get(c)!))) killApplications(home);
  await all;
}

const STOP_GRACE_MS = 15_000;
const homeOf = new WeakMap<ChildProcess, string>();

function killApplications(home: string): void {
  const apps = tablesJson(home, ['--apps']) as unknown as { aid: string; state: string }[];
  for (const { aid } of apps.filter((a) => a.state === 'running')) appshot(home, ['kill', aid]);
}

/** Runs the appshot command to completion without holding the test's worker meanwhile: for the commands that take
 * long (many forks, waits on deadlines) or come many in a row. A vitest worker blocked for 60 s misses its runner's
 * answer and fails the whole run, though every test passed. */
export function appshotLater(home: string, args: string[], extraEnv?: NodeJS.ProcessEnv): Promise<Result> {
  return appshotAsync(home, args, extraEnv).done;
}

/** Any command to completion, as spawnSync would, without holding the test's worker (appshotLater). */
export function runLater(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return collected(spawn(cmd, args, { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] })).done;
}

/** A started command's output as it comes, and its end. */
function collected(child: ChildProcess) {
  let stdout = '';
  let stderr = '';
  let ended: Result | null = null;
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Result>((resolve) => child.on('close', (code, signal) => resolve((ended = { code, signal, stdout, stderr }))));
  const watched = (read: () => string): OutputReader => Object.assign(read, { ended: () => ended, stderr: () => stderr });
  return { done, out: watched(() => stdout), err: watched(() => stderr) };
}

/** Starts the appshot command and collects its output; with stdin, its standard input is a pipe (child.stdin). */
export function appshotAsync(home: string, args: string[], extraEnv?: NodeJS.ProcessEnv, { stdin = false } = {}) {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: cleanEnv(home, extraEnv), stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  runningChildren.add(child);
  homeOf.set(child, home);
  const { done, out, err } = collected(child);
  running.add(done);
  void done.then(() => {
    runningChildren.delete(child);
    running.delete(done);
  });
  return { child, done, out, err };
}

/** A started command's stdout or stderr, which also tells whether the command has ended: a wait on it then fails at
 * once, showing how the command ended and what it printed, not at its deadline with nothing to go on. */
export type OutputReader = (() => string) & { ended?: () => Result | null; stderr?: () => string };

/** Resolves once the output so far matches re. The default wait is long: a program's start under the shim is
 * CPU-bound (python3 -m http.server: 0.7 s of CPU here), and with the suite's other programs on two cores it took
 * over 20 s in full runs; a wait that never matches still fails, only later. */
export async function waitFor(read: OutputReader, re: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
  const end = Date.now() + ms;
  for (;;) {
    const ended = read.ended?.(); // before the read: the output is whole once the command has ended
    const m = read().match(re);
    if (m) return m;
    if (ended) throw new Error(`waiting for ${re}: the command ended (${ended.signal ?? `exit ${ended.code}`}) first; it printed:\n${ended.stdout}\nand on stderr:\n${ended.stderr}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${re} in:\n${read()}${read.stderr ? `\nstderr so far:\n${read.stderr()}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function runNative(args: string[], program = SEMTOOL): Result {
  const r = spawnSync(program, args, { encoding: 'utf8', env: cleanEnv('/nonexistent') });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

export interface KernelSem {
  key: number;
  semid: number;
  nsems: number;
  cuid: number;
  otime: number;
  ctime: number;
}

/** The kernel's semaphore sets, from /proc/sysvipc/sem. */
export function kernelSems(): KernelSem[] {
  return readFileSync('/proc/sysvipc/sem', 'latin1')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim())
    .map((l) => {
      const f = l.trim().split(/\s+/).map(Number);
      return { key: f[0] >>> 0, semid: f[1], nsems: f[3], cuid: f[6], otime: f[8], ctime: f[9] };
    });
}

export interface Row {
  aid: string;
  type: string;
  virtual: number;
  system: number;
  key: number | null;
  creator: number | null;
  removed?: boolean;
}

/** The rows `appshot tables --json` prints; an --aid of no application
 * (which appshot refuses, exit 1) has none. */
export function tablesJson(home: string, args: string[] = []): Row[] {
  const r = appshot(home, ['tables', '--json', ...args]);
  if (r.code === 1 && /^appshot: no application '[^']*' in /.test(r.stderr)) return [];
  if (r.code !== 0) throw new Error(`appshot tables failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The lines of a program's output. */
export function lines(out: string): string[] {
  return out.trim().split('\n');
}

/** GET who.txt (a test server's own name) from a port, a new connection each time. */
export function who(port: number, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/who.txt', agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** What clients asking who (above) at once saw: each answer and each
 * failure, with when its request started. */
export interface WhoLoad {
  answers: { startedAt: number; who: string }[];
  failures: { startedAt: number; error: string }[];
}

/** concurrency clients asking who at port until total requests were
 * answered (and, while more() says so, on). A request that fails (one in
 * flight at a killed instance fails as it would natively) is retried, as
 * HTTP clients retry a GET. load fills as they go, for a test to act on. */
export async function whoUnderLoad(port: number, total: number, concurrency: number, load: WhoLoad, more = () => false): Promise<void> {
  let next = 0;
  const client = async () => {
    while (next < total) {
      next++;
      for (;;) {
        const startedAt = performance.now();
        try {
          load.answers.push({ startedAt, who: await who(port) });
          break;
        } catch (err) {
          load.failures.push({ startedAt, error: String(err) });
        }
      }
      if (next === total && more()) next--;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
}

/** The two modes every feature is tested in: identity first, and remapped
 * (--no-identity), what restored, cloned and second instances run in. */
export const MODES = [
  ['identity', [] as string[]],
  ['remapped', ['--no-identity']],
] as const;

/** Whether a TCP port is free on this host (a listener can take it now). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, () => s.close(() => resolve(true)));
  });
}

/** A port free on this host with the count - 1 after it, chosen at random so
 * that two test runs at once do not meet. */
export async function freePort(count = 1): Promise<number> {
  for (;;) {
    const p = 30000 + Math.floor(Math.random() * 10000);
    let free = true;
    for (let i = 0; i < count && free; i++) free = await portFree(p + i);
    if (free) return p;
  }
}

/** The text a TCP connection to 127.0.0.1:port gets before the server
 * closes it (a test server's one line). */
export function lineFrom(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = connect(port, '127.0.0.1');
    s.setTimeout(10_000, () => s.destroy(new Error(`no line from port ${port}`)));
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
}

export const APACHE = '/usr/sbin/apache2';
const APACHE_MODULES = '/usr/lib/apache2/modules';

/** Apache's prefork set-up in dir, which www-data must be able to read: as
 * root with `User www-data` and `Mutex sysvsem`, listening at port and
 * port + 1 on 127.0.0.1 (two listeners, so the workers serialize accept()
 * with a SysV semaphore root made), serving who.txt with body. */
export function writeApacheConf(dir: string, port: number, body: string): void {
  mkdirSync(join(dir, 'htdocs'), { mode: 0o755 });
  writeFileSync(join(dir, 'htdocs', 'who.txt'), `${body}\n`, { mode: 0o644 });
  writeFileSync(
    join(dir, 'httpd.conf'),
    `ServerRoot "${dir}"
ServerName localhost
DefaultRuntimeDir "${dir}"
PidFile "${dir}/httpd.pid"
ErrorLog "${dir}/error.log"
LogLevel notice
LoadModule mpm_prefork_module ${APACHE_MODULES}/mod_mpm_prefork.so
LoadModule authz_core_module ${APACHE_MODULES}/mod_authz_core.so
StartServers 2
MinSpareServers 1
MaxSpareServers 2
User www-data
Group www-data
Mutex sysvsem
Listen 127.0.0.1:${port}
Listen 127.0.0.1:${port + 1}
DocumentRoot "${dir}/htdocs"
<Directory "${dir}/htdocs">
  Require all granted
</Directory>
`,
  );
}
