import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { PRODCONS, SHMTOOL, appshot, appshotAsync, lines, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

const run = (home: string, args: string[], opts: string[] = []) => appshot(home, ['run', ...opts, '--', SHMTOOL, ...args]);

/** IDs and PIDs differ from run to run; everything else must not. */
const normalize = (out: string) =>
  out
    .replace(/^id \d+$/gm, 'id N')
    .replace(/cpid \d+ lpid \d+/g, 'cpid P lpid P');

const shmRows = (home: string, aid: string) => tablesJson(home, ['--aid', aid, '--type', 'shm']);

describe('shared memory under the shim', () => {
  it('gives the same results and errno as the kernel, natively and under the shim', () => {
    const script = [
      'get', '0x5eed01', '8192', 'c',
      'get', '0x5eed01', '8192', 'cx', // EEXIST
      'get', '0x5eed01', '65536', '-', // EINVAL: larger than the segment
      'get', '0x5eed02', '4096', '-', // ENOENT
      'get', '0x5eed01', '100', '-', // a smaller size finds it
      'attach', '-', 'write', 'hello', 'read',
      'attach', 'r', 'read', // a second, read-only attachment
      'attachat', 'last', '-', // EINVAL: that address is mapped
      'attachat', 'last', 'm', 'read', // SHM_REMAP replaces the mapping
      'attachat', 'last+100', 'm', // EINVAL: not aligned
      'attachat', 'last+100', 'nm', 'read', // SHM_RND rounds down
      'stat', 'setmode', '0640', 'stat', 'lock', 'unlock',
      'detachat', '0x1000', // EINVAL: nothing attached there
      'detach', 'detach', // the second is EINVAL
      'rmid', 'stat', 'rmid', // EINVAL once gone
      'use', '999999', 'attach', '-', 'stat', 'rmid', // EINVAL for an ID that does not exist
      'private', '4096', 'attach', '-', 'rmid', 'stat', 'read', 'detach', 'stat',
    ];
    const native = runNative(script, SHMTOOL);
    const shim = run(makeHome(), script);
    expect(shim.stderr).toBe('');
    expect(normalize(shim.stdout)).toBe(normalize(native.stdout));
    expect(native.stdout).toContain('err EINVAL'); // the script does reach the error cases
    expect(lines(native.stdout).filter((l) => l.startsWith('err'))).toHaveLength(11);
  });

  it('a read-only attachment faults on a write, as natively', () => {
    const script = ['private', '4096', 'attach', 'r', 'rmid', 'fork', 'write', 'x'];
    const native = runNative(script, SHMTOOL);
    const shim = run(makeHome(), script);
    expect(native.code).toBe(128 + 11);
    expect(shim.code).toBe(native.code);
  });

  it('a fork child inherits the attachments and the translations', () => {
    const r = run(makeHome(), ['private', '4096', 'attach', '-', 'write', 'from-parent', 'rmid', 'fork', 'read', 'stat', 'detach']);
    expect(lines(r.stdout).slice(-4)).toEqual([
      'data from-parent',
      'ok 0',
      expect.stringMatching(/^key 0x00000000 size 4096 nattch 2 mode 600 removed 1 /),
      'ok 0',
    ]);
  });

  it('IPC_RMID while attached: the segment lives on keyless until its last detach, and then its rows go', async () => {
    const home = makeHome();
    const go = join(home, 'go');
    const app = appshotAsync(home, ['run', '--aid', 'rm', '--', SHMTOOL, 'get', '0x5eed03', '4096', 'c', 'attach', '-', 'write', 'kept',
      'rmid', 'stat', 'get', '0x5eed03', '4096', '-', 'waitfile', go, 'read', 'detach', 'stat', 'pid', 'sleep', '100000']);
    await waitFor(app.out, /err ENOENT/);
    const [row] = shmRows(home, 'rm');
    expect(row.key).toBe(0);
    expect(kernelObjects('shm').get(row.system)).toMatchObject({ key: 0, nattch: 1 });
    // The key is free again in the kernel (ENOENT above); the application's key keeps its system key while it lives.
    expect(tablesJson(home, ['--aid', 'rm', '--type', 'shmkey'])).toEqual([expect.objectContaining({ virtual: 0x5eed03 })]);
    writeFileSync(go, '');
    await waitFor(app.out, /^pid \d+/m);
    expect(lines(app.out()).slice(-4, -1)).toEqual(['data kept', 'ok 0', 'err EINVAL']);
    expect(shmRows(home, 'rm')).toEqual([]);
    expect(kernelObjects('shm').has(row.system)).toBe(false);
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('an unknown virtual ID, or another application\'s, is EINVAL for shmat even when it is a live system ID', async () => {
    const home = makeHome();
    const other = appshotAsync(home, ['run', '--aid', 'other', '--', SHMTOOL, 'private', '4096', 'pid', 'sleep', '100000']);
    const id = (await waitFor(other.out, /id (\d+)/))[1];
    await waitFor(other.out, /pid/);
    const r = run(home, ['use', id, 'attach', '-', 'stat', 'detachat', '0x1000']);
    expect(lines(r.stdout)).toEqual(['err EINVAL', 'err EINVAL', 'err EINVAL']);
    expect(runNative(['use', id, 'attach', '-', 'detach'], SHMTOOL).stdout).toBe('attached ok\nok 0\n'); // natively it is a real segment
    other.child.kill('SIGTERM');
    await other.done;
  });

  it('IPC_INFO, SHM_INFO, SHM_STAT and SHM_STAT_ANY show only the application\'s own segments, virtually', async () => {
    const home = makeHome();
    const other = appshotAsync(home, ['run', '--aid', 'other', '--', SHMTOOL, 'get', '0x5eed04', '4096', 'c', 'private', '4096', 'pid', 'sleep', '100000']);
    await waitFor(other.out, /pid/);
    const r = run(home, ['get', '0x5eed05', '4096', 'c', 'private', '10000', 'attach', '-', 'info', 'shminfo', 'statall', 'statidx', '1', 'statany', '0', 'statidx', '2'], ['--aid', 'me', '--no-identity']);
    const out = lines(r.stdout);
    const [keyed, priv] = [out[0], out[1]].map((l) => Number(l.split(' ')[1]));
    expect(out.slice(3)).toEqual([
      'maxidx 1', expect.stringMatching(/^shmmni \d+$/),
      'maxidx 1', 'used_ids 2 shm_tot 4 shm_rss 0',
      `segment ${keyed} key 0x005eed05`, `segment ${priv} key 0x00000000`, 'end',
      `id ${priv}`, 'key 0x00000000 size 10000',
      `id ${keyed}`, 'key 0x005eed05 size 4096',
      'err EINVAL',
    ]);
    other.child.kill('SIGTERM');
    await other.done;
  });

  it('forced remapping: a native segment holds the key and vrid never equals srid, yet every call reaches the right segment', () => {
    const home = makeHome();
    const holder = runNative(['get', '0x5eed06', '4096', 'c', 'attach', '-', 'write', 'native'], SHMTOOL);
    const holderId = Number(lines(holder.stdout)[0].split(' ')[1]);
    try {
      const r = run(home, ['get', '0x5eed06', '4096', 'c', 'attach', '-', 'read', 'write', 'virtual', 'read', 'stat'], ['--aid', 'remap', '--no-identity', '--keep']);
      const out = lines(r.stdout);
      expect(out.slice(1)).toEqual(['attached ok', 'data ', 'ok 0', 'data virtual', 'ok 0', expect.stringMatching(/^key 0x005eed06 size 4096 nattch 1 /)]);
      const [row] = shmRows(home, 'remap');
      const [key] = tablesJson(home, ['--aid', 'remap', '--type', 'shmkey']);
      expect(row.virtual).toBe(Number(out[0].split(' ')[1]));
      expect(row.virtual).not.toBe(row.system);
      expect(key.system).not.toBe(0x5eed06);
      expect(runNative(['use', String(holderId), 'attach', '-', 'read'], SHMTOOL).stdout).toContain('data native');
      expect(runNative(['use', String(row.system), 'attach', '-', 'read'], SHMTOOL).stdout).toContain('data virtual');
    } finally {
      runNative(['use', String(holderId), 'rmid'], SHMTOOL);
      appshot(home, ['gc', '--kept']);
    }
  });
});

describe('two copies of a program built for one, side by side', () => {
  it('producer and consumer pairs meeting at fixed key 0x5eed, as two applications at once, each see only their own data', async () => {
    const home = makeHome();
    const hold = join(home, 'hold');
    writeFileSync(hold, '');
    const a = appshotAsync(home, ['run', '--aid', 'pair-a', '--', PRODCONS, 'from-a', hold]);
    await waitFor(a.out, /consumer read/);
    const b = appshotAsync(home, ['run', '--aid', 'pair-b', '--no-identity', '--', PRODCONS, 'from-b', hold]);
    await waitFor(b.out, /consumer read/);
    expect(a.out()).toBe('consumer read from-a\n');
    expect(b.out()).toBe('consumer read from-b\n');
    // Both hold their own segment and queue under 0x5eed; the first has the real key.
    const keys = (aid: string) => tablesJson(home, ['--aid', aid, '--type', 'key']).map((r) => `${r.type} ${r.virtual} ${r.system}`);
    expect(keys('pair-a')).toEqual([`shmkey ${0x5eed} ${0x5eed}`, `msgkey ${0x5eed} ${0x5eed}`]);
    const bKeys = keys('pair-b');
    expect(bKeys.map((k) => k.split(' ').slice(0, 2).join(' '))).toEqual([`shmkey ${0x5eed}`, `msgkey ${0x5eed}`]);
    for (const k of bKeys) expect(Number(k.split(' ')[2])).not.toBe(0x5eed);
    const segments = ['pair-a', 'pair-b'].map((aid) => shmRows(home, aid)[0]);
    expect(segments[0].system).not.toBe(segments[1].system);
    expect(segments[1].virtual).not.toBe(segments[1].system);
    rmSync(hold);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect([ra.code, rb.code]).toEqual([0, 0]);
    for (const s of segments) expect(kernelObjects('shm').has(s.system)).toBe(false);
  });
});
