// The shim's start in a new program (issue 21): what it leaves for later
// must still happen. A program started through the application's
// descriptors (every program after the first) no longer walks LMDB's
// reader slots; a process's first write clears the slots of dead ones.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SHIM_PATH } from '../ts/paths.js';
import * as S from '../tables/schema.js';
import { MODES, PIDTOOL, appshot, appshotAsync, makeHome, stopAll, testRoot, waitFor } from './helpers.js';

afterEach(stopAll);

/** The kernel PIDs LMDB's lock file holds reader slots for (native/core/lockcheck.c has the layout). */
function readerPids(home: string): number[] {
  const b = readFileSync(join(home, `${S.TABLES_FILE}-lock`));
  return Array.from({ length: b.readUInt32LE(16) }, (_, i) => b.readUInt32LE(208 + i * 64 + 8)).filter((pid) => pid !== 0);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

describe.each(MODES)('the shim at a program\'s start, %s', (_mode, flags) => {
  it("a process's first write clears the reader slots of processes that died, killed or not (no program's start does it any more)", async () => {
    const home = makeHome();
    const dir = mkdtempSync(join(testRoot(), 'start-'));
    expect(spawnSync('mkfifo', [join(dir, 'go')]).status).toBe(0);
    const script = [
      // A program that reads the tables (a PID no process has, which only
      // they can tell), and so takes a reader slot.
      `${PIDTOOL} kill 99999 0 sleep 100000 > ${dir}/k.out & k=$!`,
      `until [ -s ${dir}/k.out ]; do sleep 0.05; done`,
      // From here until the test has looked, no process starts (a fork
      // child may write, and so clear the slots): the shell waits in its
      // own read on a pipe.
      'kill -9 $k; wait $k; echo killed',
      `read go < ${dir}/go`,
      // Its fork child's row is its first write.
      `${PIDTOOL} child 0 > /dev/null; echo wrote`,
      'exec sleep 100000',
    ].join('\n');
    const app = appshotAsync(home, ['run', ...flags, '--', 'sh', '-c', script]);
    await waitFor(app.out, /killed/);
    const dead = readerPids(home).filter((pid) => !alive(pid));
    // The killed program's slot at least: programs end without giving theirs back.
    expect(dead.length).toBeGreaterThan(0);
    writeFileSync(join(dir, 'go'), 'go\n');
    await waitFor(app.out, /wrote/);
    expect(readerPids(home).filter((pid) => dead.includes(pid))).toEqual([]);
    app.child.kill('SIGTERM');
    // The shell says "Killed" of its job; the shim says nothing.
    expect((await app.done).stderr).not.toMatch(/appshot:/);
  });
});

// The shim maps the pages of its own variables that a start writes in one
// call (process.c, map_own_pages), from appshot_start_bss to the end of its
// memory: the large arrays no start writes must lie below that, or every
// program would map (and keep) them too. shim/cold.ld puts them there.
/** The shim's symbols by name, with their addresses and sizes (nm -S). */
function shimSymbols(): Map<string, { at: number; size: number }> {
  const nm = spawnSync('nm', ['-S', SHIM_PATH], { encoding: 'utf8' });
  expect(nm.status, nm.stderr).toBe(0);
  const symbols = new Map<string, { at: number; size: number }>();
  for (const line of nm.stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length === 4) symbols.set(f[3], { at: parseInt(f[0], 16), size: parseInt(f[1], 16) });
    else if (f.length === 3) symbols.set(f[2], { at: parseInt(f[0], 16), size: 0 });
  }
  return symbols;
}

describe("the shim's variables", () => {
  it('the large arrays a start does not write lie below appshot_start_bss, and what lies above is at most 64 KiB', () => {
    const symbols = shimSymbols();
    const start = symbols.get('appshot_start_bss')?.at;
    expect(start).toBeGreaterThan(0);
    for (const cold of ['threads', 'ranges', 'memory_prog', 'stale_env_home', 'stale_env_aid', 'restored_home', 'restored_aid']) {
      const s = symbols.get(cold);
      expect(s, cold).toBeDefined();
      expect(s!.at + s!.size, cold).toBeLessThanOrEqual(start!);
    }
    // Everything else the shim keeps in memory, its start's variables.
    const end = Math.max(...[...symbols.values()].filter((s) => s.at >= start!).map((s) => s.at + s.size));
    expect(end - start!).toBeLessThanOrEqual(64 * 1024);
  });
});

// A fork child maps again each page of the shim's text it runs (the kernel
// does not copy a library's text mappings) and copies each page of its data
// it writes: a page fault each, 10-14 us in a VM. What it runs before fork
// returns lies in one place (core/afterfork.h), what it writes on one page.
describe('what a fork child runs and writes before fork returns', () => {
  it('the code lies within 4 KiB, the variables on one page', () => {
    const symbols = shimSymbols();
    const code = ['fork', 'after_fork_child', 'pid_after_fork_child', 'translate_after_fork_child', 'tabledb_after_fork_child',
      'path_after_fork_child', 'tabledb_close_lock', 'appshot_fd_unguard'].map((name) => {
      const s = symbols.get(name);
      expect(s, name).toBeDefined();
      return s!;
    });
    const from = Math.min(...code.map((s) => s.at));
    expect(Math.max(...code.map((s) => s.at + s.size)) - from).toBeLessThanOrEqual(4096);
    const page = (name: string) => {
      const s = symbols.get(name);
      expect(s, name).toBeDefined();
      return Math.floor(s!.at / 4096);
    };
    for (const name of ['shim_pid', 'self_vpid', 'next_child_vpid', 'known', 'env_inherited']) expect(page(name), name).toBe(page('child_resetting'));
  });
});

describe.each(MODES)('the environment a program starts with, %s', (_mode, flags) => {
  it('a port range that is not LO-HI (1 <= LO <= HI <= 65535, digits only) stops the program at its start naming it; a good one runs', () => {
    const bad = ['20000', '20000-', '-5', '1-2x', ' 1-2', '+1-2', '0-5', '5-4', '1-65536', '99999999999999999999-1'];
    const good = ['1-65535', '20000-20000'];
    const script = [...bad, ...good].map((r) => `APPSHOT_PORT_RANGE='${r}' /bin/true; echo "'${r}' $?"`).join('\n');
    const r = appshot(makeHome(), ['run', ...flags, '--', 'sh', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([...bad.map((b) => `'${b}' 125`), ...good.map((g) => `'${g}' 0`)]);
    for (const b of bad) expect(r.stderr).toContain(`APPSHOT_PORT_RANGE is '${b}', not LO-HI`);
  });
});
