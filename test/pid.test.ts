import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openTableDb } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { PIDTOOL, SEMTOOL, SHMTOOL, appshot, appshotAsync, lines, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

const REMAP_BASE = 0x10000000;

/** Every test runs twice: with identity first (vpid == spid), and with
 * every vpid remapped, as a restored application sees them. */
describe.each([
  ['identity first', [] as string[]],
  ['remapped', ['--no-identity']],
])('process IDs, %s', (mode, flags) => {
  const remapped = flags.length > 0;
  const run = (home: string, args: string[]) => appshot(home, ['run', '--aid', 'p', ...flags, '--', ...args]);
  const expectVirtual = (vpid: number) => (remapped ? expect(vpid).toBeGreaterThanOrEqual(REMAP_BASE) : expect(vpid).toBeLessThan(REMAP_BASE));

  it('getpid, gettid, fork, posix_spawn and waitpid give vpids that name the same processes everywhere', () => {
    const r = run(makeHome(), [PIDTOOL, 'pid', 'tid', 'child', '3', 'spawn', '4', 'threads', '3', 'peercred', 'siginfo', 'owner', 'ipcpids', 'procpath', 'sched']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    const pid = Number(out[0].split(' ')[1]);
    expectVirtual(pid);
    expect(out[1]).toBe(`tid ${pid}`); // the main thread's tid is the pid
    const forked = Number(out[2].split(' ')[1]);
    expectVirtual(forked);
    expect(out.slice(3, 5)).toEqual([`child pid ${forked} ppid ${pid}`, `reaped ${forked} status 3`]);
    const spawned = Number(out[5].split(' ')[1]);
    expectVirtual(spawned);
    expect(out[6]).toBe(`reaped ${spawned} status 4`);
    const threads = out.filter((l) => l.startsWith('thread ')).map((l) => l.split(' '));
    expect(threads).toHaveLength(3);
    for (const t of threads) expect(t[3]).toBe(t[5]); // stable
    expect(new Set(threads.map((t) => t[3])).size).toBe(3); // distinct
    expect(threads.every((t) => Number(t[3]) !== pid)).toBe(true);
    expect(out).toContain('main tid == pid');
    const peer = out.find((l) => l.startsWith('child ') && l.includes('sees peer'))!.split(' ');
    expect([peer[4], peer[6]]).toEqual([String(pid), String(pid)]);
    expect(out).toContain(`parent ${pid} sees peer ${pid}`);
    const sig = out.find((l) => l.startsWith('si_pid'))!.split(' ');
    expect(sig[1]).toBe(sig[3]);
    expectVirtual(Number(sig[1]));
    expect(out).toContain(`getown ${pid} pid ${pid}`);
    expect(out).toContain(`getown_ex ${pid}`);
    expect(out).toContain(`pid ${pid} shm_cpid ${pid} shm_lpid ${pid} sem_pid ${pid} msg_lspid ${pid}`);
    expect(out).toContain(`cmdline ${PIDTOOL}`); // /proc/<vpid>/ reached the process
    expect(out.slice(-2)).toEqual(['policy 0', 'prlimit 0']);
  });

  it('the tables map each vpid to the process the kernel knows', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'p', ...flags, '--', PIDTOOL, 'pid', 'sleep', '100000']);
    const vpid = Number((await waitFor(app.out, /^pid (\d+)/m))[1]);
    const row = tablesJson(home, ['--type', 'pid']).find((r) => r.virtual === vpid)!;
    expect(readFileSync(`/proc/${row.system}/cmdline`, 'latin1')).toContain('pidtool');
    if (!remapped) expect(row.system).toBe(vpid);
    const ps = JSON.parse(appshot(home, ['ps', '--json']).stdout);
    expect(ps).toEqual(expect.arrayContaining([expect.objectContaining({ aid: 'p', vpid, spid: row.system })]));
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('kill or waitpid on a vpid that is not the application\'s gives the native errno', () => {
    const args = ['kill', String(REMAP_BASE + 999), '0', 'waitpid', String(REMAP_BASE + 999), 'waitpid', '1'];
    const native = runNative(args, PIDTOOL);
    expect(native.stdout).toBe('err ESRCH\nerr ECHILD\nerr ECHILD\n');
    expect(run(makeHome(), [PIDTOOL, ...args]).stdout).toBe(native.stdout);
  });

  it('process groups: setpgid, getpgrp, getpgid, then sigqueue, tgkill and killpg on the group by its vpid', () => {
    const args = ['group'];
    const native = runNative(args, PIDTOOL);
    expect(native.stdout).toBe('child pgrp == pid, pgid == pid\nparent sees pgid == child\nsigqueue 0\ntgkill 0\nkillpg 0\nreaped status 143\n');
    expect(run(makeHome(), [PIDTOOL, ...args]).stdout).toBe(native.stdout);
  });

  it('a child made by a raw fork system call, past libc\'s fork, gets a pid of its own', () => {
    const out = lines(run(makeHome(), [PIDTOOL, 'rawfork']).stdout);
    const m = out[0].match(/^rawchild getpid (\d+) kernel (\d+) differs from parent$/)!;
    expect(m, out[0]).not.toBeNull();
    expectVirtual(Number(m[1]));
    if (!remapped) expect(m[1]).toBe(m[2]);
  });

  it('an orphan\'s getppid is what the kernel reports: the process that adopted it', () => {
    const r = run(makeHome(), [PIDTOOL, 'orphan']);
    const m = r.stdout.match(/orphan ppid (\d+) kernel ppid (\d+)/)!;
    expect(m[1]).toBe(m[2]);
  });

  it('a daemon writes its pid file, and a stop script of the application reads it and signals it', () => {
    const home = makeHome();
    const pidfile = join(home, 'd.pid');
    const script = `${PIDTOOL} daemon ${pidfile} sleep 100000
      while [ ! -s ${pidfile} ]; do sleep 0.01; done
      d=$(cat ${pidfile}); echo "daemon $d"
      kill -0 "$d" && echo alive
      kill "$d"; while kill -0 "$d" 2>/dev/null; do sleep 0.01; done; echo stopped`;
    const r = run(home, ['sh', '-c', script]);
    expect(r.code, r.stderr).toBe(0);
    const out = lines(r.stdout);
    expectVirtual(Number(out[0].split(' ')[1]));
    expect(out.slice(1)).toEqual(['alive', 'stopped']);
  });

  it('bash job control: a background job is killed by its job number and waited for', () => {
    const script = 'sleep 30 & p=$!; kill %1; wait $p; echo "status $?"; echo "job $p"';
    const r = run(makeHome(), ['bash', '-c', script]);
    const out = lines(r.stdout);
    expect(out[0]).toBe('status 143');
    expectVirtual(Number(out[1].split(' ')[1]));
  });

  it('python: subprocess.run and multiprocessing agree on who is who', () => {
    const home = makeHome();
    const script = join(home, 'mp.py');
    writeFileSync(script, [
      'import os, subprocess, multiprocessing as mp',
      'def report(q): q.put((os.getpid(), os.getppid()))',
      'def whoami(_): return os.getpid()',
      "if __name__ == '__main__':",
      "    mp.set_start_method('fork')",
      "    r = subprocess.run(['sh', '-c', 'echo $$; kill -0 $PPID && echo parent-ok'], capture_output=True, text=True)",
      "    print('subprocess', r.returncode, r.stdout.split())",
      '    q = mp.Queue(); p = mp.Process(target=report, args=(q,)); p.start(); got = q.get(); p.join()',
      "    print('process', got[0] == p.pid, got[1] == os.getpid(), p.exitcode)",
      '    with mp.Pool(2) as pool:',
      '        workers = {w.pid for w in pool._pool}',
      "        print('pool', set(pool.map(whoami, range(8))) <= workers, len(workers))",
      "    print('pid', os.getpid())",
    ].join('\n'));
    const r = run(home, ['python3', script]);
    expect(r.code, r.stderr).toBe(0);
    const out = lines(r.stdout);
    expect(out[0]).toMatch(/^subprocess 0 \['\d+', 'parent-ok'\]$/);
    expectVirtual(Number(out[0].match(/\['(\d+)'/)![1]));
    expect(out.slice(1, 3)).toEqual(['process True True 0', 'pool True 2']);
    expectVirtual(Number(out[3].split(' ')[1]));
  });

  it('make -j2 runs recipes that spawn shells', () => {
    const home = makeHome();
    writeFileSync(join(home, 'Makefile'), [
      'all: a b',
      '\t@echo "all done"',
      'a:',
      '\t@sh -c \'echo "a $$$$"; sleep 0.2\' > a',
      'b:',
      '\t@sh -c \'echo "b $$$$"; sleep 0.2\' > b',
    ].join('\n') + '\n');
    const r = run(home, ['make', '-j2', '-C', home, '--no-print-directory']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('all done');
    for (const f of ['a', 'b']) expectVirtual(Number(readFileSync(join(home, f), 'latin1').trim().split(' ')[1]));
  });

  it('SIGKILL in the middle of a fork storm: no mapping is left for a process that no longer exists', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'storm', ...flags, '--', 'sh', '-c', `${PIDTOOL} storm 100000 & echo started; exec sleep 100000`]);
    await waitFor(app.out, /started/);
    await new Promise((r) => setTimeout(r, 400));
    const stormer = tablesJson(home, ['--type', 'pid']).find((row) => existsSync(`/proc/${row.system}`) && readFileSync(`/proc/${row.system}/cmdline`, 'latin1').includes('storm'));
    expect(stormer, 'the storming process has a row').toBeDefined();
    process.kill(stormer!.system, 'SIGKILL');
    // The supervisor reaps the orphans; the stormer itself stays a zombie
    // (its parent, exec'd into sleep, never waits), and so does its row.
    await waitFor(() => {
      const stale = tablesJson(home, ['--type', 'pid']).filter((row) => !existsSync(`/proc/${row.system}`));
      return stale.length ? JSON.stringify(stale) : 'none';
    }, /^none$/, 10_000);
    const live = tablesJson(home, ['--type', 'pid']);
    expect(live.length).toBeGreaterThanOrEqual(1);
    app.child.kill('SIGTERM');
    await app.done;
    expect(tablesJson(home, ['--type', 'pid'])).toEqual([]);
  });

  it('system() gives the shell\'s status as natively', () => {
    const args = ['system', 'exit 5', 'system', 'kill -9 $$', 'spawn', 'true'];
    const native = runNative(args);
    expect(native.stdout).toBe('status 5\nstatus 137\nstatus 0\n');
    expect(run(makeHome(), [SEMTOOL, ...args]).stdout).toBe(native.stdout);
  });

  it('while the application runs, every process row names a process the kernel still has', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'rows', ...flags, '--', 'sh', '-c',
      `${SEMTOOL} system 'exit 5' >/dev/null; python3 -c 'import os; os.system("true")'; ${PIDTOOL} child 0 spawn 0 >/dev/null; echo ready; exec sleep 100000`]);
    await waitFor(app.out, /ready/);
    const rows = tablesJson(home, ['--type', 'pid']);
    expect(rows.filter((row) => !existsSync(`/proc/${row.system}`))).toEqual([]);
    expect(rows).toHaveLength(1); // the shell, now sleep
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('70 fork children of one process: distinct vpids, each row naming its process with the start time the kernel gives it', async () => {
    const home = makeHome();
    // Python's os.fork is libc's fork; the children make no call into the
    // shim that could write their rows again. 70 forks cross a block of
    // reserved vpids (64) in a remapped application.
    const script = [
      'import os, time',
      'kids = []',
      'for i in range(70):',
      '    p = os.fork()',
      '    if p == 0:',
      '        time.sleep(100000)',
      '        os._exit(0)',
      '    kids.append(p)',
      'print("kids", *kids, flush=True)',
      'time.sleep(100000)',
    ].join('\n');
    const app = appshotAsync(home, ['run', '--aid', 'kids', ...flags, '--', 'python3', '-c', script]);
    const stop = async () => {
      for (const p of JSON.parse(appshot(home, ['ps', '--aid', 'kids', '--json']).stdout)) process.kill(p.spid, 'SIGKILL');
      app.child.kill('SIGTERM');
      await app.done;
    };
    let t: ReturnType<typeof openTableDb> | undefined;
    try {
      const kids = (await waitFor(app.out, /^kids .*\n/m))[0].trim().split(' ').slice(1).map(Number);
      t = openTableDb(home);
      expect(new Set(kids).size).toBe(70);
      for (const k of kids) expectVirtual(k);
      const rows = tablesJson(home, ['--type', 'pid']);
      for (const k of kids) {
        const row = rows.find((r) => r.virtual === k);
        expect(row, `vpid ${k} has a row`).toBeDefined();
        const stat = readFileSync(`/proc/${row!.system}/stat`, 'latin1');
        const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
        const proc = t.procs.get(S.procKey(row!.system));
        expect(proc, `process ${row!.system} has a procs row`).toBeDefined();
        expect(S.decodeProcVal(proc!).startTicks).toBe(startTicks);
      }
    } finally {
      t?.env.close();
      await stop();
    }
  });

  it(`appshot ps lists the processes (${mode})`, async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'listed', ...flags, '--', 'sh', '-c', `${PIDTOOL} pid sleep 100000 & exec ${PIDTOOL} pid sleep 100000`]);
    await waitFor(app.out, /pid \d+\n(.|\n)*pid \d+/);
    const vpids = [...app.out().matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    const ps = JSON.parse(appshot(home, ['ps', '--aid', 'listed', '--json']).stdout);
    expect(ps.map((p: { vpid: number }) => p.vpid).sort()).toEqual([...vpids].sort());
    const human = appshot(home, ['ps']).stdout;
    expect(human).toMatch(/VPID/);
    for (const v of vpids) expect(human).toContain(String(v));
    for (const p of ps) process.kill(p.spid, 'SIGTERM'); // the background one too
    await app.done;
  });
});

describe('two remapped applications at once', () => {
  it('fork children with the same vpid in each both use the tables (LMDB keeps the kernel PID)', async () => {
    const home = makeHome();
    const script = ['private', '100', 'fork', 'private', '100', 'pid'];
    const a = appshotAsync(home, ['run', '--aid', 'ra', '--no-identity', '--', SHMTOOL, ...script, 'sleep', '100000']);
    await waitFor(a.out, /^pid/m);
    const b = appshot(home, ['run', '--aid', 'rb', '--no-identity', '--', SHMTOOL, ...script]);
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    // Both children have the same vpid, in their own applications.
    expect(b.stdout.match(/^pid (\d+)/m)![1]).toBe(a.out().match(/^pid (\d+)/m)![1]);
    for (const p of JSON.parse(appshot(home, ['ps', '--aid', 'ra', '--json']).stdout)) process.kill(p.spid, 'SIGTERM');
    await a.done;
  });
});
