import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SUPERVISOR_PATH } from '../ts/paths.js';
import { procStat } from '../ts/procinfo.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { SEMTOOL, SHMTOOL, appshot, appshotAsync, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

interface AppRow {
  aid: string;
  state: string;
}
const apps = (home: string): AppRow[] => JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout);
const stateOf = (home: string, aid: string) => apps(home).find((a) => a.aid === aid)?.state;
const psJson = (home: string) => JSON.parse(appshot(home, ['ps', '--json']).stdout) as { aid: string; spid: number; unsupervised?: string }[];

/** A program holding a semaphore set of key KEY, blocked in a semop until
 * the test raises the set's value; then it uses the set again. */
const HOLDER = (key: string) => [SEMTOOL, 'get', key, '1', 'c', 'pid', 'op', '0', '-1', 'getval', '0', 'get', key, '1', 'cx', 'op', '0', '1', 'getval', '0'];

/** Its set's system ID, from the tables. */
function semOf(home: string, aid: string): number {
  const rows = tablesJson(home, ['--aid', aid, '--type', 'sem']);
  expect(rows).toHaveLength(1);
  return rows[0].system;
}

/** The children of pid, as /proc lists them (zombies not yet reaped too). */
function onlyChildOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim();
  } catch {
    return '';
  }
}

/** Wakes the holder: +1 on its set, by system ID, outside appshot. */
function release(srid: number): void {
  expect(runNative(['use', String(srid), 'op', '0', '1']).stdout).toContain('ok');
}

describe('a dead supervisor or harness does not end a live application', () => {
  it.each([
    ['identity', []],
    ['remapped (--no-identity)', ['--no-identity']],
  ])('kill -9 of the supervisor, %s: the program keeps its set; the harness waits for it and cleans up after it', async (_mode, flags) => {
    const home = makeHome();
    const h = appshotAsync(home, ['run', ...flags, '--aid', 'orphan', '--', ...HOLDER('0x5e1f01')]);
    await waitFor(h.out, /pid (\d+)/);
    // What it printed is its vpid; the kernel's is in ps (the same in identity mode).
    const pid = psJson(home).find((p) => p.aid === 'orphan')!.spid;
    const supervisor = procStat(pid)!.ppid;
    expect(readlinkSync(`/proc/${supervisor}/exe`)).toBe(SUPERVISOR_PATH);
    const srid = semOf(home, 'orphan');

    process.kill(supervisor, 'SIGKILL');
    await waitFor(h.err, /still has 1 process\(es\) its command's supervisor does not wait for \(\d+\); waiting for them/);
    expect(h.err()).toMatch(/the supervisor of application 'orphan' \(pid \d+\) was killed by SIGKILL; its command's status cannot be known \(appshot exits 1\)/);
    // Nothing of it was cleaned up: the set, its rows, its state.
    expect(kernelObjects('sem').has(srid)).toBe(true);
    expect(stateOf(home, 'orphan')).toBe('running');
    expect(semOf(home, 'orphan')).toBe(srid);
    expect(psJson(home)).toEqual([expect.objectContaining({ aid: 'orphan', spid: pid, unsupervised: 'no supervisor' })]);
    expect(appshot(home, ['ps']).stdout).toMatch(/'orphan' runs unsupervised \(no supervisor\): its supervisor is gone; its harness waits/);
    expect(appshot(home, ['gc']).stdout).toMatch(/nothing to clean up/);
    expect(kernelObjects('sem').has(srid)).toBe(true);

    release(srid);
    const r = await h.done;
    // Its own set all along: the wait ended, the key was still its own (EEXIST), the set still usable.
    expect(r.stdout).toMatch(/pid \d+\nok 0\nval 0\nerr EEXIST\nok 0\nval 1\n/);
    expect(r.code).toBe(1);
    // Its last process gone, the harness cleaned up.
    expect(kernelObjects('sem').has(srid)).toBe(false);
    expect(stateOf(home, 'orphan')).toBe('ended');
    expect(tablesJson(home, ['--aid', 'orphan'])).toEqual([]);
  });

  it("a command that had ended before its supervisor was killed gives its status; the daemon it left is waited for", async () => {
    const home = makeHome();
    // The command forks a child that holds the set and exits 7 at once; the supervisor reaps it.
    const h = appshotAsync(home, ['run', '--aid', 'daemonic', '--', 'sh', '-c', `${HOLDER('0x5e1f02').join(' ')} & exit 7`]);
    const pid = Number((await waitFor(h.out, /pid (\d+)/))[1]);
    // Once the supervisor has reaped sh, the holder is its only child.
    const supervisor = Number((await waitFor(() => onlyChildOf(procStat(pid)!.ppid), new RegExp(`^${pid}$`)))[0] && procStat(pid)!.ppid);
    expect(readlinkSync(`/proc/${supervisor}/exe`)).toBe(SUPERVISOR_PATH);
    const srid = semOf(home, 'daemonic');
    process.kill(supervisor, 'SIGKILL');
    await waitFor(h.err, /was killed by SIGKILL; its command had exited with status 7/);
    expect(kernelObjects('sem').has(srid)).toBe(true);
    release(srid);
    const r = await h.done;
    expect(r.stdout).toMatch(/ok 0\nval 0\nerr EEXIST\nok 0\nval 1\n/);
    expect(r.code).toBe(7);
    expect(kernelObjects('sem').has(srid)).toBe(false);
  });

  it('kill -9 of the harness: the application runs on, ps says so, gc leaves it until its last process exits', async () => {
    const home = makeHome();
    const h = appshotAsync(home, ['run', '--aid', 'headless', '--', ...HOLDER('0x5e1f03')]);
    const pid = Number((await waitFor(h.out, /pid (\d+)/))[1]);
    const srid = semOf(home, 'headless');
    h.child.kill('SIGKILL');
    await waitFor(() => appshot(home, ['ps']).stdout, /'headless' runs unsupervised \(no harness\): its harness is gone; nothing cleans up after its last process but `appshot gc`/);
    expect(psJson(home)).toEqual([expect.objectContaining({ aid: 'headless', spid: pid, unsupervised: 'no harness' })]);
    expect(appshot(home, ['gc']).stdout).toMatch(/nothing to clean up/);
    expect(kernelObjects('sem').has(srid)).toBe(true);
    expect(stateOf(home, 'headless')).toBe('running');

    release(srid);
    const r = await h.done;
    expect(r.stdout).toMatch(/ok 0\nval 0\nerr EEXIST\nok 0\nval 1\n/);
    expect(appshot(home, ['gc']).stdout).toMatch(/ended 'headless': removed 1 semaphore set/);
    expect(kernelObjects('sem').has(srid)).toBe(false);
  });
});

describe("the 'template.' AIDs are appshot's", () => {
  it('refuses run, restore, template create and snapshot under them (exit 2); the template keeps its shared segment', async () => {
    const home = makeHome();
    // A segment no one can write: a template shares it.
    const h = appshotAsync(home, ['run', '--aid', 'ro', '--', SHMTOOL, 'get', '0x5e1f10', '4096', 'c', 'setmode', '0400', 'pid', 'sleep', '100000']);
    await waitFor(h.out, /pid \d+/);
    const snap = join(home, 'ro.snap');
    expect(appshot(home, ['snapshot', 'ro', '--ipc-only', '-o', snap, '--stop']).code).toBe(0);
    await h.done;
    const made = appshot(home, ['template', 'create', 'tp', '--from', snap]);
    expect(made.code, made.stderr).toBe(0);
    const [segment] = tablesJson(home, ['--aid', 'template.tp', '--type', 'shm']);
    expect(kernelObjects('shm').has(segment.system)).toBe(true);

    const refused = (args: string[], message: RegExp) => {
      const r = appshot(home, args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    };
    const reserved = /^appshot: 'template\.tp' cannot name an application: AIDs starting with 'template\.' are appshot's entries for templates \(that one would be template 'tp', whose shared segments it would take over\); choose an AID that does not start with 'template\.'/;
    refused(['run', '--aid', 'template.tp', '--', 'true'], reserved);
    refused(['restore', snap, '--aid', 'template.tp'], reserved);
    refused(['template', 'create', 'template.x', '--from', snap], /'template\.x' cannot name a template: its clones would be named template\.x-N/);
    refused(['snapshot', 'template.tp', '--ipc-only', '-o', join(home, 'tp.snap'), '--stop'], /'template\.tp' is the entry of template 'tp', not an application: there is nothing to snapshot/);

    expect(kernelObjects('shm').has(segment.system)).toBe(true);
    expect(stateOf(home, 'template.tp')).toBe('template');
    expect(appshot(home, ['template', 'rm', 'tp']).code).toBe(0);
    expect(kernelObjects('shm').has(segment.system)).toBe(false);
  });
});

/** A process's state letter (T: stopped), or 'gone'. */
const stateLetter = (pid: number) => procStat(pid)?.state ?? 'gone';

/** The processes whose command line contains text. */
function processesWith(text: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1').includes(text)) found.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return found;
}

describe('a snapshot killed while it holds the application stopped', () => {
  /** An application holding a 512 MiB segment (so writing its snapshot
   * takes a while), and a snapshot of it started: resolves once the
   * snapshot has stopped the application. */
  async function snapshotUnderWay(aid: string) {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', aid, '--', SHMTOOL, 'private', String(512 << 20), 'attach', '-', 'write', 'hello', 'pid', 'sleep', '100000']);
    const pid = Number((await waitFor(app.out, /pid (\d+)/))[1]);
    const target = join(home, 'out', `${aid}.snap`);
    mkdirSync(dirname(target));
    const snap = appshotAsync(home, ['snapshot', aid, '--ipc-only', '-o', target]);
    await waitFor(() => stateLetter(pid), /^T$/);
    const tmp = join(dirname(target), `.${aid}.snap.tmp-${snap.child.pid}`);
    expect(existsSync(tmp)).toBe(true);
    return { home, app, pid, snap, target, tmp, record: join(home, 'stops', `${snap.child.pid}.json`) };
  }

  it.each(['SIGKILL', 'SIGTERM'] as const)('%s: the application runs again at once and the temporary file is gone', async (sig) => {
    const { home, app, pid, snap, target, tmp, record } = await snapshotUnderWay(`frozen-${sig}`);
    const killed = Date.now();
    snap.child.kill(sig);
    await waitFor(() => stateLetter(pid), /^[RS]$/);
    console.log(`resumed ${Date.now() - killed} ms after the snapshot's ${sig}`);
    const r = await snap.done;
    expect(r.signal).toBe(sig);
    expect(existsSync(tmp)).toBe(false);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(record)).toBe(false);
    expect(appshot(home, ['gc']).stdout).toMatch(/nothing to clean up/);
    expect(stateLetter(pid)).toMatch(/^[RS]$/);
    process.kill(pid, 'SIGTERM');
    await app.done;
  });

  it('SIGKILL of the snapshot and of its guard: gc resumes the application and removes the temporary file', async () => {
    const { home, app, pid, snap, tmp, record } = await snapshotUnderWay('frozen2');
    const [guard] = await waitFor(() => processesWith(record).join(' '), /^\d+$/);
    process.kill(Number(guard), 'SIGKILL');
    snap.child.kill('SIGKILL');
    await snap.done;
    expect(stateLetter(pid)).toBe('T'); // nothing left to resume it but gc
    expect(existsSync(tmp)).toBe(true);
    const gc = appshot(home, ['gc']);
    expect(gc.code).toBe(0);
    expect(gc.stdout).toContain(
      `the snapshot of application 'frozen2' by process ${snap.child.pid} ended before it was done: resumed 1 process(es) it had stopped, removed its temporary file ${tmp}`,
    );
    expect(stateLetter(pid)).toMatch(/^[RS]$/);
    expect(existsSync(tmp)).toBe(false);
    expect(existsSync(record)).toBe(false);
    process.kill(pid, 'SIGTERM');
    await app.done;
  });
});

describe('a template clone killed while it is being made', () => {
  it("leaves seeded folders that gc removes; a clone that started keeps its own", async () => {
    const home = makeHome();
    // The template's data: enough files that seeding a clone's copy takes a while.
    const data = join(home, 'app', 'data');
    mkdirSync(data, { recursive: true });
    for (let i = 0; i < 5000; i++) writeFileSync(join(data, `f${i}`), `file ${i}\n`);
    mkdirSync(join(home, 'srv'));
    const h = appshotAsync(home, ['run', '--aid', 'seedy', '--', SEMTOOL, 'get', '0x5e1f20', '1', 'c', 'pid', 'sleep', '100000']);
    await waitFor(h.out, /pid \d+/);
    const snap = join(home, 'seedy.snap');
    expect(appshot(home, ['snapshot', 'seedy', '--ipc-only', '-o', snap, '--stop']).code).toBe(0);
    await h.done;
    const rules = join(home, 'rules');
    writeFileSync(rules, `DEFINE <APPL-ID> AS PROPERTY application-id\nREDIR PATH "${data}" TO "${home}/srv/<APPL-ID>/data"\n`);
    const made = appshot(home, ['template', 'create', 'web', '--from', snap, '--rules', rules]);
    expect(made.code, made.stderr).toBe(0);

    const seeded = join(home, 'srv', 'web-1');
    const c = appshotAsync(home, ['template', 'clone', 'web', '--', 'true']);
    await waitFor(() => String(existsSync(seeded)), /true/);
    c.child.kill('SIGKILL');
    await c.done;
    expect(existsSync(seeded)).toBe(true);
    // The clone never started: gc ends it and removes what was seeded for it.
    const gc = appshot(home, ['gc']);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/ended 'web-1'/);
    expect(gc.stdout).toContain(`removed what was seeded for clone 'web-1', which never started: ${seeded}`);
    expect(existsSync(seeded)).toBe(false);
    expect(existsSync(data)).toBe(true);

    // A clone that ran keeps its folder: its data, whatever became of it.
    const ran = appshot(home, ['template', 'clone', 'web', '--', 'true']);
    expect(ran.code, ran.stderr).toBe(0);
    expect(appshot(home, ['gc']).stdout).toMatch(/nothing to clean up/);
    expect(readdirSync(join(home, 'srv'))).toEqual(['web-1']);
    expect(readFileSync(join(home, 'srv', 'web-1', 'data', 'f42'), 'utf8')).toBe('file 42\n');
    expect(appshot(home, ['template', 'rm', 'web']).code).toBe(0);
  });
});
