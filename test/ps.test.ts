import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { procStat } from '../ts/procinfo.js';
import { type TableDb, fwdRows, openTableDb, writeTxn } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { SEMTOOL, appshot, appshotAsync, makeHome, waitFor } from './helpers.js';

const VPID = 0x10000005;

/** The rows the shim writes for a process of aid: until it does, the test
 * writes them for real processes by hand. */
function recordProcess(t: TableDb, aid: string, vpid: number, spid: number, startTicks: number): void {
  t.fwd.putSync(S.fwdKey(aid, S.RT.pid, vpid), S.fwdVal({ srid: spid, vkey: 0, skey: 0, creator: spid, createdMs: Date.now() }));
  t.rev.putSync(S.revKey(t.node, S.RT.pid, spid), S.revVal(vpid, aid));
  t.procs.putSync(S.procKey(spid), S.procVal(startTicks, aid));
}

function psJson(home: string, args: string[] = []): unknown[] {
  const r = appshot(home, ['ps', '--json', ...args]);
  if (r.code !== 0) throw new Error(`appshot ps failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('appshot ps', () => {
  it("shows each process's vpid, spid, parent as the application sees it, state and command; not those that are gone", async () => {
    const home = makeHome();
    const cmd = [SEMTOOL, 'fork', 'pid', 'sleep', '100000'];
    const app = appshotAsync(home, ['run', '--aid', 'psx', '--', ...cmd]);
    // Identity first: the child's spid, whether or not the shim records processes.
    const child = Number((await waitFor(app.out, /pid (\d+)/))[1]);
    const parent = procStat(child)!.ppid;
    const supervisor = procStat(parent)!.ppid;
    const dead = spawnSync('true').pid!;

    const t = openTableDb(home);
    writeTxn(t, () => {
      // Whatever rows the shim wrote for these processes give way to ours.
      for (const r of [...fwdRows(t, 'psx', S.RT.pid)]) t.fwd.removeSync(S.fwdKey('psx', S.RT.pid, r.vrid));
      recordProcess(t, 'psx', VPID, parent, procStat(parent)!.startTicks);
      recordProcess(t, 'psx', VPID + 1, child, procStat(child)!.startTicks);
      recordProcess(t, 'psx', VPID + 2, dead, 1);
      // A live spid started after the recorded process: a reused PID.
      recordProcess(t, 'psx', VPID + 3, process.pid, procStat(process.pid)!.startTicks + 1);
    });
    t.env.close();

    const command = cmd.join(' ');
    const expected = [
      { aid: 'psx', vpid: VPID, spid: parent, ppid: supervisor, state: 'S', command },
      { aid: 'psx', vpid: VPID + 1, spid: child, ppid: VPID, state: 'S', command },
    ];
    expect(psJson(home)).toEqual(expected);
    expect(psJson(home, ['--aid', 'psx'])).toEqual(expected);
    expect(appshot(home, ['ps', '--aid', 'other', '--json']).code).toBe(1); // no application 'other'

    const human = appshot(home, ['ps']).stdout;
    expect(human).toMatch(/^AID +VPID +SPID +PPID +STAT +COMMAND$/m);
    expect(human).toMatch(new RegExp(`^psx +${VPID + 1} +${child} +${VPID} +S +${command}$`, 'm'));
    expect(human).not.toContain(String(dead));
    expect(human).not.toContain(String(VPID + 3));

    // The forked child first: the signal the harness forwards reaches only
    // the parent, and the application lasts while the child sleeps.
    process.kill(child, 'SIGTERM');
    await app.done;
    // The end of the application removed its rows.
    expect(psJson(home)).toEqual([]);
  });

  it('shows an empty table for an AID with no processes, refuses an AID of no application with exit 1 and an invalid AID with exit 2', () => {
    const home = makeHome();
    appshot(home, ['run', '--aid', 'quiet', '--', 'true']);
    const r = appshot(home, ['ps', '--aid', 'quiet']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^AID +VPID/);
    expect(r.stdout).not.toMatch(/quiet/);
    const nobody = appshot(home, ['ps', '--aid', 'nobody']);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toMatch(/no application 'nobody'/);
    expect(appshot(home, ['ps', '--aid', '../x']).code).toBe(2);
  });
});
