import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SHIM_PATH } from '../ts/paths.js';
import { openTableDb, writeTxn } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { MSGTOOL, SEMTOOL, SHMTOOL, appshot, appshotAsync, makeHome, tablesJson, waitFor } from './helpers.js';

describe('appshot tables', () => {
  it('shows AID, type, virtual, system, key and creator, for people and as JSON', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'shown', '--', SEMTOOL, 'get', '0x5e4001', '1', 'c', 'private', '1', 'pid', 'sleep', '100000']);
    const pid = Number((await waitFor(app.out, /pid (\d+)/))[1]);
    const rows = tablesJson(home).filter((r) => r.type !== 'pid');
    expect(rows.map((r) => r.type).sort()).toEqual(['sem', 'sem', 'semkey']);
    expect(rows.filter((r) => r.type === 'sem').every((r) => r.aid === 'shown' && r.creator === pid)).toBe(true);
    expect(rows.filter((r) => r.type === 'sem').map((r) => r.key).sort()).toEqual([0, 0x5e4001]);
    expect(tablesJson(home, ['--type', 'key'])).toEqual([expect.objectContaining({ type: 'semkey', virtual: 0x5e4001 })]);
    expect(tablesJson(home, ['--type', 'sem']).length).toBe(2);
    expect(appshot(home, ['tables', '--aid', 'other', '--json']).code).toBe(1); // no application 'other'
    const human = appshot(home, ['tables']).stdout;
    expect(human).toMatch(/^AID +type +virtual +system +key +creator +created$/m);
    expect(human).toContain('0x005e4001');
    expect(human).toContain('private');
  });

  it('--type shm and --type msg show segments and queues as for semaphores; a segment removed while attached says so', async () => {
    const home = makeHome();
    const script = `${MSGTOOL} get 0x5e4002 c >/dev/null && exec ${SHMTOOL} get 0x5e4002 4096 c private 100 attach - rmid pid sleep 100000`;
    const app = appshotAsync(home, ['run', '--aid', 'both', '--', 'sh', '-c', script]);
    await waitFor(app.out, /^pid/m);
    const shm = tablesJson(home, ['--type', 'shm']);
    const msg = tablesJson(home, ['--type', 'msg']);
    expect(shm.map((r) => r.key).sort()).toEqual([0, 0x5e4002]);
    expect(shm.find((r) => r.key === 0)!.removed).toBe(true);
    expect(shm.find((r) => r.key === 0x5e4002)!.removed).toBe(false);
    expect(msg).toEqual([expect.objectContaining({ aid: 'both', type: 'msg', key: 0x5e4002 })]);
    expect(tablesJson(home, ['--type', 'shmkey'])).toEqual([expect.objectContaining({ virtual: 0x5e4002, system: 0x5e4002 })]);
    expect(tablesJson(home, ['--type', 'key']).map((r) => r.type).sort()).toEqual(['msgkey', 'shmkey']);
    const human = appshot(home, ['tables', '--type', 'shm']).stdout;
    expect(human).toContain('removed');
    expect(human).toContain('0x005e4002');
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('refuses an unknown type and an invalid AID with exit 2', () => {
    const home = makeHome();
    appshot(home, ['run', '--', 'true']);
    const r = appshot(home, ['tables', '--type', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/argument 'bogus' is invalid. Allowed choices are sem, shm, msg, pid, port, publish, key/);
    expect(appshot(home, ['tables', '--aid', '../x']).code).toBe(2);
  });

  it('with no tables yet prints none, exit 0, and makes nothing (issue 17; more in rough-edges.test.ts)', () => {
    const home = makeHome();
    const r = appshot(home, ['tables', '--json']);
    expect(r).toMatchObject({ code: 0, stdout: '[]\n', stderr: '' });
    expect(readdirSync(home)).toEqual([]);
  });
});

describe('tables written by another version', () => {
  it('are refused by appshot and by the shim, naming both versions, and nothing is written', () => {
    const home = makeHome();
    appshot(home, ['run', '--', 'true']);
    const t = openTableDb(home);
    writeTxn(t, () => t.meta.putSync(Buffer.from('version'), S.u32(99)));
    t.env.close();
    const data = `${home}/${S.TABLES_FILE}`;
    const before = readFileSync(data);
    const r = appshot(home, ['run', '--aid', 'newer', '--', 'true']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`have schema version 99, and this appshot reads version ${S.SCHEMA_VERSION}`);
    let shimErr = '';
    try {
      execFileSync(SEMTOOL, ['pid'], { env: { ...process.env, APPSHOT_HOME: home, APPSHOT_AID: 'newer', LD_PRELOAD: SHIM_PATH }, stdio: 'pipe' });
    } catch (err) {
      shimErr = (err as { stderr: Buffer }).stderr.toString();
    }
    expect(shimErr).toContain(`have schema version 99 (this shim reads ${S.SCHEMA_VERSION})`);
    expect(readFileSync(data).equals(before)).toBe(true);
  });
});
