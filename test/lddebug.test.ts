import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { appshot, lines, makeHome, MODES, runNative } from './helpers.js';

// The loader's own debug output under the shim's trap. ld.so prefixes each
// LD_DEBUG line with its getpid, a call the trap translates (it is code
// mapped at start), and it prints while it binds a symbol lazily, the
// shim's too: the SIGSYS handler must answer it without the loader, or the
// binding recurses until the stack runs out (trap.c's top comment).
const RAWTOOL = builtProgram('rawtool');
const SCRIPT = 'echo $$; /bin/echo hi';

/** The symbols the loader binds (bindings) or looks up (symbols) for a
 * program, by its lines (every lookup's scope starts with the program). */
function loaderSymbols(stderr: string, what: string, program: string): Set<string> {
  const re = new RegExp(
    what === 'bindings' ? `binding file ${program} \\[0\\] to .*: normal symbol \`([^']+)'` : `symbol=([^;]+);  lookup in file=${program} \\[0\\]`,
  );
  return new Set(lines(stderr).flatMap((l) => l.match(re)?.[1] ?? []));
}

describe.each(MODES)('LD_DEBUG under the trap, %s', (mode, flags) => {
  describe.each(['bindings', 'symbols'])('LD_DEBUG=%s', (what) => {
    it("a shell and the program it forks and execs run, print as natively, and the loader's lines after the shim's start carry the PID the shell sees", () => {
      const native = runNative([`LD_DEBUG=${what}`, 'sh', '-c', SCRIPT], '/usr/bin/env');
      expect(native.code).toBe(0);
      const r = appshot(makeHome(), ['run', ...flags, '--', 'env', `LD_DEBUG=${what}`, 'sh', '-c', SCRIPT]);
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      const [pid, hi] = lines(r.stdout);
      expect(hi).toBe('hi');
      if (mode === 'remapped') expect(Number(pid)).toBeGreaterThanOrEqual(0x10000000);
      // ld.so's getpid from inside the shell, translated like the shell's own.
      expect(lines(r.stderr).filter((l) => l.trimStart().startsWith(`${pid}:`)).length).toBeGreaterThan(10);
      // Every symbol echo binds or looks up natively, it does under the shim.
      const under = loaderSymbols(r.stderr, what, '/bin/echo');
      const want = [...loaderSymbols(native.stderr, what, '/bin/echo')];
      expect(want.length).toBeGreaterThan(5);
      expect(want.filter((s) => !under.has(s))).toEqual([]);
    });

    it('children of a fork through libc, of a raw fork and of a raw clone (no atfork handler) see their own PIDs, as natively', () => {
      // The raw clone first: its child records itself (remapped) in the write its
      // parent has not bound yet, whose bindings call getpid.
      const args = ['rawclone', 'rawfork', 'kill'];
      const native = runNative(args, RAWTOOL);
      expect(native.stdout).toContain('rawchild getpid equals raw');
      // Under timeout, whose signal goes to its whole group: a child that
      // waits for its own lock (as it did) would keep the run's output open.
      const r = appshot(makeHome(), ['run', ...flags, '--', 'timeout', '-s', 'KILL', '30', 'env', `LD_DEBUG=${what}`, RAWTOOL, ...args]);
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      expect(r.stdout).toBe(native.stdout);
      expect(r.stderr).toMatch(what === 'bindings' ? /binding file .*rawtool \[0\] to / : /symbol=\w+;  lookup in file=/);
    });
  });
});
