import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { PIDTOOL, appshot, appshotAsync, lines, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

const REMAP_BASE = 0x10000000;

/** pidtool's own output under appshot, its first line (its pid, which
 * differs between runs) checked and dropped, so the rest compares with a
 * native run line by line. */
function underAppshot(flags: string[], args: string[]): string[] {
  const r = appshot(makeHome(), ['run', '--aid', 'calls', ...flags, '--', PIDTOOL, 'pid', ...args]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const out = lines(r.stdout);
  const pid = Number(out[0].match(/^pid (\d+)$/)![1]);
  if (flags.includes('--no-identity')) expect(pid).toBeGreaterThanOrEqual(REMAP_BASE);
  else expect(pid).toBeLessThan(REMAP_BASE);
  return out.slice(1);
}

/** Every call appears in both runs with the same result: compared call by
 * call, so a difference names the call. */
function expectSameCalls(native: string[], shim: string[]) {
  expect(shim).toEqual(native);
}

describe.each([
  ['identity first', [] as string[]],
  ['remapped', ['--no-identity']],
])('every call that takes or gives a PID, %s', (_mode, flags) => {
  it('the path family on /proc/<pid>, capget/capset, get/setpriority, pidfd_*, process_vm_*, ptrace, F_GETLK, sigwaitinfo: the native results and errno', () => {
    const native = runNative(['calls'], PIDTOOL);
    expect(native.code, native.stderr).toBe(0);
    const want = lines(native.stdout);
    // The native run is what we think it is (so the comparison cannot pass
    // on two empty outputs): the calls reach the processes they name.
    expect(want).toEqual(expect.arrayContaining([
      'stat self self', 'access child 0', 'readlink child same exe', 'scandir self entries', 'stat gone ENOENT',
      'capget self 0', 'capget child header pid kept', 'capset self 0', 'capget gone err ESRCH', 'capget minus5 err EINVAL',
      'capget-version header 0x20080522 pid kept', 'capget-bad self err EFAULT',
      'getpriority child 100', 'setpriority gone err ESRCH', 'getpriority-pgrp self 100',
      'pidfd_open child 0', 'pidfd_send_signal child 0', 'pidfd_open minus5 err EINVAL', 'pidfd_send_signal-bad self err EFAULT',
      'process_vm_readv child read marker', 'process_vm_writev gone err ESRCH', 'clock_getcpuclockid child ok',
      'setown_ex-bad self err EFAULT', 'ptrace-stop child stopped', 'getlk holder child', 'sigwaitinfo 10 from sender', 'sigtimedwait 10 from self code -1',
      'task thread ok', 'task self-thread access 0', 'readlink self-link pid', 'realpath self /proc/<pid>', 'canonicalize self /proc/<pid>', 'readlink thread-self pid/task/tid', '__xstat thread 0', 'reaped child status 0',
    ]));
    expectSameCalls(want, underAppshot(flags, ['calls']));
  });

  it('the wait family: the kernel\'s errno (ESRCH for INT_MIN), status, rusage and siginfo written only when the kernel wrote them, EFAULT for bad pointers', () => {
    const native = runNative(['waits'], PIDTOOL);
    expect(native.code, native.stderr).toBe(0);
    const want = lines(native.stdout);
    expect(want).toEqual(expect.arrayContaining([
      'waitpid INT_MIN err ESRCH', 'wait4 INT_MIN err ESRCH', 'waitpid gone err ECHILD', 'waitpid -1 status kept',
      'waitpid running 0', 'waitpid running status kept', 'wait4 running status kept', 'waitid running si_pid 0',
      'waitid-badinfo exited err EFAULT', 'waitpid-badstatus exited err EFAULT', 'waitpid after err ECHILD',
    ]));
    expectSameCalls(want, underAppshot(flags, ['waits']));
  });

  it('a child reaped by a wait that could not write its status (EFAULT) leaves no row behind', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'waits', ...flags, '--', PIDTOOL, 'waits', 'sleep', '100000']);
    await waitFor(app.out, /^waitpid after err ECHILD$/m);
    const rows = tablesJson(home, ['--type', 'pid']);
    expect(rows.filter((row) => !existsSync(`/proc/${row.system}`))).toEqual([]);
    expect(rows).toHaveLength(1); // pidtool itself
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('stress-ng --fork runs its stressors (capget on its own vpid)', () => {
    const r = appshot(makeHome(), ['run', '--aid', 'stress', ...flags, '--', 'stress-ng', '--fork', '2', '-t', '2']);
    expect(r.stderr + r.stdout).not.toMatch(/fail|error/i);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/successful run completed/);
  });
});
