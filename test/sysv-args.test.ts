import { describe, expect, it } from 'vitest';
import { MSGTOOL, SEMTOOL, SHMTOOL, appshotAsync, lines, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

/**
 * Bad arguments get the kernel's answer (issue 16, section 4), for the
 * three SysV families: each script runs natively, under appshot (identity)
 * and under appshot --no-identity (remapped), at once, and what the program
 * prints is compared line by line. Only what differs by nature is
 * normalized: the IDs themselves, the PIDs, the highest index and the
 * totals of *_INFO (natively they count the whole host).
 */

type Mode = 'native' | 'identity' | 'remapped';
const MODES: Mode[] = ['native', 'identity', 'remapped'];

/** Keys of this run's own, so two runs at once never share one natively. */
const KEY = 0x5a000000 + (process.pid & 0xffff) * 16;

async function threeWays(program: string, script: string[]): Promise<Record<Mode, string[]>> {
  const under = async (opts: string[]) => {
    const r = await appshotAsync(makeHome(), ['run', ...opts, '--', program, ...script]).done;
    expect(r.stderr).toBe('');
    return lines(r.stdout);
  };
  const [identity, remapped] = await Promise.all([under([]), under(['--no-identity'])]);
  return { native: lines(runNative(script, program).stdout), identity, remapped };
}

function normalized(out: string[]): string[] {
  return out.map((l) =>
    l
      .replace(/^(id|maxidx) \d+$/, '$1 N')
      .replace(/cpid \d+ lpid \d+/, 'cpid P lpid P')
      .replace(/^(semusz|queues|used_ids) .*/, '$1 ...'),
  );
}

/** Every mode printed the same, once normalized; returns the lines. */
function same(out: Record<Mode, string[]>): string[] {
  for (const mode of MODES.slice(1)) expect(normalized(out[mode]), mode).toEqual(normalized(out.native));
  return normalized(out.native);
}

/** The IDs a native run got and may have left (it dropped privileges). */
function removeNative(out: string[], program: string) {
  for (const l of out) {
    const m = l.match(/^id (\d+)$/);
    if (m) runNative(['use', m[1], 'rmid'], program);
  }
}

/** Full ID and index to *_STAT and *_STAT_ANY, and the loop ipcs makes. */
const STAT = ['statcur', 'mine'];
const STAT_OK = ['stat cur', 'statany cur', 'stat index cur', 'statany index cur', 'found 2 of 2'];

describe('SysV calls with bad arguments get the kernel\'s answer, natively, in identity and in remapped mode', () => {
  it('semaphores: *_STAT by full ID and by index, bad pointers, IDs it has none of, nsems and semnum out of range', async () => {
    const gone = `${SEMTOOL} use $SEMID rmid`;
    const script = [
      'private', '2', 'get', String(KEY), '3', 'c', ...STAT, 'seminfo',
      'bad', 'stat', 'bad', 'set', 'bad', 'getall', 'bad', 'setall', 'bad', 'info', 'bad', 'seminfo',
      'bad', 'statidx', 'bad', 'statany', 'bad', 'op', 'bad', 'bigop', 'bad', 'zeroop', 'bad', 'timedop',
      'get', String(KEY), '-1', 'cx', 'get', String(KEY), '100000', 'cx', 'get', String(KEY), '2', 'cx', 'get', String(KEY), '4', '-',
      'get', String(KEY + 1), '-1', '-', 'get', String(KEY + 1), '1', '-', 'private', '0', 'private', '-1',
      'getval', '99', 'setval', '3', '1', 'getval', '-1', 'ncnt', '5',
      'rmid', 'rmid', 'getval', '0', 'statcur',
      // An ID it has none of: the kernel still checks the rest first.
      'bad', 'op', 'bad', 'bigop', 'bad', 'zeroop', 'bad', 'timedop', 'bad', 'set', 'bad', 'stat', 'bad', 'setall',
      'use', '-1', 'bad', 'op', 'bad', 'set', 'getval', '0', 'rmid', 'statcur',
      // An ID another process removed.
      'private', '1', 'system', gone, 'getval', '0', 'op', '0', '1', 'bad', 'op', 'rmid', 'rmmine',
    ];
    const out = await threeWays(SEMTOOL, script);
    const want = same(out);
    expect(want).toEqual([
      'id N', 'id N', ...STAT_OK, 'maxidx N', 'semusz ...',
      // bad stat set getall setall info seminfo statidx statany op; bigop zeroop timedop
      ...Array(9).fill('err EFAULT'), 'err E2BIG', 'err EINVAL', 'err EFAULT',
      // nsems out of range before EEXIST and ENOENT; IPC_CREAT|IPC_EXCL; more than the set has
      'err EINVAL', 'err EINVAL', 'err EEXIST', 'err EINVAL', 'err EINVAL', 'err ENOENT', 'err EINVAL', 'err EINVAL',
      // semnum out of range
      'err EINVAL', 'err EINVAL', 'err EINVAL', 'err EINVAL',
      // IPC_RMID twice, then the removed ID
      'ok 0', 'err EINVAL', 'err EINVAL', 'stat err EINVAL', 'statany err EINVAL', 'stat index err EINVAL', 'statany index err EINVAL',
      // an ID it has none of: the kernel checks the operations, the timeout and IPC_SET's buffer first
      'err EFAULT', 'err E2BIG', 'err EINVAL', 'err EFAULT', 'err EFAULT', 'err EINVAL', 'err EINVAL',
      // a negative ID: this kernel reads the operations first
      'err EFAULT', 'err EINVAL', 'err EINVAL', 'err EINVAL', 'stat err EINVAL', 'statany err EINVAL', 'stat index err EINVAL', 'statany index err EINVAL',
      // an ID another process removed
      'id N', 'ok 0', 'status 0', 'err EINVAL', 'err EINVAL', 'err EFAULT', 'err EINVAL', 'removed 1',
    ]);
    expect(out.remapped[7]).toBe('maxidx 1'); // the application's two sets are at indices 0 and 1
  });

  it('message queues: *_STAT by full ID and by index, bad pointers, IDs it has none of, sizes and types out of range', async () => {
    const script = [
      'private', 'get', String(KEY + 2), 'c', ...STAT, 'msginfo', 'send', '1', 'hello', 'n',
      'bad', 'stat', 'bad', 'set', 'bad', 'info', 'bad', 'msginfo', 'bad', 'statidx', 'bad', 'statany',
      'bad', 'send', 'bad', 'bigsend', 'bad', 'badtype', 'bad', 'recv', 'recv', '0', '64', 'n',
      'get', String(KEY + 2), 'cx', 'get', String(KEY + 3), '-',
      'sendsize', '1', '100000', 'n', 'sendsize', '0', '3', 'n', 'sendsize', '-1', '3', 'n',
      'send', '1', 'hello', 'n', 'recv', '0', '2', 'n', 'recv', '7', '64', 'n', 'recv', '0', '-1', 'n', 'recv', '0', '64', 'n',
      'rmid', 'rmid', 'statcur',
      'bad', 'send', 'bad', 'bigsend', 'bad', 'badtype', 'bad', 'recv', 'bad', 'set', 'bad', 'stat',
      'use', '-1', 'bad', 'send', 'bad', 'set', 'rmid',
      'private', 'system', `${MSGTOOL} use $ID rmid`, 'send', '1', 'x', 'n', 'recv', '0', '8', 'n', 'bad', 'send', 'rmid', 'rmmine',
      // removed while a receiver waits: the receiver's EIDRM (its line and the remover's in either order)
      'private', 'bgrecv', '1', 'sleep', '200', 'rmid', 'waitall',
    ];
    const out = await threeWays(MSGTOOL, script);
    for (const mode of MODES) out[mode].push(...out[mode].splice(-2).sort());
    const want = same(out);
    expect(want).toEqual([
      'id N', 'id N', ...STAT_OK, 'maxidx N', 'queues ...', 'ok 0',
      // bad stat set info msginfo statidx statany send bigsend; a type of 0; recv (the message is lost, as natively)
      ...Array(8).fill('err EFAULT'), 'err EINVAL', 'err EFAULT', 'err ENOMSG',
      'err EEXIST', 'err ENOENT',
      // more than MSGMAX, type 0, type -1; too small a buffer, no such type, a negative size
      'err EINVAL', 'err EINVAL', 'err EINVAL', 'ok 0', 'err E2BIG', 'err ENOMSG', 'err EINVAL', 'msg 1 hello',
      // IPC_RMID twice, then the removed ID: msgsnd reads the message first
      'ok 0', 'err EINVAL', 'stat err EINVAL', 'statany err EINVAL', 'stat index err EINVAL', 'statany index err EINVAL',
      'err EFAULT', 'err EFAULT', 'err EINVAL', 'err EINVAL', 'err EFAULT', 'err EINVAL',
      // a negative ID: msgsnd reads the message's type first
      'err EFAULT', 'err EINVAL', 'err EINVAL',
      // an ID another process removed
      'id N', 'ok 0', 'status 0', 'err EINVAL', 'err EINVAL', 'err EFAULT', 'err EINVAL', 'removed 1',
      'id N', 'err EIDRM', 'ok 0',
    ]);
    expect(out.remapped[7]).toBe('maxidx 1');
  });

  it('shared memory: *_STAT by full ID and by index, bad pointers, IDs it has none of, sizes against an existing key', async () => {
    const script = [
      'private', '4096', 'get', String(KEY + 4), '8192', 'c', ...STAT, 'shminfo',
      'bad', 'stat', 'bad', 'set', 'bad', 'info', 'bad', 'shminfo', 'bad', 'statidx', 'bad', 'statany', 'bad', 'detach',
      'get', String(KEY + 4), '16384', '-', 'get', String(KEY + 4), '16384', 'cx', 'get', String(KEY + 4), '100', '-',
      'get', String(KEY + 5), '100', '-', 'private', '0',
      'attach', '-', 'detach', 'detach', 'rmid', 'rmid', 'attach', '-', 'statcur', 'bad', 'set', 'bad', 'stat',
      'use', '-1', 'bad', 'set', 'attach', '-', 'rmid',
      'private', '4096', 'attach', '-', 'system', `${SHMTOOL} use $ID rmid`, 'stat', 'attach', '-', 'detach', 'stat', 'rmid',
      'private', '100', 'system', `${SHMTOOL} use $ID rmid`, 'attach', '-', 'bad', 'set', 'rmmine',
    ];
    const out = await threeWays(SHMTOOL, script);
    const want = same(out);
    expect(want).toEqual([
      'id N', 'id N', ...STAT_OK, 'maxidx N', 'used_ids ...',
      // bad stat set info shminfo statidx statany; shmdt where nothing is attached
      ...Array(6).fill('err EFAULT'), 'err EINVAL',
      // larger than the segment; IPC_CREAT|IPC_EXCL first; smaller is fine; no such key; size 0
      'err EINVAL', 'err EEXIST', 'id N', 'err ENOENT', 'err EINVAL',
      // shmdt twice, IPC_RMID twice, then the removed ID
      'attached ok', 'ok 0', 'err EINVAL', 'ok 0', 'err EINVAL', 'err EINVAL',
      'stat err EINVAL', 'statany err EINVAL', 'stat index err EINVAL', 'statany index err EINVAL', 'err EFAULT', 'err EINVAL',
      // a negative ID
      'err EINVAL', 'err EINVAL', 'err EINVAL',
      // removed by another process while attached: it lives on until the last detach
      'id N', 'attached ok', 'ok 0', 'status 0',
      'ok 0', 'key 0x00000000 size 4096 nattch 1 mode 600 removed 1 cpid P lpid P', 'attached ok', 'ok 0',
      'ok 0', 'key 0x00000000 size 4096 nattch 1 mode 600 removed 1 cpid P lpid P', 'ok 0',
      // removed by another process, not attached
      'id N', 'ok 0', 'status 0', 'err EINVAL', 'err EFAULT', 'removed 1',
    ]);
    expect(out.remapped[7]).toBe('maxidx 1');
  });

  it('*_INFO totals count the objects a caller may not read, *_STAT needs read access and *_STAT_ANY does not', async () => {
    const scripts: [string, string[], string][] = [
      [SEMTOOL, ['private', '2', 'private', '3', 'setuid', '65534', 'seminfo', 'statcur', 'mine'], 'semusz 2 semaem 5'],
      [MSGTOOL, ['private', 'private', 'send', '1', 'abc', 'n', 'setuid', '65534', 'msginfo', 'statcur', 'mine'], 'queues 2 messages 1 bytes 3'],
      [SHMTOOL, ['private', '4096', 'private', '8192', 'setuid', '65534', 'shminfo', 'statcur', 'mine'], 'used_ids 2 shm_tot 3 shm_rss 0'],
    ];
    const outs = await Promise.all(scripts.map(([program, script]) => threeWays(program, script)));
    try {
      outs.forEach((out, i) => {
        const want = same(out);
        expect(want.slice(-5)).toEqual(['stat err EACCES', 'statany cur', 'stat index err EACCES', 'statany index cur', 'found 2 of 2']);
        for (const mode of ['identity', 'remapped'] as const) expect(out[mode], mode).toContain(scripts[i][2]);
      });
    } finally {
      outs.forEach((out, i) => removeNative(out.native, scripts[i][0]));
    }
  });

  it('an index or ID never reaches another application\'s objects: its system ID names only the caller\'s own, by its index bits', async () => {
    const home = makeHome();
    const other = appshotAsync(home, ['run', '--aid', 'other', '--', SEMTOOL, 'private', '1', 'pid', 'sleep', '100000']);
    await waitFor(other.out, /pid/);
    const [theirs] = tablesJson(home, ['--aid', 'other', '--type', 'sem']);
    for (const opts of [[], ['--no-identity']]) {
      const r = await appshotAsync(home, ['run', ...opts, '--', SEMTOOL, 'private', '1', 'statany', String(theirs.system), 'statidx', String(theirs.system)]).done;
      const out = lines(r.stdout);
      const mine = out[0];
      const sameIndex = (Number(mine.split(' ')[1]) & 0x7fff) === (theirs.system & 0x7fff);
      // Their set is never the answer; the caller's own is, when it has the same index bits.
      expect(out.slice(1), opts.join(' ')).toEqual(sameIndex ? [mine, 'key 0x00000000', mine, 'key 0x00000000'] : ['err EINVAL', 'err EINVAL']);
    }
    other.child.kill('SIGTERM');
    await other.done;
  });
});
