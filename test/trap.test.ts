import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { appshot, lines, makeHome, runNative } from './helpers.js';

// Calls that do not pass through the shim's wrappers (issue 16 §1): raw
// syscall(), inline `syscall` instructions, glibc's internal calls. The
// shim's seccomp filter traps them and its SIGSYS handler translates them;
// rawtool (native/testprogs/rawtool.c) makes them beside the libc path.
const RAWTOOL = builtProgram('rawtool');
const RAWTOOL_STATIC = builtProgram('rawtool-static');

/** A key no other run uses at the same time. */
const freshKey = () => 0x7a000000 + ((process.pid * 4099 + Math.floor(Math.random() * 0xfffff)) & 0xffffff);

describe.each([
  ['identity first', [] as string[]],
  ['remapped', ['--no-identity']],
])('raw system calls, %s', (mode, flags) => {
  const run = (args: string[], extra: string[] = []) => appshot(makeHome(), ['run', ...flags, ...extra, '--', RAWTOOL, ...args]);

  it('getpid, gettid, getppid, getpgrp: libc, syscall() and an inline syscall instruction agree', () => {
    const r = run(['pids']);
    expect(r.stderr).toBe('');
    expect(lines(r.stdout).slice(0, 4)).toEqual(['getpid same', 'gettid same', 'getppid same', 'getpgrp same']);
    const pid = Number(lines(r.stdout)[4].split(' ')[1]);
    if (flags.length) expect(pid).toBeGreaterThanOrEqual(0x10000000);
  });

  it('without the trap (--no-trap) a remapped process sees its kernel PID through syscall()', () => {
    const r = run(['pids'], ['--no-trap']);
    expect(lines(r.stdout)[0]).toBe(flags.length ? 'getpid differ' : 'getpid same');
  });

  it('raw semget/semctl/semtimedop, shmget/shmat/shmdt/shmctl, msgget/msgsnd/msgrcv/msgctl on virtual IDs, as natively', () => {
    const args = ['sem', String(freshKey()), 'shm', String(freshKey()), 'msg', String(freshKey())];
    const native = runNative(args, RAWTOOL);
    expect(native.stdout).toContain('getval raw 5 libc 5');
    const r = run(args);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(native.stdout);
  });

  it('a raw kill of a vpid reaches the process, a raw wait4 reaps it; a raw fork child sees its own vpid', () => {
    const native = runNative(['kill', 'rawfork'], RAWTOOL);
    expect(native.stdout).toBe('kill 0\nwait4 child status 143\nrawchild getpid equals raw, differs from parent\nwaitpid child\n');
    expect(run(['kill', 'rawfork']).stdout).toBe(native.stdout);
  });

  it('a raw semtimedop that must wait stays a blocking kernel call and wakes when posted', () => {
    const r = run(['semwait', String(freshKey())]);
    expect(r.stdout).toBe('woke 0 after the post\nchild status 0\n');
  });

  it('glibc paths that block signals or signal themselves behave as natively: raise, pthread_kill, pthread_sigqueue, pthread_cancel, system, posix_spawn with a new group, a thread with every signal blocked', () => {
    const args = ['raise', 'cancel', 'system', 'spawn', 'blockall'];
    const native = runNative(args, RAWTOOL);
    expect(native.stdout).toContain('join 0 canceled');
    const r = run(args);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(native.stdout);
  });

  it('abort and a failed assert die by SIGABRT, as natively', () => {
    for (const what of ['abort', 'assert']) {
      const native = runNative([what], RAWTOOL);
      expect(native.signal).toBe('SIGABRT');
      const r = run([what]);
      expect(r.code).toBe(128 + 6);
      expect(r.stderr).toBe(native.stderr);
    }
  });

  it('syslog with LOG_PID names the process by the pid getpid gives', () => {
    const r = run(['syslog']);
    const [pidLine, logLine] = lines(r.stderr);
    expect(logLine).toBe(`rawtool[${pidLine.split(' ')[1]}]: hello`);
  });

  it("the program's own SIGSYS handler (set through libc or by a raw rt_sigaction, as Go's runtime does) and its view of SIGSYS in its mask are its own", () => {
    const args = ['sigsys', 'mask', 'rawsigaction'];
    const native = runNative(args, RAWTOOL);
    expect(native.stdout).toBe(
      'shows own handler yes\ncaught 1\ngetpid same\nsigsys blocked 1\ngetpid same\nsigsys blocked 0\nerrno kept 1\n' +
        'raw rt_sigaction 0\nshows it raw yes libc yes\ngetpid same\ncaught 1\n',
    );
    expect(run(args).stdout).toBe(native.stdout);
  });

  it('stress-ng --fork and --sem-sysv (capget on its own pid, raw calls through libc) complete', () => {
    const home = makeHome();
    const r = appshot(home, ['run', ...flags, '--', 'stress-ng', '--temp-path', home, '--fork', '1', '--sem-sysv', '1', '-t', '1']);
    expect(r.stderr + r.stdout).not.toMatch(/ fail: /);
    expect(r.code, r.stderr + r.stdout).toBe(0);
  });

  it("a filter left by an ancestor's shim that traps this shim's own text (as ASLR may place it): the shim's calls complete from its stub page", () => {
    expect(runNative(['ancestor'], RAWTOOL).stdout).toBe('no shim\n');
    const r = run(['ancestor']);
    expect(r.stderr).toBe('');
    expect(lines(r.stdout)).toEqual(['kill 0', 'semget ok', 'setval 0 getval 3', 'rmid 0']);
  });

  it('a static program exec\'d inside the application (no shim, no SIGSYS handler) is not killed by the filter it inherits', () => {
    const args = ['pids', 'kill'];
    const native = runNative(args, RAWTOOL_STATIC);
    const r = appshot(makeHome(), ['run', ...flags, '--', 'sh', '-c', `exec ${RAWTOOL_STATIC} ${args.join(' ')}`]);
    expect(r.code).toBe(0);
    // Untranslated (no shim in it), so its own PID is the kernel's.
    expect(lines(r.stdout).slice(0, 4)).toEqual(lines(native.stdout).slice(0, 4));
    expect(lines(r.stdout).slice(5)).toEqual(lines(native.stdout).slice(5));
  });
});
