// A program's start under the shim (issue 21): the checks it makes
// cheaper must still hold. The inflight file (the in-flight record and the
// journal behind it) is mapped and written by every program: a hole in it
// would be SIGBUS on a full filesystem, so a start that finds one fills it
// (posix_fallocate) before mapping. The check is an extent lookup now
// (FIEMAP), not SEEK_HOLE's walk of the whole file's page cache. A program
// posix_spawn starts takes its start time (which tells its row from a
// dead process's with its number) from the tick its parent read before the
// spawn, when its own clock reading falls in that tick, not from /proc.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as S from '../tables/schema.js';
import { openTableDb } from '../ts/tabledb.js';
import { MODES, PIDTOOL, appshot, appshotAsync, makeHome, stopAll, tablesJson, testRoot, waitFor } from './helpers.js';

afterEach(stopAll);

/** The byte ranges of the file no extent covers (its holes), by FIEMAP
 * as the shim asks: st_blocks counts extent-tree blocks too, and SEEK_HOLE
 * calls an allocated but unwritten extent a hole. */
const HOLES_PY = `
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY); size = os.fstat(fd).st_size
n = 64; buf = bytearray(struct.pack('=QQIIII', 0, size, 0, 0, n, 0) + bytes(56 * n))
fcntl.ioctl(fd, 0xC020660B, buf)
got = struct.unpack_from('=I', buf, 20)[0]; at = 0; holes = []
for i in range(got):
    logical, physical, length = struct.unpack_from('=QQQ', buf, 32 + 56 * i)
    if logical > at: holes.append([at, logical])
    at = max(at, logical + length)
if at < size: holes.append([at, size])
print(__import__('json').dumps(holes))
`;
function holes(file: string): number[][] {
  const r = spawnSync('python3', ['-c', HOLES_PY, file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

function fallocate(file: string, args: string[]): void {
  const r = spawnSync('fallocate', [...args, file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

describe.each(MODES)("a program's start, %s", (_mode, flags) => {
  it.each([
    ['its record page', (_size: number) => 0],
    ["the journal's last page", (size: number) => size - 4096],
  ])('fills a hole in the inflight file (%s) before mapping it', async (_where, at) => {
    const home = makeHome();
    const dir = mkdtempSync(join(testRoot(), 'hole-'));
    expect(spawnSync('mkfifo', [join(dir, 'go')]).status).toBe(0);
    // The shell has the file mapped already; the program it starts after
    // the hole is punched maps it, at its first use of the tables (a PID
    // no process has, which only they can tell).
    const script = `echo ready; read go < ${dir}/go; ${PIDTOOL} kill 99999 0 > /dev/null; echo started; exec sleep 100000`;
    const app = appshotAsync(home, ['run', ...flags, '--', 'sh', '-c', script]);
    await waitFor(app.out, /ready/);
    const file = join(home, S.INFLIGHT_FILE);
    const size = statSync(file).size;
    // Two allocated pages past the part the shim maps, so that the count of
    // blocks alone does not tell the hole (the extents must).
    fallocate(file, ['--offset', String(size), '--length', '8192']);
    fallocate(file, ['--punch-hole', '--offset', String(at(size)), '--length', '4096']);
    expect(holes(file)).toEqual([[at(size), at(size) + 4096]]); // so the test can fail
    writeFileSync(join(dir, 'go'), 'go\n');
    await waitFor(app.out, /started/);
    expect(holes(file)).toEqual([]);
    expect(statSync(file).size).toBe(size + 8192);
    app.child.kill('SIGTERM');
    expect((await app.done).stderr).not.toMatch(/appshot:/);
  });
});

/** The start time the kernel gives process pid, in clock ticks (field 22 of /proc/<pid>/stat). */
function startTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

/** Each vpid has one row, whose process row carries the start time the kernel gives the process. */
function expectRowsStartedAsKernelSays(home: string, vpids: number[]): void {
  const rows = tablesJson(home, ['--type', 'pid']);
  const t = openTableDb(home);
  try {
    for (const k of vpids) {
      const mine = rows.filter((r) => r.virtual === k);
      expect(mine, `vpid ${k} has one row`).toHaveLength(1);
      const proc = t.procs.get(S.procKey(mine[0].system));
      expect(proc, `process ${mine[0].system} has a procs row`).toBeDefined();
      expect(S.decodeProcVal(proc!).startTicks).toBe(startTicks(mine[0].system));
    }
  } finally {
    t.env.close();
  }
}

/** What each of the application's processes is doing (state and kernel
 * wait channel, from /proc), for a failure's message: a spawn that hangs
 * names its place there, a slow machine shows every process runnable. */
function processStates(home: string, aid: string): string {
  const ps = JSON.parse(appshot(home, ['ps', '--aid', aid, '--json']).stdout) as { spid: number }[];
  return ps
    .map(({ spid }) => {
      try {
        const stat = readFileSync(`/proc/${spid}/stat`, 'latin1');
        const wchan = readFileSync(`/proc/${spid}/wchan`, 'latin1');
        return `${spid} ${stat.slice(stat.indexOf('('), stat.lastIndexOf(')') + 3)} ${wchan}`;
      } catch {
        return `${spid} gone`;
      }
    })
    .join('\n');
}

describe.each(MODES)('programs posix_spawn starts, %s', (_mode, flags) => {
  it('each has one row, naming it with the start time the kernel gives it, under the vpid its parent was given; none sees an entry of appshot in its environment', async () => {
    const home = makeHome();
    // Python's os.posix_spawn is libc's posix_spawn. Many children, so
    // that most take their start from the parent's tick (the first is
    // checked against /proc by the parent), each the program it starts
    // (sleep: no later exec records it again); and a few shells that
    // print their environment's appshot entries a program must not see.
    // Python says when it starts spawning: the harness's start and its own
    // (up to 20 s on a loaded 2-core machine, which the one wait for both
    // did not always leave the 40 spawns) have a wait of their own.
    const script = [
      'import os, sys, time',
      'print("spawning", flush=True)',
      "kids = [os.posix_spawn('/bin/sleep', ['sleep', '100000'], os.environ) for i in range(40)]",
      'print("kids", *kids, flush=True)',
      "for i in range(5): os.waitpid(os.posix_spawn('/bin/sh', ['sh', '-c', 'env | grep -c APPSHOT_SPAWN_START'], os.environ), 0)",
      'print("done", flush=True)',
      'time.sleep(100000)',
    ].join('\n');
    const app = appshotAsync(home, ['run', '--aid', 'spawned', ...flags, '--', 'python3', '-c', script]);
    const stop = async () => {
      for (const p of JSON.parse(appshot(home, ['ps', '--aid', 'spawned', '--json']).stdout)) process.kill(p.spid, 'SIGKILL');
      app.child.kill('SIGTERM');
      await app.done;
    };
    // A failure says what the program wrote to stderr (a spawn's error)
    // and where its processes are.
    const told = (e: Error) => new Error(`${e.message}\nstderr:\n${app.err()}\nprocesses:\n${processStates(home, 'spawned')}`);
    try {
      await waitFor(app.out, /^spawning$/m).catch((e) => Promise.reject(told(e)));
      const kids = (await waitFor(app.out, /^kids .*\n/m, 60_000).catch((e) => Promise.reject(told(e))))[0]
        .trim()
        .split(' ')
        .slice(1)
        .map(Number);
      await waitFor(app.out, /^done$/m, 60_000).catch((e) => Promise.reject(told(e)));
      expect(app.out().match(/^\d+$/gm)).toEqual(Array(5).fill('0'));
      expectRowsStartedAsKernelSays(home, kids);
    } finally {
      await stop();
    }
  });
});

describe.each(MODES)('programs a shell forks and execs, %s', (_mode, flags) => {
  it('each has one row, naming it with the start time the kernel gives it (taken from its fork, not /proc, most often)', async () => {
    const home = makeHome();
    // dash forks for each background command and execs sleep in the
    // child: the exec passes the child's start tick to sleep's shim.
    const script = 'for i in $(seq 30); do sleep 100000 & echo "kid $!"; done; echo all; exec sleep 100000';
    const app = appshotAsync(home, ['run', '--aid', 'forked', ...flags, '--', 'sh', '-c', script]);
    try {
      await waitFor(app.out, /^all$/m);
      const kids = [...app.out().matchAll(/^kid (\d+)$/gm)].map((m) => Number(m[1]));
      expect(kids).toHaveLength(30);
      expectRowsStartedAsKernelSays(home, kids);
    } finally {
      for (const p of JSON.parse(appshot(home, ['ps', '--aid', 'forked', '--json']).stdout)) process.kill(p.spid, 'SIGKILL');
      app.child.kill('SIGTERM');
      await app.done;
    }
  });
});

/** The kernel PID of the application's process whose vpid is vpid (its row). */
function systemOf(home: string, vpid: number): number {
  const row = tablesJson(home, ['--type', 'pid']).find((r) => r.virtual === vpid);
  expect(row, `a row for vpid ${vpid}`).toBeDefined();
  return row!.system;
}

/** Whether process spid has the tables mapped (a shim that opened them). */
function mapsTables(spid: number): boolean {
  return readFileSync(`/proc/${spid}/maps`, 'latin1').includes(`/${S.TABLES_FILE}`);
}

describe.each(MODES)('a program started by a process of the application, %s', (_mode, flags) => {
  it("leaves its tables for their first use: its starter gives it its vpid and its parent's, through posix_spawn and through a fork's exec", async () => {
    const home = makeHome();
    // A child of posix_spawn, then (when the test says) one that a shell
    // forks and execs: each says its pid and ppid and sleeps, using the
    // tables for nothing.
    const script = [
      'import os, subprocess, sys, time',
      `kid = os.posix_spawn('${PIDTOOL}', ['pidtool', 'pid', 'ppid', 'sleep', '100000'], os.environ)`,
      // One write: print's pieces may go out one by one, the child's line between them.
      'os.write(1, f"spawned {kid} parent {os.getpid()}\\n".encode())',
      'sys.stdin.readline()',
      `subprocess.Popen(['sh', '-c', 'echo "shell $$"; exec ${PIDTOOL} pid ppid sleep 100000'])`,
      'time.sleep(100000)',
    ].join('\n');
    const app = appshotAsync(home, ['run', '--aid', 'started', ...flags, '--', 'python3', '-c', script], undefined, { stdin: true });
    // Each process writes its lines itself: they may come between
    // another's, so each is looked for on its own.
    const lines = () => app.out().split('\n');
    const [, kid, parent] = (await waitFor(app.out, /^spawned (\d+) parent (\d+)$/m)).map(Number);
    await waitFor(app.out, /^ppid \d+$/m);
    expect(lines()).toEqual(expect.arrayContaining([`pid ${kid}`, `ppid ${parent}`]));
    app.child.stdin!.write('go\n');
    const [, shell] = (await waitFor(app.out, /^shell (\d+)$/m)).map(Number);
    // The exec keeps the shell's vpid, and its parent is python, as the
    // spawned child's is.
    await waitFor(app.out, new RegExp(`^pid ${shell}$`, 'm'));
    await waitFor(app.out, new RegExp(`^ppid ${parent}$[^]*^ppid ${parent}$`, 'm'));
    for (const vpid of [kid, shell]) expect(mapsTables(systemOf(home, vpid)), `vpid ${vpid} opened the tables`).toBe(false);
    for (const p of JSON.parse(appshot(home, ['ps', '--aid', 'started', '--json']).stdout)) process.kill(p.spid, 'SIGKILL');
    await app.done;
  });

  it('whose starter was killed before it wrote its row: the program writes the row itself at its first use of the tables', async () => {
    const home = makeHome();
    // The fault stops python right after posix_spawn returns, before its
    // commit of the child's row, and the test kills it once the child has
    // started (its start took the entry: its parent was python still). The
    // child's first use of the tables (a PID no process has, which only
    // they can tell) finds no row of its own and writes it, under the vpid
    // it had.
    const script = [
      'import os',
      'os.write(1, f"python {os.getpid()}\\n".encode())',
      `os.posix_spawn('${PIDTOOL}', ['pidtool', 'pid', 'sleep', '1000', 'kill', '99999', '0', 'pid', 'sleep', '100000'], os.environ)`,
    ].join('\n');
    const app = appshotAsync(home, ['run', '--aid', 'orphaned', ...flags, '--', 'python3', '-c', script], { APPSHOT_FAULT: 'after-spawn' });
    const [, python] = (await waitFor(app.out, /^python (\d+)$/m)).map(Number);
    const [, first] = (await waitFor(app.out, /^pid (\d+)$/m)).map(Number);
    process.kill(systemOf(home, python), 'SIGKILL');
    expect(tablesJson(home, ['--type', 'pid']).find((r) => r.virtual === first), 'no row before its first use').toBeUndefined();
    const [, second] = (await waitFor(app.out, /^err ESRCH\npid (\d+)$/m)).map(Number);
    expect(second).toBe(first);
    const spid = systemOf(home, first);
    expect(readFileSync(`/proc/${spid}/cmdline`, 'latin1').split('\0')[0]).toBe('pidtool');
    expect(mapsTables(spid)).toBe(true);
    process.kill(spid, 'SIGKILL');
    app.child.kill('SIGTERM');
    await app.done;
  });
});
