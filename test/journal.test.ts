import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SHIM_PATH, builtProgram } from '../ts/paths.js';
import { MODES, SEMTOOL, appshot, appshotAsync, kernelSems, makeHome, tablesJson, waitFor } from './helpers.js';

/**
 * The journal of new objects (native/core/journal.h): the rows of private
 * SysV objects, kept in the home's inflight file instead of one LMDB commit
 * each. journaltool works on the real shared file, lock and slots from
 * separate processes, and dies where a holder of the lock may.
 */
const JOURNALTOOL = builtProgram('journaltool');
const RT_SEM = 1;
/** vrids this far apart start their probe at the same slot. */
const SAME_START = 32768;

function tool(home: string, args: (string | number)[]): { code: number | null; signal: NodeJS.Signals | null; out: string[] } {
  const r = spawnSync(JOURNALTOOL, [home, 'app', ...args.map(String)], { encoding: 'utf8' });
  return { code: r.status, signal: r.signal, out: r.stdout.trim().split('\n').filter(Boolean) };
}

const ok = (home: string, args: (string | number)[]) => {
  const r = tool(home, args);
  expect(r.code, r.out.join('\n')).toBe(0);
  return r.out;
};

describe('the journal of new objects, from separate processes', () => {
  it('rows that start their probe at one slot are each found, and stay found as others are dropped', () => {
    const home = makeHome();
    const v = [1000, 1000 + SAME_START, 1000 + 2 * SAME_START, 1001];
    v.forEach((vrid, i) => expect(ok(home, ['insert', RT_SEM, vrid, 500 + i])).toEqual(['ok']));
    expect(ok(home, ['find', RT_SEM, ...v, 999])).toEqual([`${v[0]} 500`, `${v[1]} 501`, `${v[2]} 502`, `${v[3]} 503`, '999 none']);
    // Another application's row at the same vrid is not this one's.
    expect(spawnSync(JOURNALTOOL, [home, 'other', 'find', String(RT_SEM), String(v[0])], { encoding: 'utf8' }).stdout.trim()).toBe(`${v[0]} none`);
    expect(ok(home, ['drop', RT_SEM, v[1], 999])).toEqual(['absent']); // not that object's row
    expect(ok(home, ['drop', RT_SEM, v[1], 501])).toEqual(['dropped']);
    expect(ok(home, ['find', RT_SEM, ...v])).toEqual([`${v[0]} 500`, `${v[1]} none`, `${v[2]} 502`, `${v[3]} 503`]);
    expect(ok(home, ['drop', RT_SEM, v[0], 500])).toEqual(['dropped']);
    expect(ok(home, ['find', RT_SEM, ...v])).toEqual([`${v[0]} none`, `${v[1]} none`, `${v[2]} 502`, `${v[3]} 503`]);
    ok(home, ['drop', RT_SEM, v[2], 502]);
    ok(home, ['drop', RT_SEM, v[3], 503]);
    expect(ok(home, ['used'])).toEqual(['0']);
  });

  it.each([
    ['a row moved back over the dropped one, its old slot not yet free', 'moved'],
    ['the slot it was writing half written', 'torn'],
  ])('a process killed holding the lock while it drops a row (%s): the next one repairs, every other row whole', (_what, point) => {
    const home = makeHome();
    const [a, b, c] = [2000, 2000 + SAME_START, 2001];
    for (const [vrid, srid] of [[a, 10], [b, 11], [c, 12]]) ok(home, ['insert', RT_SEM, vrid, srid]);
    const died = tool(home, ['drop', RT_SEM, a, 10, point]);
    expect(died.signal).toBe('SIGKILL');
    // The next holder finds the lock's owner dead and repairs the slots.
    expect(ok(home, ['find', RT_SEM, a, b, c])).toEqual([`${a} none`, `${b} 11`, `${c} 12`]);
    expect(ok(home, ['drop', RT_SEM, b, 11])).toEqual(['dropped']);
    expect(ok(home, ['find', RT_SEM, b, c])).toEqual([`${b} none`, `${c} 12`]);
    expect(ok(home, ['insert', RT_SEM, b, 13])).toEqual(['ok']);
    expect(ok(home, ['find', RT_SEM, b])).toEqual([`${b} 13`]);
  });

  it('a process killed halfway through writing a new row: the row is not there, the others are', () => {
    const home = makeHome();
    ok(home, ['insert', RT_SEM, 3000, 20]);
    expect(tool(home, ['insert', RT_SEM, 3000 + SAME_START, 21, 'torn']).signal).toBe('SIGKILL');
    expect(ok(home, ['find', RT_SEM, 3000, 3000 + SAME_START])).toEqual(['3000 20', `${3000 + SAME_START} none`]);
    expect(ok(home, ['insert', RT_SEM, 3000 + SAME_START, 22])).toEqual(['ok']);
    expect(ok(home, ['find', RT_SEM, 3000 + SAME_START])).toEqual([`${3000 + SAME_START} 22`]);
  });
});

describe('a damaged journal', () => {
  it('every command and program of the home says which file and what to do (exit 4), and nothing runs', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0); // the home and its inflight file
    const fd = openSync(join(home, 'inflight'), 'r+');
    writeSync(fd, Buffer.from('garbage!'), 0, 8, 4096); // the journal's header
    closeSync(fd);
    const said = /the journal of new objects in \S+\/inflight is damaged \(its header is not a journal's\): end this home's applications \(appshot ps, appshot stop\) and remove that file/;
    for (const args of [['run', '--', SEMTOOL, 'private', '1'], ['gc']]) {
      const r = appshot(home, args);
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toMatch(said);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    rmSync(join(home, 'inflight'));
    const r = appshot(home, ['run', '--', SEMTOOL, 'private', '1', 'rmid']);
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('private objects whose rows are in the journal, under the shim', () => {
  it('remapped: the application\'s processes share one block of vrids, across a fork and its fold, so indexes stay dense', () => {
    const home = makeHome();
    // The fork's row is a write transaction, which folds the first set's row into LMDB.
    const r = appshot(home, ['run', '--no-identity', '--', SEMTOOL, 'private', '1', 'fork', 'private', '1', 'get', '0x5e2040', '1', 'c', 'info']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').slice(0, 4)).toEqual(['id 268435456', 'id 268435457', 'id 268435458', 'maxidx 2']);
  });

  it.each(MODES)('%s: another process of the application uses and removes them; the tables and ipcs show them', async (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const holder = appshotAsync(home, ['run', ...flags, '--aid', 'jr', '--', SEMTOOL, 'pid', 'sleep', '1500', 'private', '2', 'op', '0', '3', 'private', '1', 'pid', 'sleep', '100000']);
    await waitFor(holder.out, /pid/);
    const env = { ...process.env, APPSHOT_HOME: home, APPSHOT_AID: 'jr', LD_PRELOAD: SHIM_PATH };
    // A process of the application started before the sets (its start's
    // own row, a write, folded what there was), reading its /proc/sysvipc
    // view after them: its reverse lookups read LMDB, which is folded first.
    const reader = spawn('python3', ['-c', "import sys; sys.stdin.readline(); print(open('/proc/sysvipc/sem').read(), end='')"], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    let view = '';
    reader.stdout!.on('data', (d) => (view += d));
    const read = new Promise((resolve) => reader.on('close', resolve));
    const m = await waitFor(holder.out, /^pid \d+\nid (\d+)\nok 0\nid (\d+)\npid/);
    const [first, second] = [Number(m[1]), Number(m[2])];
    reader.stdin!.end('go\n');
    await read;
    const listed = view.split('\n').slice(1).filter((l) => l.trim()).map((l) => Number(l.trim().split(/\s+/)[1]));
    expect(listed.sort()).toEqual([first, second].sort());
    // The inspector folds them into the tables first.
    const rows = tablesJson(home, ['--aid', 'jr', '--type', 'sem']) as unknown as { virtual: number; system: number }[];
    expect(rows.map((r) => r.virtual).sort()).toEqual([first, second].sort());
    if (flags.length) expect(rows.every((r) => r.virtual !== r.system)).toBe(true);
    else expect(rows.every((r) => r.virtual === r.system)).toBe(true);
    // A program joining the application: its translation finds them, its
    // IPC_RMID removes them.
    const joined = execFileSync(SEMTOOL, ['use', String(first), 'getval', '0', 'use', String(second), 'rmid', 'use', String(first), 'rmid', 'getval', '0'], { env, encoding: 'utf8' });
    expect(joined.trim().split('\n')).toEqual(['val 3', 'ok 0', 'ok 0', 'err EINVAL']);
    expect(tablesJson(home, ['--aid', 'jr', '--type', 'sem'])).toEqual([]);
    // New ones after a fold, then the application's end removes them.
    const more = execFileSync(SEMTOOL, ['private', '1', 'private', '1', 'statall'], { env, encoding: 'utf8' });
    expect(more).toMatch(/^id \d+\nid \d+\n/);
    holder.child.kill('SIGTERM');
    expect((await holder.done).code).not.toBe(null);
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
    expect(tablesJson(home, ['--aid', 'jr'])).toEqual([]);
  });
});
