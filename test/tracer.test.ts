import { describe, expect, it } from 'vitest';
import { appshot, makeHome, MODES, tablesJson } from './helpers.js';

// A tracer under the shim (strace -f) of a program that forks a lot: the
// tracees stop at every system call, one inside its tables write, and the
// tracer's own wait wrapper must not wait for that write (pid.c, "A tracer's
// reaps"). Under timeout -s KILL, within the harness call's own 50 s, so a
// deadlock fails the test (exit 137) instead of hanging it.
const SCRIPT = 'for i in $(seq 1 40); do (/bin/true &) ; done; wait; echo done';

describe.each(MODES)('a tracer under the shim, %s', (_mode, flags) => {
  it('strace -f of a shell forking 40 background children ends, prints done, and leaves no rows', () => {
    const home = makeHome();
    const r = appshot(home, ['run', ...flags, '--aid', 'traced', '--', 'timeout', '-s', 'KILL', '40', 'strace', '-f', '-o', '/dev/null', 'sh', '-c', SCRIPT]);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stdout.trim()).toBe('done');
    expect(tablesJson(home, ['--aid', 'traced'])).toEqual([]);
  });
});
