import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SHIM_PATH } from '../ts/paths.js';
import { openTableDb } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { IPC_TYPES } from '../ts/sysv/ipctype.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { MSGTOOL, SEMLOOP, SEMTOOL, SHMTOOL, appshot, appshotAsync, kernelSems, makeHome, tablesJson, waitFor } from './helpers.js';

/** Every forward row has its reverse row and the other way round. */
function tablesWhole(home: string): string[] {
  const t = openTableDb(home);
  const problems: string[] = [];
  for (const { key, value } of t.fwd.getRange({})) {
    const k = S.decodeFwdKey(key);
    const v = S.decodeFwdVal(value);
    const r = t.rev.get(S.revKey(t.node, k.type, v.srid));
    if (!r) problems.push(`fwd ${k.aid}:${k.type}:${k.vrid} has no rev row`);
    else if (S.decodeRevVal(r).aid !== k.aid || S.decodeRevVal(r).vrid !== k.vrid) problems.push(`fwd ${k.aid}:${k.type}:${k.vrid} disagrees with rev`);
  }
  for (const { key, value } of t.rev.getRange({})) {
    const type = key[4];
    const { aid, vrid } = S.decodeRevVal(value);
    if (!t.fwd.get(S.fwdKey(aid, type, vrid))) problems.push(`rev ${type}:${key.readUInt32BE(5)} has no fwd row`);
  }
  t.env.close();
  return problems;
}

function appPids(home: string, aid: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .filter((n) => {
      try {
        const env = readFileSync(`/proc/${n}/environ`, 'latin1').split('\0');
        return env.includes(`APPSHOT_AID=${aid}`) && env.includes(`APPSHOT_HOME=${home}`) && env.some((e) => e.startsWith('LD_PRELOAD='));
      } catch {
        return false;
      }
    })
    .map(Number);
}

const semIds = () => new Set(kernelSems().map((s) => s.semid));

/** Every SysV IPC object on the host, as "shm 7", ... */
function ipcObjects(): Set<string> {
  const all = new Set<string>();
  for (const type of IPC_TYPES) for (const id of kernelObjects(type).keys()) all.add(`${type} ${id}`);
  return all;
}
const newObjects = (before: Set<string>) => [...ipcObjects()].filter((o) => !before.has(o));

describe('crashes leave no kernel object and whole table rows', () => {
  // What runs, and how many processes of it are killed at once.
  const loops = {
    'two processes creating and removing semaphore sets': { args: [SEMLOOP, '0x5e2001', '2'], procs: 2 },
    'two processes exchanging messages and attaching segments': { args: [MSGTOOL, 'get', '0x5e2030', 'c', 'pingpong', '0'], procs: 2 },
    'eight processes creating and removing sets at once': { args: [SEMLOOP, '0x5e2041', '8'], procs: 8 },
  };
  it.each(Object.keys(loops).flatMap((what) => [30, 120, 400].map((ms) => [what, ms] as const)))(
    'SIGKILL of %s, %i ms in: nothing left in the kernel, rows whole',
    async (what, ms) => {
      const { args, procs } = loops[what as keyof typeof loops];
      const home = makeHome();
      const before = ipcObjects();
      const app = appshotAsync(home, ['run', '--aid', 'loop', '--', ...args]);
      await waitFor(app.out, /ready/);
      await new Promise((r) => setTimeout(r, ms));
      const pids = appPids(home, 'loop');
      expect(pids.length, `processes of the application: ${pids}`).toBe(procs);
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      const r = await app.done;
      const context = `harness stderr: ${r.stderr}`;
      expect(r.code, context).toBe(128 + 9);
      expect(newObjects(before), context).toEqual([]);
      expect(tablesWhole(home), context).toEqual([]);
      expect(tablesJson(home, ['--aid', 'loop']), context).toEqual([]);
    },
  );

  it.each([
    ['a keyed set', SEMTOOL, ['get', '0x5e2010', '1', 'c']],
    ['a private set', SEMTOOL, ['private', '1']],
    ['a keyed segment', SHMTOOL, ['get', '0x5e2031', '4096', 'c']],
    ['a private segment', SHMTOOL, ['private', '4096']],
    ['a keyed queue', MSGTOOL, ['get', '0x5e2032', 'c']],
    ['a private queue', MSGTOOL, ['private']],
  ])('a process killed between creating %s and recording it: the harness removes it', (_what, program, args) => {
    const home = makeHome();
    const before = ipcObjects();
    const r = appshot(home, ['run', '--aid', 'fault', '--', program, ...args], { APPSHOT_FAULT: 'after-create' });
    expect(r.code).toBe(128 + 9);
    expect(r.stderr).toMatch(/removed (semaphore set|shared memory segment|message queue) \d+ that process \d+ of application 'fault' created and did not record before it died/);
    expect(newObjects(before)).toEqual([]);
    expect(tablesWhole(home)).toEqual([]);
  });

  it('a set left by a killed creator is removed by the next creator of any application', async () => {
    const home = makeHome();
    const before = semIds();
    const holder = appshotAsync(home, ['run', '--aid', 'holder', '--', SEMTOOL, 'pid', 'sleep', '100000']);
    await waitFor(holder.out, /pid/);
    // Joins the running application, creates, and dies before recording.
    const env = { ...process.env, APPSHOT_HOME: home, APPSHOT_AID: 'holder', LD_PRELOAD: SHIM_PATH, APPSHOT_FAULT: 'after-create' };
    expect(() => execFileSync(SEMTOOL, ['get', '0x5e2011', '1', 'c'], { env })).toThrow();
    const orphan = kernelSems().filter((s) => !before.has(s.semid));
    expect(orphan.map((s) => s.key)).toEqual([0x5e2011]);
    const next = appshot(home, ['run', '--', SEMTOOL, 'private', '1']);
    expect(next.code).toBe(0);
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
    expect(tablesWhole(home)).toEqual([]);
  });
});

describe('opening the tables while another process commits', () => {
  it('300 programs starting while a process creates and removes sets: no table error, rows whole', () => {
    const home = makeHome();
    const before = semIds();
    // Every program started under the shim opens the tables; semloop commits
    // all the while. Unserialized, an open can move LMDB's shared txn id back.
    const r = appshot(home, ['run', '--aid', 'opens', '--', 'sh', '-c',
      `${SEMLOOP} 0x5e2020 1 > /dev/null & i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done; kill $!`]);
    expect(r.stderr).not.toMatch(/MDB_|cannot/);
    expect(r.code).toBe(0);
    expect(tablesWhole(home)).toEqual([]);
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
  });
});

describe('the shim refuses to run a program untranslated', () => {
  it('when the application is not registered, it says so with the path and stops the program', () => {
    const home = makeHome();
    appshot(home, ['run', '--', 'true']); // creates the tables
    let out = '';
    let status = 0;
    try {
      execFileSync(SEMTOOL, ['pid'], { env: { ...process.env, APPSHOT_HOME: home, APPSHOT_AID: 'nobody', LD_PRELOAD: SHIM_PATH }, stdio: 'pipe' });
    } catch (err) {
      const e = err as { status: number; stderr: Buffer; stdout: Buffer };
      status = e.status;
      out = e.stderr.toString() + e.stdout.toString();
    }
    expect(status).toBe(125);
    expect(out).toContain(`appshot: application 'nobody' is not running in the tables at ${home}/tables.mdb`);
    expect(out).not.toContain('pid ');
  });

  it('when the tables cannot be opened, it names the path and the reason', () => {
    const home = makeHome();
    let out = '';
    let status = 0;
    try {
      execFileSync(SEMTOOL, ['pid'], { env: { ...process.env, APPSHOT_HOME: home, APPSHOT_AID: 'x', LD_PRELOAD: SHIM_PATH }, stdio: 'pipe' });
    } catch (err) {
      const e = err as { status: number; stderr: Buffer };
      status = e.status;
      out = e.stderr.toString();
    }
    expect(status).toBe(125);
    expect(out).toContain(`appshot: cannot open tables at ${home}/tables.mdb: No such file or directory`);
    expect(out).toContain('cannot run untranslated');
    expect(existsSync(join(home, 'tables.mdb'))).toBe(false);
  });
});
