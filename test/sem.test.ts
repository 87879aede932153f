import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { SHIM_PATH } from '../ts/paths.js';
import { describe, expect, it } from 'vitest';
import {
  SEMTOOL,
  appshot,
  appshotAsync,
  kernelSems,
  lines,
  makeHome,
  runNative,
  tablesJson,
  waitFor,
} from './helpers.js';

const run = (home: string, args: string[], opts: string[] = []) => appshot(home, ['run', ...opts, '--', SEMTOOL, ...args]);

/** The system ID the tables map a virtual semaphore set to. */
function systemIdOf(home: string, aid: string, vrid: number): number {
  const row = tablesJson(home, ['--aid', aid, '--type', 'sem']).find((r) => r.virtual === vrid);
  if (!row) throw new Error(`no sem row for ${aid}:${vrid}`);
  return row.system;
}

describe('semaphores under the shim', () => {
  it('the program sees a virtual ID that the tables map to the kernel set with its key', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'a', '--', SEMTOOL, 'get', '0x5e1001', '3', 'c', 'setval', '1', '42', 'pid', 'sleep', '100000']);
    const vrid = Number((await waitFor(app.out, /id (\d+)/))[1]);
    await waitFor(app.out, /pid \d+/);
    const rows = tablesJson(home, ['--aid', 'a']);
    const sem = rows.find((r) => r.type === 'sem')!;
    const key = rows.find((r) => r.type === 'semkey')!;
    expect(sem.virtual).toBe(vrid);
    expect(sem.key).toBe(0x5e1001);
    expect(key).toMatchObject({ virtual: 0x5e1001, system: 0x5e1001 }); // first user of the key gets the real one
    const k = kernelSems().find((s) => s.semid === sem.system)!;
    expect(k).toMatchObject({ key: 0x5e1001, nsems: 3 });
    app.child.kill('SIGTERM');
    await app.done;
    expect(kernelSems().some((s) => s.semid === sem.system)).toBe(false);
  });

  it('two applications using key 0x1234 at once get different kernel sets and never touch each other', async () => {
    const home = makeHome();
    const a = appshotAsync(home, ['run', '--aid', 'one', '--', SEMTOOL, 'get', '0x1234', '1', 'c', 'setval', '0', '11', 'pid', 'sleep', '100000']);
    await waitFor(a.out, /pid/);
    const b = run(home, ['get', '0x1234', '1', 'c', 'getval', '0', 'setval', '0', '22', 'getval', '0', 'get', '0x1234', '1', 'cx', 'stat'], ['--aid', 'two', '--keep']);
    // The second application creates its own set: it starts at 0, not 11.
    expect(lines(b.stdout)).toEqual(['id ' + lines(b.stdout)[0].split(' ')[1], 'val 0', 'ok 0', 'val 22', 'err EEXIST', 'ok 0', 'key 0x00001234 nsems 1 mode 600']);
    const one = tablesJson(home, ['--aid', 'one']);
    const two = tablesJson(home, ['--aid', 'two']);
    const sysKey = (rows: typeof one) => rows.find((r) => r.type === 'semkey')!.system;
    const sysSem = (rows: typeof one) => rows.find((r) => r.type === 'sem')!.system;
    expect(sysKey(one)).toBe(0x1234);
    expect(sysKey(two)).not.toBe(0x1234);
    expect(sysSem(two)).not.toBe(sysSem(one));
    // A third application sees neither.
    const c = run(home, ['get', '0x1234', '1', '-'], ['--aid', 'third']);
    expect(c.stdout).toBe('err ENOENT\n');
    const first = appshot(home, ['run', '--aid', 'two', '--', SEMTOOL, 'get', '0x1234', '1', '-', 'getval', '0']);
    expect(lines(first.stdout)[1]).toBe('val 22'); // the kept application finds its own again
    a.child.kill('SIGTERM');
    await a.done;
    appshot(home, ['gc', '--kept']);
    expect(kernelSems().filter((s) => s.semid === sysSem(one) || s.semid === sysSem(two))).toEqual([]);
  });

  it('IPC_CREAT|IPC_EXCL on the application\'s own key is EEXIST; another application\'s use of it does not matter', async () => {
    const home = makeHome();
    const other = appshotAsync(home, ['run', '--', SEMTOOL, 'get', '0x5e1002', '1', 'c', 'pid', 'sleep', '100000']);
    await waitFor(other.out, /pid/);
    const r = run(home, ['get', '0x5e1002', '1', 'cx', 'get', '0x5e1002', '1', 'cx', 'get', '0x5e1002', '1', 'c', 'get', '0x5e1002', '1', '-']);
    const out = lines(r.stdout);
    expect(out[0]).toMatch(/^id \d+$/);
    expect(out.slice(1)).toEqual(['err EEXIST', out[0], out[0]]);
    other.child.kill('SIGTERM');
    await other.done;
  });

  it('a missing key without IPC_CREAT is ENOENT, as natively', () => {
    const args = ['get', '0x5e1003', '1', '-'];
    expect(run(makeHome(), args).stdout).toBe(runNative(args).stdout);
    expect(run(makeHome(), args).stdout).toBe('err ENOENT\n');
  });

  it('IPC_PRIVATE sets are distinct and work like keyed ones', () => {
    const r = run(makeHome(), ['private', '2', 'setval', '1', '5', 'private', '1', 'getval', '0', 'stat']);
    const out = lines(r.stdout);
    expect(out[0]).not.toBe(out[2]);
    expect(out).toEqual([out[0], 'ok 0', out[2], 'val 0', 'ok 0', 'key 0x00000000 nsems 1 mode 600']);
  });

  it('gives the same results and errno as the kernel, natively and under the shim', () => {
    const script = [
      'private', '2', 'setval', '0', '3', 'op', '0', '-1', 'getval', '0', 'setval', '9', '1', 'getval', '5',
      'timedop', '0', '-5', '10', 'setval', '0', '-1', 'setval', '0', '40000', 'getpid', '0', 'rmid', 'getval', '0', 'rmid',
      'use', '123456789', 'getval', '0', 'op', '0', '1', 'rmid', 'stat', 'use', '-1', 'getval', '0',
      'private', '3', 'setall', '1', '2', '3', 'getall', 'ncnt', '1', 'zcnt', '0', 'setmode', '0400', 'stat', 'setmode', '0600',
      'setall', '70000', 'getall', 'ncnt', '7', 'rmid', 'getall', 'setmode', '0600',
    ];
    const native = runNative(script);
    const shim = run(makeHome(), script);
    const norm = (s: string) => s.replace(/^(id|pid) \d+$/gm, '$1 N');
    expect(norm(shim.stdout)).toBe(norm(native.stdout));
    expect(shim.stdout).toContain('err EINVAL');
    expect(shim.stdout).toContain('err ERANGE');
    expect(shim.stdout).toContain('err EAGAIN');
  });

  it('an unknown virtual ID is EINVAL even when it is a live system ID of another application', async () => {
    const home = makeHome();
    const other = appshotAsync(home, ['run', '--aid', 'holder', '--', SEMTOOL, 'private', '1', 'setval', '0', '7', 'pid', 'sleep', '100000']);
    const vrid = Number((await waitFor(other.out, /id (\d+)/))[1]);
    await waitFor(other.out, /pid/);
    const srid = systemIdOf(home, 'holder', vrid);
    const r = run(home, ['use', String(srid), 'getval', '0', 'op', '0', '1', 'rmid'], ['--no-identity']);
    expect(lines(r.stdout)).toEqual(['err EINVAL', 'err EINVAL', 'err EINVAL']);
    expect(kernelSems().some((s) => s.semid === srid)).toBe(true);
    other.child.kill('SIGTERM');
    await other.done;
  });

  it('IPC_INFO, SEM_INFO and SEM_STAT show only the application\'s own sets, with virtual IDs and keys', async () => {
    const home = makeHome();
    const other = appshotAsync(home, ['run', '--', SEMTOOL, 'get', '0x5e1004', '4', 'c', 'private', '2', 'pid', 'sleep', '100000']);
    await waitFor(other.out, /pid/);
    const r = run(home, ['get', '0x5e1005', '3', 'c', 'private', '2', 'seminfo', 'info', 'statall', 'statidx', '2'], ['--no-identity']);
    const out = lines(r.stdout);
    const [keyed, priv] = [out[0], out[1]].map((l) => Number(l.split(' ')[1]));
    expect(out.slice(2, 4)).toEqual(['maxidx 1', 'semusz 2 semaem 5']);
    expect(out[4]).toBe('maxidx 1');
    const listed = out.slice(6, out.indexOf('end'));
    expect(listed.sort()).toEqual([`set ${keyed} key 0x005e1005`, `set ${priv} key 0x00000000`].sort());
    expect(out[out.length - 1]).toBe('err EINVAL');
    other.child.kill('SIGTERM');
    await other.done;
  });

  it('forced remapping (vrid never equals srid): every call still reaches the right kernel set', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'remapped', '--no-identity', '--', SEMTOOL,
      'get', '0x5e1006', '2', 'c', 'setval', '1', '17', 'getval', '1', 'stat', 'pid', 'sleep', '100000']);
    const vrid = Number((await waitFor(app.out, /id (\d+)/))[1]);
    await waitFor(app.out, /pid/);
    expect(lines(app.out()).slice(1, 5)).toEqual(['ok 0', 'val 17', 'ok 0', 'key 0x005e1006 nsems 2 mode 600']);
    const rows = tablesJson(home, ['--aid', 'remapped']);
    const sem = rows.find((r) => r.type === 'sem')!;
    const key = rows.find((r) => r.type === 'semkey')!;
    expect(sem.virtual).toBe(vrid);
    expect(sem.system).not.toBe(vrid);
    expect(key.system).not.toBe(0x5e1006);
    // The kernel set the tables name holds the value the program wrote.
    const k = kernelSems().find((s) => s.semid === sem.system)!;
    expect(k.key).toBe(key.system);
    const nativeRead = runNative(['use', String(sem.system), 'getval', '1']);
    expect(nativeRead.stdout).toBe('val 17\n');
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('a blocked semop is one blocking kernel call that wakes when another process of the application posts', async () => {
    const home = makeHome();
    const waiter = appshotAsync(home, ['run', '--aid', 'wake', '--no-identity', '--', 'sh', '-c',
      `${SEMTOOL} get 0x5e1007 1 c pid op 0 -1 pid`]);
    const vpid = Number((await waitFor(waiter.out, /pid (\d+)/))[1]);
    // The program sees its vpid; /proc from outside wants the kernel's.
    const pid = tablesJson(home, ['--aid', 'wake', '--type', 'pid']).find((r) => r.virtual === vpid)!.system;
    // Blocked in the kernel in semop/semtimedop (x86-64: 65 / 220), not polling.
    await waitFor(() => readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1][0], /S/);
    const syscall = () => readFileSync(`/proc/${pid}/syscall`, 'latin1').split(' ')[0];
    await waitFor(syscall, /^(65|220)$/);
    const switches = () => Number(readFileSync(`/proc/${pid}/status`, 'latin1').match(/voluntary_ctxt_switches:\s+(\d+)/)![1]);
    const before = switches();
    await new Promise((r) => setTimeout(r, 300));
    expect(switches()).toBe(before); // asleep the whole time: no timed polls
    expect(waiter.out()).not.toMatch(/ok 0/);
    // Another process of the same application posts with the virtual ID.
    const postIn = runInApp(home, 'wake', ['get', '0x5e1007', '1', '-', 'op', '0', '1']);
    expect(postIn).toContain('ok 0');
    const r = await waiter.done;
    expect(lines(r.stdout).slice(2)).toEqual(['ok 0', `pid ${vpid}`]);
  });

  it('a child after fork and a program after exec use the same translations', () => {
    const home = makeHome();
    const r = run(home, ['get', '0x5e1008', '1', 'c', 'setval', '0', '5', 'fork', 'getval', '0', 'setval', '0', '6',
      'exec', SEMTOOL, 'get', '0x5e1008', '1', '-', 'getval', '0'], ['--no-identity']);
    const out = lines(r.stdout);
    expect(out.slice(1)).toEqual(['ok 0', 'val 5', 'ok 0', out[0], 'val 6']);
  });

  it.each([
    ['system()', (id: string) => ['system', `${SEMTOOL} use $SEMID getval 0`], id => ['val 8', 'status 0']],
    ['vfork + exec', () => ['vfork', SEMTOOL, 'get', '0x5e1009', '1', '-', 'getval', '0'], (id: string) => [id, 'val 8', 'status 0']],
    ['posix_spawn', () => ['spawn', SEMTOOL, 'get', '0x5e1009', '1', '-', 'getval', '0'], (id: string) => [id, 'val 8', 'status 0']],
    ['sh -c', () => ['exec', 'sh', '-c', `${SEMTOOL} use $SEMID getval 0`], () => ['val 8']],
  ] as const)('%s: the new process uses the same translations', (_name, tail, expected) => {
    const home = makeHome();
    const r = run(home, ['get', '0x5e1009', '1', 'c', 'setval', '0', '8', ...tail('')], ['--no-identity']);
    const out = lines(r.stdout);
    expect(r.code).toBe(0);
    expect(out.slice(2)).toEqual(expected(out[0]));
  });

  it('processes racing to create one key all get the same set', () => {
    const r = run(makeHome(), ['race', '0x5e100c', '6', 'get', '0x5e100c', '1', '-'], ['--no-identity']);
    const ids = lines(r.stdout);
    expect(ids).toHaveLength(7);
    const want = ids[6].replace('id', 'raced');
    expect(ids.slice(0, 6)).toEqual(Array(6).fill(want));
  });

  it('a program that closes every descriptor keeps translating, and LMDB never writes into its files', () => {
    const home = makeHome();
    const victim = `${home}/victim`;
    const r = run(home, ['closefds', 'openfile', victim, 'openfile', `${victim}2`, 'private', '1', 'setval', '0', '3', 'getval', '0',
      'rmid', 'get', '0x5e100d', '1', 'c', 'rmid'], ['--no-identity']);
    expect(lines(r.stdout)).toEqual(['fd 3', 'fd 4', expect.stringMatching(/^id \d+$/), 'ok 0', 'val 3', 'ok 0', expect.stringMatching(/^id \d+$/), 'ok 0']);
    expect(statSync(victim).size).toBe(0);
    expect(statSync(`${victim}2`).size).toBe(0);
  });

  it('threads of one process translate concurrently', () => {
    const r = run(makeHome(), ['private', '1', 'threads', '8', '2000'], ['--no-identity']);
    expect(lines(r.stdout)).toEqual([expect.stringMatching(/^id \d+$/), 'val 16000']);
  });

  it('a program that execs with an environment of its own still runs under the shim', () => {
    const home = makeHome();
    const py = `
import subprocess, os
print(subprocess.run(['${SEMTOOL}', 'get', '0x5e100b', '1', '-', 'getval', '0'], env={'PATH': '/usr/bin:/bin'}, capture_output=True, text=True).stdout, end='')
os.execle('${SEMTOOL}', 'semtool', 'get', '0x5e100b', '1', '-', 'getval', '0', {'ONLY': 'this'})
`;
    const envI = run(home, ['get', '0x5e100b', '1', 'c', 'setval', '0', '6', 'exec', 'env', '-i', SEMTOOL, 'get', '0x5e100b', '1', '-', 'getval', '0'], ['--no-identity']);
    const a = lines(envI.stdout);
    expect(a.slice(1)).toEqual(['ok 0', a[0], 'val 6']);
    const python = run(home, ['get', '0x5e100b', '1', 'c', 'setval', '0', '7', 'exec', 'python3', '-c', py], ['--no-identity']);
    const b = lines(python.stdout);
    expect(b.slice(1)).toEqual(['ok 0', b[0], 'val 7', b[0], 'val 7']);
  });

  it('python3 subprocess children (fork+exec and vfork paths) use the same translations', () => {
    const home = makeHome();
    const py = `
import subprocess, os
sem = os.environ['SEMID']
print(subprocess.run(['${SEMTOOL}', 'use', sem, 'getval', '0'], capture_output=True, text=True).stdout, end='')
print(subprocess.run(['${SEMTOOL}', 'use', sem, 'getval', '0'], capture_output=True, text=True, close_fds=False, preexec_fn=lambda: None).stdout, end='')
print(subprocess.run('${SEMTOOL} get 0x5e100a 1 - getval 0', shell=True, capture_output=True, text=True).stdout, end='')
`;
    const r = run(home, ['get', '0x5e100a', '1', 'c', 'setval', '0', '9', 'exec', 'python3', '-c', py], ['--no-identity']);
    const out = lines(r.stdout);
    expect(out.slice(2)).toEqual(['val 9', 'val 9', out[0], 'val 9']);
  });
});

/** Runs semtool as one more process of a running application. */
function runInApp(home: string, aid: string, args: string[]): string {
  return execFileSync(SEMTOOL, args, {
    encoding: 'utf8',
    env: { ...process.env, APPSHOT_HOME: home, APPSHOT_AID: aid, LD_PRELOAD: SHIM_PATH },
  });
}
