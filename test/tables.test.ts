import { describe, expect, it } from 'vitest';
import { SEMTOOL, appshot, appshotAsync, makeHome, tablesJson, waitFor } from './helpers.js';

describe('appshot tables', () => {
  it('shows AID, type, virtual, system, key and creator, for people and as JSON', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'shown', '--', SEMTOOL, 'get', '0x5e4001', '1', 'c', 'private', '1', 'pid', 'sleep', '100000']);
    const pid = Number((await waitFor(app.out, /pid (\d+)/))[1]);
    const rows = tablesJson(home);
    expect(rows.map((r) => r.type).sort()).toEqual(['sem', 'sem', 'semkey']);
    expect(rows.filter((r) => r.type === 'sem').every((r) => r.aid === 'shown' && r.creator === pid)).toBe(true);
    expect(rows.filter((r) => r.type === 'sem').map((r) => r.key).sort()).toEqual([0, 0x5e4001]);
    expect(tablesJson(home, ['--type', 'key'])).toEqual([expect.objectContaining({ type: 'semkey', virtual: 0x5e4001 })]);
    expect(tablesJson(home, ['--type', 'sem']).length).toBe(2);
    expect(tablesJson(home, ['--aid', 'other'])).toEqual([]);
    const human = appshot(home, ['tables']).stdout;
    expect(human).toMatch(/AID\s*│ type\s*│ virtual\s*│ system\s*│ key\s*│ creator/);
    expect(human).toContain('0x005e4001');
    expect(human).toContain('private');
  });

  it('refuses an unknown type and an invalid AID with exit 2', () => {
    const home = makeHome();
    appshot(home, ['run', '--', 'true']);
    const r = appshot(home, ['tables', '--type', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/argument 'bogus' is invalid. Allowed choices are sem, key/);
    expect(appshot(home, ['tables', '--aid', '../x']).code).toBe(2);
  });

  it('with no tables yet says where it looked', () => {
    const home = makeHome();
    const r = appshot(home, ['tables']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`no tables at ${home}/tables.mdb`);
  });
});
