import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SHIM_PATH, builtProgram } from '../ts/paths.js';
import { MODES, SEMTOOL, appshot, appshotAsync, appshotLater, kernelSems, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

/**
 * The journal of new objects (native/core/journal.h): the rows of private
 * SysV objects, kept in the home's inflight file instead of one LMDB commit
 * each. journaltool works on the real shared file, lock and slots from
 * separate processes, and dies where a holder of the lock may.
 */
const JOURNALTOOL = builtProgram('journaltool');
const KEYRACE = join(import.meta.dirname, 'fixtures', 'keyrace.py');
const RT_SEM = 1;
/** vrids this far apart start their probe at the same slot. */
const SAME_START = 32768;

function tool(home: string, args: (string | number)[]): { code: number | null; signal: NodeJS.Signals | null; out: string[] } {
  const r = spawnSync(JOURNALTOOL, [home, 'app', ...args.map(String)], { encoding: 'utf8' });
  return { code: r.status, signal: r.signal, out: r.stdout.trim().split('\n').filter(Boolean) };
}

/** The slots in use in the home's journal (every application's). */
const slotsUsed = (home: string) => spawnSync(JOURNALTOOL, [home, 'app', 'used'], { encoding: 'utf8' }).stdout.trim();

/** The environment of a program joining application aid of home (the shim preloaded, as `appshot run` gives it). */
const joining = (home: string, aid: string) => ({ ...process.env, APPSHOT_HOME: home, APPSHOT_AID: aid, LD_PRELOAD: SHIM_PATH });

/** A holder's end, once another process removed its sets: no row of them in the tables, and the holder stopped
 * leaves no set of its own in the kernel. */
async function endHolder(home: string, aid: string, holder: ReturnType<typeof appshotAsync>, before: Set<number>): Promise<void> {
  expect(tablesJson(home, ['--aid', aid, '--type', 'sem'])).toEqual([]);
  holder.child.kill('SIGTERM');
  await holder.done;
  expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
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

describe('keyed rows in the journal, from separate processes', () => {
  it('a keyed row is found by its vrid and by its srid; a stale row of the same object is replaced; a drop takes both', () => {
    const home = makeHome();
    expect(ok(home, ['keyed', RT_SEM, 5000, 70000, 4660])).toEqual(['ok']);
    expect(ok(home, ['find', RT_SEM, 5000])).toEqual(['5000 70000']);
    expect(ok(home, ['findsrid', RT_SEM, 70000, 70001])).toEqual(['70000 5000', '70001 none']);
    expect(ok(home, ['used'])).toEqual(['2']);
    // The kernel handed ID 70000 out again: the old row was stale.
    expect(ok(home, ['keyed', RT_SEM, 5001, 70000, 4660])).toEqual(['ok']);
    expect(ok(home, ['find', RT_SEM, 5000, 5001])).toEqual(['5000 none', '5001 70000']);
    expect(ok(home, ['findsrid', RT_SEM, 70000])).toEqual(['70000 5001']);
    // A private row is found by vrid only.
    expect(ok(home, ['insert', RT_SEM, 5002, 70002])).toEqual(['ok']);
    expect(ok(home, ['findsrid', RT_SEM, 70002])).toEqual(['70002 none']);
    expect(ok(home, ['drop', RT_SEM, 5001, 70000])).toEqual(['dropped']);
    expect(ok(home, ['findsrid', RT_SEM, 70000])).toEqual(['70000 none']);
    expect(ok(home, ['drop', RT_SEM, 5002, 70002])).toEqual(['dropped']);
    expect(ok(home, ['used'])).toEqual(['0']);
  });

  it.each(['moved', 'torn'])('a process killed holding the lock while it drops a keyed row (%s): the next one repairs; found neither way, the others both ways', (point) => {
    const home = makeHome();
    // Rows whose entries share probe starts, so a drop moves entries back.
    const rows = [[6000, 80000], [6000 + SAME_START, 80000 + SAME_START], [6001, 80001]];
    for (const [vrid, srid] of rows) ok(home, ['keyed', RT_SEM, vrid, srid, 7]);
    expect(tool(home, ['drop', RT_SEM, 6000, 80000, point]).signal).toBe('SIGKILL');
    expect(ok(home, ['find', RT_SEM, ...rows.map((r) => r[0])])).toEqual(['6000 none', `${6000 + SAME_START} ${80000 + SAME_START}`, '6001 80001']);
    expect(ok(home, ['findsrid', RT_SEM, ...rows.map((r) => r[1])])).toEqual(['80000 none', `${80000 + SAME_START} ${6000 + SAME_START}`, '80001 6001']);
    expect(ok(home, ['keyed', RT_SEM, 6002, 80000, 7])).toEqual(['ok']);
    expect(ok(home, ['findsrid', RT_SEM, 80000])).toEqual(['80000 6002']);
  });
});

describe('private sets left by creators killed between the kernel\'s call and their record\'s ID', () => {
  const newSets = (before: Set<number>) => kernelSems().map((s) => s.semid).filter((id) => !before.has(id)).sort();
  const idOf = (line: string) => Number(line.split(' ')[1]);

  it('two such creators: both their sets go; with a live creator in the same place, nothing goes until it is gone too', () => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    ok(home, ['die-creating']);
    ok(home, ['die-creating']);
    expect(ok(home, ['recover'])).toEqual(['removed 2', expect.stringMatching(/^removed semaphore set \d+ that process \d+ of application 'app' created and did not record before it died$/)]);
    expect(newSets(before)).toEqual([]);
    // A creator still between its call and its ID: its set cannot be told from the dead one's.
    const dead = idOf(ok(home, ['die-creating'])[0]);
    const [, live, pid] = ok(home, ['hold-creating'])[0].split(' ').map(Number);
    expect(ok(home, ['recover'])[0]).toBe('removed 0');
    expect(newSets(before)).toEqual([dead, live].sort());
    process.kill(pid, 'SIGKILL');
    // Ended once the kernel has it as a zombie or gone (the signal is not handled at once).
    const ended = () => { try { return /\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'latin1')); } catch { return true; } };
    for (const until = Date.now() + 5000; !ended() && Date.now() < until; ) execFileSync('sleep', ['0.02']);
    expect(ok(home, ['recover'])[0]).toBe('removed 2');
    expect(newSets(before)).toEqual([]);
  });

  it('one such creator and a private set another program made in the same seconds: neither is removed (which is whose cannot be told)', () => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const dead = idOf(ok(home, ['die-creating'])[0]);
    const other = idOf(runNative(['private', '1']).stdout.trim());
    expect(ok(home, ['recover'])[0]).toBe('removed 0');
    expect(newSets(before)).toEqual([dead, other].sort());
    for (const id of [dead, other]) runNative(['use', String(id), 'rmid']);
    expect(newSets(before)).toEqual([]);
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
  it('remapped: the application\'s processes share one block of vrids, across a fork and a fold, so indexes stay dense', () => {
    const home = makeHome();
    // The keyed set is made the LMDB way, whose write transaction folds the private sets' rows into LMDB.
    const r = appshot(home, ['run', '--no-identity', '--', SEMTOOL, 'private', '1', 'fork', 'private', '1', 'get', '0x5e2040', '1', 'c', 'info', 'private', '1']);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.split('\n');
    expect(out.slice(0, 4)).toEqual(['id 268435456', 'id 268435457', 'id 268435458', 'maxidx 2']);
    expect(out[5]).toBe('id 268435459'); // after info's second line
  });

  // A process's row is written at its start and its fork, and goes at its reap: transactions that read and write no
  // SysV row leave the journal's rows where they are (folded, each one's IPC_RMID would be an LMDB commit of its own).
  it.each(MODES)('%s: a fork, a new program and a reap leave the rows in the journal; IPC_RMID then finds them there', async (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const holder = appshotAsync(home, ['run', ...flags, '--aid', 'jf', '--', SEMTOOL, 'private', '1', 'private', '1', 'pid', 'sleep', '100000']);
    const m = await waitFor(holder.out, /^id (\d+)\nid (\d+)\npid/);
    expect(slotsUsed(home)).toBe('2');
    const env = joining(home, 'jf');
    // Its own row at its start, its child's at the fork and the reap.
    expect(execFileSync(SEMTOOL, ['fork', 'pid'], { env, encoding: 'utf8' })).toMatch(/^pid \d+\n$/);
    expect(slotsUsed(home)).toBe('2');
    const removed = execFileSync(SEMTOOL, ['use', m[1], 'rmid', 'use', m[2], 'rmid'], { env, encoding: 'utf8' });
    expect(removed.trim().split('\n')).toEqual(['ok 0', 'ok 0']);
    expect(slotsUsed(home)).toBe('0');
    await endHolder(home, 'jf', holder, before);
  });

  it.each(MODES)('%s: the IPC_RMID of an object whose row is in LMDB leaves the journal\'s rows there', async (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    // SEM_INFO reads the application's rows as a whole: the first set's row is folded into LMDB first.
    const holder = appshotAsync(home, ['run', ...flags, '--aid', 'jl', '--', SEMTOOL, 'private', '1', 'info', 'private', '1', 'pid', 'sleep', '100000']);
    const m = await waitFor(holder.out, /^id (\d+)\n[^]*\nid (\d+)\npid/);
    expect(slotsUsed(home)).toBe('1');
    const env = joining(home, 'jl');
    expect(execFileSync(SEMTOOL, ['use', m[1], 'rmid'], { env, encoding: 'utf8' }).trim()).toBe('ok 0');
    expect(slotsUsed(home)).toBe('1');
    expect(execFileSync(SEMTOOL, ['use', m[2], 'rmid', 'use', m[1], 'getval', '0'], { env, encoding: 'utf8' }).trim().split('\n')).toEqual(['ok 0', 'err EINVAL']);
    expect(slotsUsed(home)).toBe('0');
    await endHolder(home, 'jl', holder, before);
  });

  it.each(MODES)('%s: another process of the application uses and removes them; the tables and ipcs show them', async (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const holder = appshotAsync(home, ['run', ...flags, '--aid', 'jr', '--', SEMTOOL, 'pid', 'sleep', '1500', 'private', '2', 'op', '0', '3', 'private', '1', 'pid', 'sleep', '100000']);
    await waitFor(holder.out, /pid/);
    const env = joining(home, 'jr');
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

describe('keyed objects whose rows are in the journal, under the shim', () => {
  const JOURNALED_KEY = 0x5e2060;

  it.each(MODES)('%s: a key the application has mapped: its next set\'s row is the journal\'s; by key another process gets it, uses it and removes it', async (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const key = String(JOURNALED_KEY);
    // The first create claims the key (an LMDB write); after its removal the key stays the application's.
    const holder = appshotAsync(home, ['run', ...flags, '--aid', 'jk', '--', SEMTOOL, 'get', key, '2', 'cx', 'rmid',
      'get', key, '2', 'cx', 'setval', '1', '7', 'get', key, '2', 'c', 'get', key, '2', 'cx', 'pid', 'sleep', '100000']);
    const m = await waitFor(holder.out, /^id (\d+)\nok 0\nid (\d+)\nok 0\nid (\d+)\nerr EEXIST\npid \d+/);
    const vrid = Number(m[2]);
    expect(Number(m[3])).toBe(vrid); // found by its srid in the journal
    expect(ok(home, ['used'])).toEqual(['2']); // the row and its entry by srid: no LMDB commit made it
    const [row] = tablesJson(home, ['--aid', 'jk', '--type', 'sem']) as unknown as { virtual: number; system: number; key: number }[];
    expect(row).toMatchObject({ virtual: vrid, key: JOURNALED_KEY });
    const [keyRow] = tablesJson(home, ['--aid', 'jk', '--type', 'semkey']) as unknown as { virtual: number; system: number }[];
    expect(keyRow.virtual).toBe(JOURNALED_KEY);
    expect(kernelSems().find((s) => s.semid === row.system)).toMatchObject({ key: keyRow.system, nsems: 2 });
    if (flags.length) expect(row.system).not.toBe(vrid);
    else expect(row.system).toBe(vrid);
    const env = joining(home, 'jk');
    const joined = execFileSync(SEMTOOL, ['get', key, '2', '-', 'getval', '1', 'rmid', 'get', key, '2', '-', 'get', key, '1', 'cx', 'rmid'], { env, encoding: 'utf8' });
    expect(joined.trim().split('\n')).toEqual([`id ${vrid}`, 'val 7', 'ok 0', 'err ENOENT', expect.stringMatching(/^id \d+$/), 'ok 0']);
    expect(tablesJson(home, ['--aid', 'jk', '--type', 'sem'])).toEqual([]);
    holder.child.kill('SIGTERM');
    expect((await holder.done).code).not.toBe(null);
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
    expect(tablesJson(home, ['--aid', 'jk'])).toEqual([]);
  });

  it.each(MODES)('%s: a process killed between creating a set under a mapped key and its row (holding the journal\'s lock): the next get of the key removes it and creates the set', async (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const key = String(JOURNALED_KEY + 1);
    const holder = appshotAsync(home, ['run', ...flags, '--aid', 'jc', '--', SEMTOOL, 'get', key, '1', 'cx', 'rmid', 'pid', 'sleep', '100000']);
    await waitFor(holder.out, /pid \d+/);
    const env = joining(home, 'jc');
    const died = spawnSync(SEMTOOL, ['get', key, '1', 'cx'], { env: { ...env, APPSHOT_FAULT: 'after-create' }, encoding: 'utf8' });
    expect(died.signal).toBe('SIGKILL');
    expect(kernelSems().filter((s) => !before.has(s.semid))).toHaveLength(1); // its set, under the application's system key
    const next = spawnSync(SEMTOOL, ['get', key, '1', 'cx', 'setval', '0', '5', 'getval', '0'], { env, encoding: 'utf8' });
    expect(next.status, next.stderr).toBe(0);
    expect(next.stdout.trim().split('\n').slice(1)).toEqual(['ok 0', 'val 5']);
    const left = kernelSems().filter((s) => !before.has(s.semid));
    expect(left).toHaveLength(1);
    const [row] = tablesJson(home, ['--aid', 'jc', '--type', 'sem']) as unknown as { system: number }[];
    expect(left[0].semid).toBe(row.system);
    holder.child.kill('SIGTERM');
    await holder.done;
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
    expect(tablesJson(home, ['--aid', 'jc'])).toEqual([]);
  });

  it.each(MODES)('%s: processes getting the same keys at once, with LMDB writers coming all along, share one set per key', async (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const [keys, workers, ops, rounds] = [8, 6, 3, 40];
    const r = await appshotLater(home, ['run', ...flags, '--aid', 'race', '--', 'python3', KEYRACE,
      String(JOURNALED_KEY + 0x100), String(keys), String(workers), String(ops), String(rounds), SEMTOOL]);
    expect(r.code, r.stderr).toBe(0);
    const full = Array(keys).fill(workers * ops).join(' ');
    expect(r.stdout.trim().split('\n')).toEqual(Array.from({ length: rounds }, (_, i) => `round ${i + 1}: ${full}`));
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
    const verify = appshot(home, ['tables', '--verify']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });
});
