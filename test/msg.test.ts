import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MSGTOOL, appshot, appshotAsync, lines, makeHome, runNative, waitFor } from './helpers.js';

const run = (home: string, args: string[], opts: string[] = []) => appshot(home, ['run', ...opts, '--', MSGTOOL, ...args]);

/** IDs and waiting times differ from run to run; everything else must not. */
const normalize = (out: string) => out.replace(/^id \d+$/gm, 'id N').replace(/^waited (\d+) ms/gm, (_m, ms) => `waited ${Number(ms) >= 250 ? '>=250' : '<250'} ms`);

describe('message queues under the shim', () => {
  it('gives the same results and errno as the kernel, natively and under the shim', () => {
    const script = [
      'get', '0x5eed11', 'c',
      'get', '0x5eed11', 'cx', // EEXIST
      'get', '0x5eed12', '-', // ENOENT
      'send', '3', 'three', '-', 'send', '1', 'one', '-', 'send', '2', 'two', '-', 'send', '5', 'five', '-',
      'recv', '0', '100', 'n', // the first: three
      'recv', '-2', '100', 'n', // the lowest type up to 2: one
      'recv', '5', '100', 'ne', // the first not of type 5: two
      'recv', '9', '100', 'n', // ENOMSG
      'recv', '5', '2', 'n', // E2BIG
      'recv', '5', '2', 'nt', // MSG_NOERROR truncates: fi
      'stat',
      'setqbytes', '100', 'stat',
      'sendsize', '1', '200', 'n', // EAGAIN: larger than the queue allows (without IPC_NOWAIT it waits: next test)
      'sendsize', '1', '9000', 'n', // EINVAL: larger than msgmax
      'sendsize', '1', '60', 'n', 'sendsize', '1', '60', 'n', // EAGAIN: the queue is full
      'stat', 'rmid', 'stat', 'send', '1', 'x', 'n', 'rmid',
      'use', '999999', 'send', '1', 'x', 'n', 'recv', '0', '10', 'n', 'stat',
    ];
    const native = runNative(script, MSGTOOL);
    const shim = run(makeHome(), script);
    expect(shim.stderr).toBe('');
    expect(normalize(shim.stdout)).toBe(normalize(native.stdout));
    expect(lines(native.stdout).filter((l) => l.startsWith('err'))).toHaveLength(13);
  });

  it('blocked msgrcv and msgsnd wake on a send or on IPC_RMID as natively', async () => {
    const script = [
      'private', 'bgrecv', '7', 'sleep', '300', 'send', '7', 'late', '-', 'waitall',
      'setqbytes', '100', 'bgsend', '1', '200', // larger than the queue allows: it waits
      'bgrecv', '8', 'sleep', '100', 'rmid', 'waitall',
    ];
    // Parent and children print in no set order.
    const sorted = (out: string) => lines(normalize(out)).sort();
    const native = runNative(script, MSGTOOL);
    const shim = run(makeHome(), script);
    expect(sorted(shim.stdout)).toEqual(sorted(native.stdout));
    expect(sorted(shim.stdout)).toEqual(['err EIDRM', 'err EIDRM', 'id N', 'ok 0', 'ok 0', 'ok 0', 'waited >=250 ms for msg 7 late']);
    expect(Number(shim.stdout.match(/waited (\d+)/)![1])).toBeGreaterThanOrEqual(250);
  });

  it('a blocked msgrcv sleeps in the kernel: no polling while it waits', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--', MSGTOOL, 'get', '0x5eed13', 'c', 'pid', 'recv', '1', '10', '-']);
    const pid = (await waitFor(app.out, /^pid (\d+)/m))[1];
    await waitFor(() => readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1][0], /S/);
    const syscall = readFileSync(`/proc/${pid}/syscall`, 'latin1').split(' ')[0];
    expect(syscall).toBe('70'); // msgrcv on x86_64
    const switches = () => Number(readFileSync(`/proc/${pid}/status`, 'latin1').match(/voluntary_ctxt_switches:\s+(\d+)/)![1]);
    const before = switches();
    await new Promise((r) => setTimeout(r, 300));
    expect(switches()).toBe(before);
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('MSG_INFO, IPC_INFO, MSG_STAT and MSG_STAT_ANY show only the application\'s own queues, virtually', async () => {
    const home = makeHome();
    const other = appshotAsync(home, ['run', '--aid', 'other', '--', MSGTOOL, 'get', '0x5eed14', 'c', 'send', '1', 'theirs', '-', 'pid', 'sleep', '100000']);
    await waitFor(other.out, /pid/);
    const r = run(home, ['get', '0x5eed15', 'c', 'send', '1', 'abc', '-', 'send', '2', 'de', '-', 'private', 'info', 'msginfo', 'statall', 'statidx', '1', 'statany', '0', 'statidx', '2'], ['--aid', 'me', '--no-identity']);
    const out = lines(r.stdout);
    const keyed = Number(out[0].split(' ')[1]);
    const priv = Number(out[3].split(' ')[1]);
    expect(out.slice(4)).toEqual([
      'maxidx 1', expect.stringMatching(/^msgmni \d+ msgmax \d+$/),
      'maxidx 1', 'queues 2 messages 2 bytes 5',
      `queue ${keyed} key 0x005eed15`, `queue ${priv} key 0x00000000`, 'end',
      `id ${priv}`, 'key 0x00000000',
      `id ${keyed}`, 'key 0x005eed15',
      'err EINVAL',
    ]);
    other.child.kill('SIGTERM');
    await other.done;
  });

  // The translation cache of a running process holds "no such queue" for an
  // ID; another process of the application then makes a queue under that ID
  // whose row is only in the journal (no LMDB commit): the cache must see the
  // journal's generation move, or the first process keeps saying EINVAL.
  // Remapped, where the next private ID is known (the application's shared
  // block of vrids, taken by the first private queue's LMDB write, before the
  // ID is asked). The other process is started first and waits, so that its
  // start's own table writes are done before the ID is asked.
  it('a queue another process makes after this one found no queue under that ID (journal only): the next call finds it', () => {
    const first = 268435456; // VRID_REMAP_BASE: the application's first private queue
    const second = String(first + 1);
    const maker = `${MSGTOOL} sleep 1200 private send 2 theirs n sleep 2500 >/dev/null &`;
    const r = run(makeHome(), [
      'private', 'system', maker, 'sleep', '400',
      'use', second, 'send', '1', 'early', 'n', // none yet: EINVAL, and the cache remembers it
      'sleep', '1800', // the other process has made it meanwhile
      'send', '1', 'mine', 'n', 'recv', '0', '64', 'n', 'recv', '0', '64', 'n', 'rmid',
      'use', String(first), 'rmid',
    ], ['--aid', 'gen', '--no-identity']);
    expect(r.stderr).toBe('');
    expect(lines(r.stdout)).toEqual([`id ${first}`, 'status 0', 'err EINVAL', 'ok 0', 'msg 2 theirs', 'msg 1 mine', 'ok 0', 'ok 0']);
  });
});
