import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_PATH } from '../ts/paths.js';
import { openTableDb, writeTxn } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { SEMTOOL, appshot, appshotAsync, makeHome, tablesJson, waitFor } from './helpers.js';

/** Applications and semaphore rows written straight into the tables, as
 * a busy host would have them (kept applications, made-up system IDs). */
function fill(home: string, apps: { aid: string; state: S.AppState; rows: number }[]): void {
  appshot(home, ['run', '--', 'true']); // makes the tables
  const t = openTableDb(home);
  writeTxn(t, () => {
    let srid = 1_000_000;
    for (const a of apps) {
      t.apps.putSync(Buffer.from(a.aid, 'latin1'), S.appVal({ schema: 1, state: S.APP_STATE[a.state], flags: 0, harnessSpid: 0, harnessStart: 0, createdMs: 1_700_000_000_000, endedMs: 0, command: ['fill'] }));
      for (let v = 1; v <= a.rows; v++, srid++) {
        t.fwd.putSync(S.fwdKey(a.aid, S.RT.sem, v), S.fwdVal({ srid, vkey: 0, skey: 0, creator: 1, createdMs: 1_700_000_000_000 + v }));
        t.rev.putSync(S.revKey(t.node, S.RT.sem, srid), S.revVal(v, a.aid));
      }
    }
  });
  t.env.close();
}

const FILLED = [
  { aid: 'alpha', state: 'kept' as const, rows: 30 },
  { aid: 'beta', state: 'ended' as const, rows: 20 },
  { aid: 'gamma', state: 'kept' as const, rows: 10 },
];

describe('the table inspector', () => {
  it('filters by AID, type, state, virtual and system ID; a filter that matches nothing is an empty table and exit 0', () => {
    const home = makeHome();
    fill(home, FILLED);
    expect(tablesJson(home, ['--type', 'sem']).length).toBe(60);
    expect(tablesJson(home, ['--aid', 'beta']).length).toBe(20);
    expect(tablesJson(home, ['--state', 'kept']).map((r) => r.aid).filter((a, i, l) => l.indexOf(a) === i)).toEqual(['alpha', 'gamma']);
    expect(tablesJson(home, ['--state', 'ended', '--type', 'sem', '--vrid', '7'])).toEqual([expect.objectContaining({ aid: 'beta', virtual: 7 })]);
    expect(tablesJson(home, ['--vrid', '25']).map((r) => r.aid)).toEqual(['alpha']);
    const none = appshot(home, ['tables', '--aid', 'nobody']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no application 'nobody'/);
    const empty = appshot(home, ['tables', '--aid', 'beta', '--type', 'msg']);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toMatch(/AID.*type.*virtual/);
    expect(tablesJson(home, ['--state', 'running', '--type', 'sem'])).toEqual([]);
    expect(appshot(home, ['tables', '--type', 'msg', '--csv']).stdout).toBe('aid,type,virtual,system,key,creator,created\n');
  });

  it('--srid answers which application and virtual ID own a system ID (the reverse table)', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'owner', '--no-identity', '--', SEMTOOL, 'get', '0x5e4101', '1', 'c', 'pid', 'sleep', '100000']);
    await waitFor(app.out, /pid/);
    const row = tablesJson(home, ['--type', 'sem'])[0];
    const found = tablesJson(home, ['--srid', String(row.system), '--type', 'sem']);
    expect(found).toEqual([expect.objectContaining({ aid: 'owner', type: 'sem', virtual: row.virtual, system: row.system })]);
    // Without --type: every type is asked.
    expect(tablesJson(home, ['--srid', String(row.system)]).map((r) => r.type)).toContain('sem');
    expect(tablesJson(home, ['--srid', '999999999', '--type', 'sem'])).toEqual([]);
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('sorts, pages, and says where the next page is', () => {
    const home = makeHome();
    fill(home, FILLED);
    const all = tablesJson(home, ['--type', 'sem']);
    const page2 = tablesJson(home, ['--type', 'sem', '--limit', '25', '--page', '2']);
    expect(page2).toEqual(all.slice(25, 50));
    const bySystemDesc = tablesJson(home, ['--type', 'sem', '--sort', 'system', '--desc', '--limit', '3']);
    expect(bySystemDesc.map((r) => r.system)).toEqual([...all.map((r) => r.system)].sort((a, b) => b - a).slice(0, 3));
    const text = appshot(home, ['tables', '--type', 'sem', '--limit', '10']).stdout;
    expect(text).toContain('rows 1-10; the next page: --page 2');
    const last = appshot(home, ['tables', '--limit', '10', '--page', '6']).stdout;
    expect(last).toMatch(/rows 51-60 of \d+$/m);
  });

  it('--apps lists the applications: AID, state, processes, created, template', () => {
    const home = makeHome();
    fill(home, FILLED);
    const apps = JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout) as { aid: string; state: string; processes: number; template: null }[];
    expect(apps.filter((a) => a.aid !== 'app-1')).toEqual([
      expect.objectContaining({ aid: 'alpha', state: 'kept', processes: 0, template: null }),
      expect.objectContaining({ aid: 'beta', state: 'ended' }),
      expect.objectContaining({ aid: 'gamma', state: 'kept' }),
    ]);
    expect(appshot(home, ['tables', '--apps', '--state', 'ended', '--csv']).stdout.split('\n').filter(Boolean).map((l) => l.split(',')[0])).toEqual(['aid', 'app-1', 'beta']);
    expect(appshot(home, ['tables', '--apps']).stdout).toMatch(/AID.*state.*processes.*created.*template/);
  });

  it('--json and --csv stream every row', () => {
    const home = makeHome();
    fill(home, [{ aid: 'big', state: 'kept', rows: 20_000 }]);
    const json = JSON.parse(appshot(home, ['tables', '--json', '--type', 'sem']).stdout);
    expect(json.length).toBe(20_000);
    expect(json[19_999]).toMatchObject({ aid: 'big', virtual: 20_000 });
    const csv = appshot(home, ['tables', '--csv', '--type', 'sem']).stdout.split('\n').filter(Boolean);
    expect(csv.length).toBe(20_001);
    expect(csv[1]).toBe(`big,sem,1,1000000,private,1,${new Date(1_700_000_000_001).toISOString()}`);
  });

  it('--watch redraws until interrupted (into a pipe, frame after frame)', async () => {
    const home = makeHome();
    fill(home, FILLED);
    const w = appshotAsync(home, ['tables', '--watch', '0.2', '--limit', '5']);
    await waitFor(w.out, /(appshot tables, every 0\.2 s[^]*){3}/);
    w.child.kill('SIGINT');
    const r = await w.done;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('appshot tables, every 0.2 s');
    expect(r.stdout).toContain('rows 1-5');
  });

  it('--verify: consistent tables exit 0; each inconsistency is one line naming the rows, exit 5; --repair fixes what is safe', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'real', '--', SEMTOOL, 'get', '0x5e4102', '1', 'c', 'private', '1', 'pid', 'sleep', '100000']);
    await waitFor(app.out, /pid/);
    const ok = appshot(home, ['tables', '--verify']);
    expect(ok.stdout).toContain('the tables are consistent');
    expect(ok.code).toBe(0);
    const sems = tablesJson(home, ['--aid', 'real', '--type', 'sem']);
    const t = openTableDb(home);
    writeTxn(t, () => {
      // A reverse row lost; a mapping of an object the kernel never had; a
      // process that is gone; a second application claiming the same set.
      t.rev.removeSync(S.revKey(t.node, S.RT.sem, sems[0].system));
      t.fwd.putSync(S.fwdKey('real', S.RT.sem, 4242), S.fwdVal({ srid: 987654, vkey: 0, skey: 0, creator: 1, createdMs: 1 }));
      t.rev.putSync(S.revKey(t.node, S.RT.sem, 987654), S.revVal(4242, 'real'));
      t.fwd.putSync(S.fwdKey('real', S.RT.pid, 77777), S.fwdVal({ srid: 4_000_000, vkey: 0, skey: 0, creator: 1, createdMs: 1 }));
      t.rev.putSync(S.revKey(t.node, S.RT.pid, 4_000_000), S.revVal(77777, 'real'));
      t.fwd.putSync(S.fwdKey('thief', S.RT.sem, 1), S.fwdVal({ srid: sems[1].system, vkey: 0, skey: sems[1].key ?? 0, creator: 1, createdMs: 1 }));
    });
    t.env.close();
    const bad = appshot(home, ['tables', '--verify']);
    expect(bad.code).toBe(5);
    expect(bad.stdout).toContain(`real sem ${sems[0].virtual} -> ${sems[0].system} has no reverse row`);
    expect(bad.stdout).toContain('real sem 4242 -> 987654: the kernel has no semaphore set 987654');
    expect(bad.stdout).toContain('real pid 77777 -> 4000000: process 4000000 has no process record');
    expect(bad.stdout).toMatch(new RegExp(`two mappings share semaphore set ${sems[1].system}: .*thief sem 1 -> ${sems[1].system}`));
    expect(bad.stdout).toMatch(/4 problem\(s\) found, 0 repaired/);
    const fixed = appshot(home, ['tables', '--repair']);
    expect(fixed.stdout).toMatch(/repaired: wrote the reverse row/);
    expect(fixed.stdout).toMatch(/repaired: dropped thief sem 1/);
    expect(fixed.code).toBe(0);
    const again = appshot(home, ['tables', '--verify']);
    expect(again.stdout).toContain('the tables are consistent');
    expect(again.code).toBe(0);
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('tables written by a newer appshot: a clear error naming both versions, nothing written', () => {
    const home = makeHome();
    appshot(home, ['run', '--', 'true']);
    const t = openTableDb(home);
    writeTxn(t, () => t.meta.putSync(Buffer.from('version'), S.u32(S.SCHEMA_VERSION + 1)));
    t.env.close();
    const file = join(home, S.TABLES_FILE);
    const before = readFileSync(file);
    for (const args of [['tables'], ['run', '--', 'true'], ['gc']]) {
      const r = appshot(home, args);
      expect(r.stderr).toContain(`have schema version ${S.SCHEMA_VERSION + 1}, and this appshot reads version ${S.SCHEMA_VERSION}`);
      expect(r.code).toBe(5);
    }
    expect(readFileSync(file).equals(before)).toBe(true);
  });

  it('a corrupted or truncated environment file: a clear error, never a crash dump', () => {
    for (const damage of ['truncate', 'garbage', 'zeros']) {
      const home = makeHome();
      fill(home, [{ aid: 'x', state: 'kept', rows: 5000 }]);
      const file = join(home, S.TABLES_FILE);
      if (damage === 'truncate') truncateSync(file, Math.floor(statSync(file).size / 3));
      else {
        const b = readFileSync(file);
        b.fill(damage === 'zeros' ? 0 : 0x5a, 0, 8192);
        writeFileSync(file, b);
      }
      const r = spawnSync(process.execPath, [CLI_PATH, 'tables'], { env: { ...process.env, APPSHOT_HOME: home }, encoding: 'utf8' });
      expect(r.signal, damage).toBeNull();
      expect(r.stderr, damage).toMatch(/appshot: .*tables\.mdb.*(damaged|truncated|not an LMDB)/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.status, damage).toBe(4);
    }
  });
});
