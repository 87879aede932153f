import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PIDTOOL, SEMTOOL, appshot, appshotAsync, kernelSems, makeHome, tablesJson, waitFor } from './helpers.js';
import * as S from '../tables/schema.js';

// appshot exec, stop and kill against real applications under the real
// shim, in both modes: virtual IDs equal to system IDs where free (the
// default), and never equal (--no-identity, as a restored application).

const MODES = [
  { name: 'identity', flags: [] as string[] },
  { name: 'remapped (--no-identity)', flags: ['--no-identity'] },
];

let keySeq = 0;
/** An IPC key no other test of this run uses. */
function freshKey(): string {
  return `0x${(0x5e170000 + process.pid * 64 + keySeq++).toString(16)}`;
}

function appState(home: string, aid: string): string | undefined {
  const r = appshot(home, ['tables', '--apps', '--json']);
  return (JSON.parse(r.stdout) as { aid: string; state: string }[]).find((a) => a.aid === aid)?.state;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A sem set made by the application's first process, which then waits. */
async function semApp(home: string, aid: string, flags: string[], key: string, ms = 60_000) {
  const run = appshotAsync(home, ['run', '--aid', aid, ...flags, '--', SEMTOOL, 'get', key, '1', 'c', 'pid', 'sleep', String(ms)]);
  const [, id] = await waitFor(run.out, /id (\d+)\npid \d+\n/);
  return { run, id: Number(id) };
}

describe('appshot exec', () => {
  it('refuses an invalid AID with exit 2, an unknown one with exit 1 naming it, and no command with exit 2', async () => {
    const home = makeHome();
    let r = appshot(home, ['exec', 'bad name', '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("appshot: 'bad name' is not a valid application ID");
    r = appshot(home, ['exec', 'nosuch', '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^appshot: there is no application 'nosuch' under /);
    expect(appshot(home, ['run', '--aid', 'done', '--', 'true']).code).toBe(0);
    r = appshot(home, ['exec', 'done', '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("appshot: application 'done' is not running (it is ended)");
    const { run } = await semApp(home, 'e0', [], freshKey());
    r = appshot(home, ['exec', 'e0', '--']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("appshot: no command to run in application 'e0'");
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    run.child.kill('SIGTERM');
    await run.done;
  });

  describe.each(MODES)('in an application run in $name mode', ({ flags }) => {
    it("sees the application's virtual IDs and keys, is one of its processes, and gets a vpid", async () => {
      const home = makeHome();
      const key = freshKey();
      const { run, id } = await semApp(home, 'x1', flags, key);
      const ex = appshotAsync(home, ['exec', 'x1', '--', SEMTOOL, 'get', key, '1', '-', 'pid', 'sleep', '60000']);
      const [, exId, exPid] = await waitFor(ex.out, /id (\d+)\npid (\d+)\n/);
      // The same key opens the same set, under the same virtual ID.
      expect(Number(exId)).toBe(id);
      const ps = JSON.parse(appshot(home, ['ps', '--aid', 'x1', '--json']).stdout) as { vpid: number; spid: number; command: string }[];
      const joined = ps.find((p) => p.vpid === Number(exPid));
      expect(joined?.command).toContain(`${SEMTOOL} get ${key} 1 - pid`);
      if (flags.includes('--no-identity')) {
        expect(id).toBeGreaterThanOrEqual(S.VRID_REMAP_BASE);
        expect(Number(exPid)).toBeGreaterThanOrEqual(S.VRID_REMAP_BASE);
        expect(joined!.spid).not.toBe(joined!.vpid);
      } else expect(joined!.spid).toBe(joined!.vpid);
      // A tool that needs no key: its own getpid is its vpid too.
      const p = appshot(home, ['exec', 'x1', '--', PIDTOOL, 'pid']);
      expect(p.code).toBe(0);
      const vpid = Number(/pid (\d+)/.exec(p.stdout)![1]);
      if (flags.includes('--no-identity')) expect(vpid).toBeGreaterThanOrEqual(S.VRID_REMAP_BASE);
      ex.child.kill('SIGTERM');
      expect((await ex.done).code).toBe(128 + 15);
      run.child.kill('SIGTERM');
      await run.done;
    });

    it("the application's harness waits for an exec'd process before it cleans up", async () => {
      const home = makeHome();
      const key = freshKey();
      // The first process ends once the exec'd one has joined (not after a
      // fixed time, which a loaded machine can outlast before exec joins).
      const go = join(home, 'go');
      const run = appshotAsync(home, ['run', '--aid', 'x2', ...flags, '--', 'sh', '-c', `${SEMTOOL} get ${key} 1 c pid && while [ ! -e ${go} ]; do sleep 0.05; done`]);
      const id = Number((await waitFor(run.out, /id (\d+)\npid \d+\n/))[1]);
      const srid = tablesJson(home, ['--aid', 'x2', '--type', 'sem'])[0].system;
      // Outlives the first process, then uses the set.
      const ex = appshotAsync(home, ['exec', 'x2', '--', SEMTOOL, 'get', key, '1', '-', 'sleep', '5000', 'op', '0', '1', 'getval', '0']);
      await waitFor(ex.out, /^id \d+\n/);
      writeFileSync(go, '');
      const r = await ex.done;
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`id ${id}\nok 0\nval 1\n`);
      expect(r.code).toBe(0);
      const ran = await run.done;
      expect(ran.code).toBe(0);
      expect(ran.stderr).toContain("application 'x2' still has");
      expect(kernelSems().some((s) => s.semid === srid)).toBe(false);
      expect(appState(home, 'x2')).toBe('ended');
    });
  });

  it("exits with the command's status, 127 when not found, 126 when not executable", async () => {
    const home = makeHome();
    const { run } = await semApp(home, 'x3', [], freshKey());
    expect(appshot(home, ['exec', 'x3', '--', 'sh', '-c', 'exit 7']).code).toBe(7);
    let r = appshot(home, ['exec', 'x3', '--', 'no-such-command-xyz']);
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('appshot: no-such-command-xyz: not found');
    const file = join(home, 'plain.txt');
    writeFileSync(file, 'x');
    r = appshot(home, ['exec', 'x3', '--', file]);
    expect(r.code).toBe(126);
    expect(r.stderr).toContain(`appshot: ${file}: Permission denied`);
    // Options after AID belong to CMD.
    expect(appshot(home, ['exec', 'x3', '--', 'sh', '-c', 'echo "$@"', 'sh', '--aid', 'y', '-t', '1']).stdout).toBe('--aid y -t 1\n');
    run.child.kill('SIGTERM');
    await run.done;
  });

  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)('forwards %s to the command', async (sig) => {
    const home = makeHome();
    const { run } = await semApp(home, 'x4', [], freshKey());
    const name = sig.slice(3);
    const ex = appshotAsync(home, ['exec', 'x4', '--', 'sh', '-c', `trap 'echo got-${name}; exit 3' ${name}; echo ready; while :; do sleep 0.05; done`]);
    await waitFor(ex.out, /ready/);
    ex.child.kill(sig);
    const r = await ex.done;
    expect(r.stdout).toContain(`got-${name}`);
    expect(r.code).toBe(3);
    run.child.kill('SIGTERM');
    await run.done;
  });
});

describe('appshot stop', () => {
  it.each(MODES)('in $name mode: SIGTERM ends the application, and it returns once the harness has cleaned up', async ({ flags }) => {
    const home = makeHome();
    const { run, id } = await semApp(home, 's1', flags, freshKey());
    const srid = tablesJson(home, ['--aid', 's1', '--type', 'sem'])[0].system;
    expect(srid === id).toBe(!flags.length);
    const started = Date.now();
    const r = appshot(home, ['stop', 's1']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("stopped application 's1'\n");
    expect(Date.now() - started).toBeLessThan(8000); // no grace period spent
    // Cleaned up when stop returns, not later.
    expect(appState(home, 's1')).toBe('ended');
    expect(kernelSems().some((s) => s.semid === srid)).toBe(false);
    expect((await run.done).code).toBe(128 + 15);
  });

  it.each(MODES)('in $name mode: a program that ignores SIGTERM has SIGKILL after -t 1, and stop says which', async ({ flags }) => {
    const home = makeHome();
    const run = appshotAsync(home, ['run', '--aid', 's2', ...flags, '--', 'sh', '-c', `trap '' TERM; ${SEMTOOL} private 1 pid sleep 60000`]);
    const [, id] = await waitFor(run.out, /id (\d+)\npid \d+\n/);
    const srid = tablesJson(home, ['--aid', 's2', '--type', 'sem']).find((row) => row.virtual === Number(id))!.system;
    const started = Date.now();
    const r = appshot(home, ['stop', 's2', '-t', '1']);
    const took = Date.now() - started;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\d process\(es\) of application 's2' still ran 1 s after SIGTERM and had SIGKILL: .*\d+ \(\S*semtool private 1 pid sleep 60000\).*\nstopped application 's2'\n$/);
    expect(took).toBeGreaterThanOrEqual(1000);
    expect(took).toBeLessThan(9000);
    expect(appState(home, 's2')).toBe('ended');
    expect(kernelSems().some((s) => s.semid === srid)).toBe(false);
    expect((await run.done).code).toBe(128 + 9);
  });

  it('ends processes joined with exec too, and exec exits with their status', async () => {
    const home = makeHome();
    const { run } = await semApp(home, 's3', ['--no-identity'], freshKey());
    const ex = appshotAsync(home, ['exec', 's3', '--', 'sh', '-c', 'echo joined; exec sleep 60']);
    await waitFor(ex.out, /joined/);
    const r = appshot(home, ['stop', 's3']);
    expect(r.code).toBe(0);
    expect((await ex.done).code).toBe(128 + 15);
    expect((await run.done).code).toBe(128 + 15);
    expect(appState(home, 's3')).toBe('ended');
  });

  it('when the harness was killed -9, stop ends the processes and cleans up itself: no kernel object left', async () => {
    const home = makeHome();
    const key = freshKey();
    const { run } = await semApp(home, 's4', [], key);
    const srid = tablesJson(home, ['--aid', 's4', '--type', 'sem'])[0].system;
    // 'exit', not done: the application still holds the harness's output pipes.
    const exited = new Promise((resolve) => run.child.once('exit', resolve));
    run.child.kill('SIGKILL');
    await exited;
    expect(kernelSems().some((s) => s.semid === srid)).toBe(true); // nobody cleaned up yet
    const r = appshot(home, ['stop', 's4']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^its harness was gone: cleaned up after 's4': removed 1 semaphore set and \d+ table rows?\nstopped application 's4'\n$/);
    expect(kernelSems().some((s) => s.semid === srid)).toBe(false);
    expect(tablesJson(home, ['--aid', 's4'])).toEqual([]);
    expect(appState(home, 's4')).toBe('ended');
    expect(appshot(home, ['ps', '--aid', 's4', '--json']).stdout.trim()).toBe('[]');
    await run.done; // the application's end closed the pipes
  });

  it('refuses an application that is not running with exit 1 naming it, and a bad -t with exit 2', () => {
    const home = makeHome();
    let r = appshot(home, ['stop', 'nosuch']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^appshot: there is no application 'nosuch' under .*nothing has run there yet\n$/);
    expect(appshot(home, ['run', '--aid', 'gone', '--', 'true']).code).toBe(0);
    r = appshot(home, ['stop', 'gone']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("appshot: application 'gone' is not running (it is ended)");
    r = appshot(home, ['stop', 'gone', '-t', 'soon']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("appshot: -t 'soon' is not a number of seconds");
    expect(appshot(home, ['stop', '-bad']).code).toBe(2);
  });
});

describe('appshot kill', () => {
  it('-s USR1 reaches a program that traps it, and only that signal', async () => {
    const home = makeHome();
    const run = appshotAsync(home, ['run', '--aid', 'k1', '--', 'sh', '-c', "trap 'echo got-USR1' USR1; echo ready; while :; do sleep 0.05; done"]);
    await waitFor(run.out, /ready/);
    const r = appshot(home, ['kill', 'k1', '-s', 'USR1']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^sent SIGUSR1 to \d+ process\(es\) of application 'k1': \d+/);
    await waitFor(run.out, /got-USR1/);
    // The application runs on: USR1 was trapped, its supervisor had none.
    expect(appState(home, 'k1')).toBe('running');
    expect(appshot(home, ['kill', 'k1', '-s', 'sigusr1']).code).toBe(0);
    await waitFor(run.out, /got-USR1\n(.*\n)*got-USR1/);
    // By default KILL, as docker's.
    expect(appshot(home, ['kill', 'k1']).code).toBe(0);
    const ran = await run.done;
    expect(ran.code).toBe(128 + 9);
    expect(appState(home, 'k1')).toBe('ended');
  });

  it.each(MODES)('in $name mode: signals by number, and never a process outside the application', async ({ flags }) => {
    const home = makeHome();
    const { run } = await semApp(home, 'k2', flags, freshKey());
    // A program of the same command outside any application.
    const outside = spawn(SEMTOOL, ['sleep', '60000'], { stdio: 'ignore' });
    const r = appshot(home, ['kill', 'k2', '-s', '15']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^sent SIGTERM to 1 process\(es\) of application 'k2'/);
    expect((await run.done).code).toBe(128 + 15);
    expect(alive(outside.pid!)).toBe(true);
    outside.kill('SIGKILL');
  });

  it('refuses a bad signal with exit 2 and an application that is not running with exit 1', async () => {
    const home = makeHome();
    const { run } = await semApp(home, 'k3', [], freshKey());
    for (const bad of ['NOPE', '0', '65', 'SIG']) {
      const r = appshot(home, ['kill', 'k3', '-s', bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`appshot: '${bad}' is not a signal`);
    }
    expect(appState(home, 'k3')).toBe('running');
    run.child.kill('SIGTERM');
    await run.done;
    const r = appshot(home, ['kill', 'k3']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("appshot: application 'k3' is not running (it is ended)");
  });
});
