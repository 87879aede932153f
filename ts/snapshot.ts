import { hostname } from 'node:os';
import { endApp } from './cleanup.js';
import { AppshotError, EXIT } from './errors.js';
import { TEMPLATE_AID_PREFIX } from './home.js';
import type { Publication } from './pool.js';
import { environ, procStat, workingDirectory } from './procinfo.js';
import type { Progress } from './progress.js';
import { type Redirect, redirectsOf } from './redirect.js';
import { Dumper } from './checkpoint.js';
import { PROCESS_SECTIONS, SnapWriter } from './snapfile.js';
import { StopGuard } from './stops.js';
import { isSupervisor, processesLeft } from './supervision.js';
import { IPC_TYPES } from './sysv/ipctype.js';
import { KINDS } from './sysv/kinds.js';
import { type CaptureContext, type CaptureCounts, foldJournal } from './sysv/object.js';
import { capturedBytes } from './sysv/shm.js';
import { type FwdRow, type TableDb, fwdRows, getApp } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * FIG. 5: an application's state through its virtual IDs, captured while
 * every process of it is stopped: the translation rows, each semaphore
 * set's values, each segment's contents, each queue's messages, its ports
 * and published ports, its command line, environment and directory.
 * With --ipc-only (or no process running) process memory is not
 * captured: a restore starts the command again. Otherwise every process is
 * captured whole too (appshot-checkpoint, ts/checkpoint.ts) and a restore
 * continues it.
 */

export interface SnapMeta {
  aid: string;
  createdAt: string;
  host: string;
  command: string[];
  /** The first process's environment and working directory, when one ran. */
  env: Record<string, string> | null;
  cwd: string | null;
  noIdentity: boolean;
  /** The vpid of the application's first process, given again on restore. */
  firstVpid: number | null;
  publish: Publication[];
  /** Path redirections (absent in snapshots made before they existed). */
  redirects?: Redirect[];
  /** The bytes of shared memory the snapshot holds, for a progress bar. */
  shmBytes: number;
  /** The processes are in the file (PROC sections): a restore continues
   * them instead of starting the command again. */
  whole?: boolean;
}

export interface SnapshotSummary extends CaptureCounts {
  file: string;
  /** Every process captured whole (issue 18), not the IPC state alone. */
  whole: boolean;
  processes: number;
  /** From the SIGSTOPs to the file in place. */
  seconds: number;
}

const SIGNAL_WAIT_MS = 5000;

/** The application's processes (the supervisor is appshot's, not the
 * application's): by their environment and by their pid rows, since a
 * program may overwrite its environment (redis-server's process title
 * does), and then only the rows name it. */
function applicationProcesses(t: TableDb, aid: string): number[] {
  return processesLeft(t, aid).filter((pid) => !isSupervisor(pid));
}

function isStopped(pid: number): boolean | undefined {
  const st = procStat(pid);
  return st ? st.state === 'T' || st.state === 't' : undefined;
}

/** Gone, or killed and not yet reaped by its parent: no state to capture. */
function isGone(pid: number): boolean {
  const st = procStat(pid);
  return !st || st.state === 'Z' || st.state === 'X';
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * SIGSTOPs every process of the application and waits until each is really
 * stopped, looking again for processes forked meanwhile until none is new.
 * Each stopped process goes into stopped, for the caller to resume even
 * when this fails part way.
 */
async function suspend(t: TableDb, aid: string, stopped: Set<number>, guard: StopGuard): Promise<void> {
  for (;;) {
    const fresh = applicationProcesses(t, aid).filter((p) => !stopped.has(p));
    if (!fresh.length) return;
    guard.stopping(fresh);
    for (const p of fresh) {
      try {
        process.kill(p, 'SIGSTOP');
      } catch {
        /* gone already */
      }
    }
    const end = Date.now() + SIGNAL_WAIT_MS;
    for (const p of fresh) {
      let s: boolean | undefined;
      while ((s = isStopped(p)) === false) {
        if (Date.now() > end) throw new AppshotError(`process ${p} of application '${aid}' did not stop within ${SIGNAL_WAIT_MS / 1000} s (SIGSTOP); nothing was written`);
        await sleep(2);
      }
      if (s) stopped.add(p);
    }
  }
}

function resume(pids: number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGCONT');
    } catch {
      /* gone */
    }
  }
}

async function endProcesses(pids: number[]): Promise<void> {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await waitGone(pids);
}

/** Until every one of pids has exited (a zombie's state is not ours to wait for). */
async function waitGone(pids: number[]): Promise<void> {
  const running = (p: number) => (procStat(p)?.state ?? 'Z') !== 'Z';
  for (const p of pids) while (running(p)) await sleep(2);
}

/** The environment a process started with, without appshot's own variables. */
function environmentOf(spid: number): Record<string, string> | null {
  const vars = environ(spid);
  if (!vars) return null;
  const env: Record<string, string> = {};
  for (const kv of vars) {
    const i = kv.indexOf('=');
    if (i <= 0) continue;
    const name = kv.slice(0, i);
    if (name.startsWith('APPSHOT_') || name === 'LD_PRELOAD') continue;
    env[name] = kv.slice(i + 1);
  }
  return env;
}

/** The application's first process still running: its pid row made first. */
function firstProcess(rows: FwdRow[], alive: number[]): FwdRow | undefined {
  return rows
    .filter((r) => r.type === S.RT.pid && alive.includes(r.srid))
    .sort((a, b) => a.createdMs - b.createdMs || a.vrid - b.vrid)[0];
}

/** The application's SysV objects, kind by kind in IPC_TYPES order (the file's section order). */
function writeState(w: SnapWriter, aid: string, rows: FwdRow[], pids: number[], sum: SnapshotSummary, progress?: Progress): void {
  const c: CaptureContext = { aid, pids, sum, progress };
  for (const type of IPC_TYPES) KINDS[type].capture(w, rows, c);
}

export interface SnapshotOptions {
  stop: boolean;
  /** Today's snapshot: IPC state only, the processes SIGSTOPped meanwhile;
   * a restore starts the command again. */
  ipcOnly?: boolean;
  progress?: Progress;
}

export async function snapshot(t: TableDb, aid: string, file: string, opts: SnapshotOptions): Promise<SnapshotSummary> {
  const app = snapshottable(t, aid);
  // An application without processes (kept state) has nothing to capture
  // but its IPC state.
  const pids = opts.ipcOnly ? [] : applicationProcesses(t, aid);
  return pids.length ? wholeSnapshot(t, aid, app, file, pids, opts) : ipcSnapshot(t, aid, app, file, opts);
}

/** The application, if it is one that can be snapshotted. */
function snapshottable(t: TableDb, aid: string): S.AppVal {
  const app = getApp(t, aid);
  if (!app) throw new AppshotError(`there is no application '${aid}' in ${t.home}; 'appshot ps' lists the running ones`, EXIT.failure);
  if (app.state === S.APP_STATE.template) {
    const name = aid.slice(TEMPLATE_AID_PREFIX.length);
    throw new AppshotError(`'${aid}' is the entry of template '${name}', not an application: there is nothing to snapshot; 'appshot template inspect ${name}' shows what it holds`, EXIT.usage);
  }
  if (app.state === S.APP_STATE.ended) throw new AppshotError(`application '${aid}' has ended: there is nothing left to snapshot`, EXIT.failure);
  return app;
}

/** For the tests: a window in which the application can die under us. */
async function testDelay(): Promise<void> {
  const delay = Number(process.env.APPSHOT_SNAPSHOT_DELAY_MS ?? 0);
  if (delay > 0) await sleep(delay);
}

/** The sections every snapshot has, written while the processes are held:
 * meta, rows, and the SysV objects. */
function writeHead(w: SnapWriter, t: TableDb, aid: string, app: S.AppVal, pids: number[], whole: boolean, sum: SnapshotSummary, progress?: Progress): void {
  foldJournal(t); // the rows of objects made since the last write, with the processes held
  const rows = [...fwdRows(t, aid)];
  const first = firstProcess(rows, pids);
  const meta: SnapMeta = {
    aid,
    createdAt: new Date().toISOString(),
    host: hostname(),
    command: app.command,
    env: first ? environmentOf(first.srid) : null,
    cwd: first ? workingDirectory(first.srid) : null,
    noIdentity: (app.flags & S.APP_FLAG_NO_IDENTITY) !== 0,
    firstVpid: first?.vrid ?? null,
    publish: rows.filter((r) => r.type === S.RT.publish).map((r) => ({ public: S.decodePortId(r.srid).port, virtual: S.decodePortId(r.vrid).port })),
    redirects: redirectsOf(t, aid),
    shmBytes: capturedBytes(rows, aid),
    ...(whole ? { whole: true } : {}),
  };
  w.json('meta', meta);
  w.json('rows', rows);
  writeState(w, aid, rows, pids, sum, progress);
}

function newSummary(file: string, whole: boolean): SnapshotSummary {
  return { file, whole, sems: 0, segments: 0, shmBytes: 0, copySeconds: 0, queues: 0, messages: 0, processes: 0, seconds: 0 };
}

/**
 * Issue 18: every process whole. appshot-checkpoint freezes them with
 * ptrace (ts/checkpoint.ts); while they are frozen this process writes the
 * IPC sections, then the dumper its own, then END and the rename; then the
 * processes go on (detach) or end (--stop). Until the rename nothing
 * is changed: a refusal or a failure leaves the application running.
 */
async function wholeSnapshot(t: TableDb, aid: string, app: S.AppVal, file: string, given: number[], opts: SnapshotOptions): Promise<SnapshotSummary> {
  const started = performance.now();
  // The guard removes the temporary file if this process dies (a dead
  // dumper's tracees are let go by the kernel).
  const { guard, w } = guardedWriter(t, aid, file);
  const sum = newSummary(file, true);
  let dumper: Dumper | undefined;
  let pids = given;
  let written = false;
  try {
    ({ dumper, pids } = await Dumper.freeze(t.home, aid, w.descriptor, given));
    sum.processes = pids.length;
    await testDelay();
    writeHead(w, t, aid, app, pids, true, sum, opts.progress);
    w.adopt(await dumper.dump(w.offset, !opts.stop), PROCESS_SECTIONS);
    w.finish();
    written = true;
    sum.seconds = (performance.now() - started) / 1000;
    await dumper.finish(opts.stop ? 'kill' : 'detach');
  } catch (err) {
    if (!written) w.abort();
    await dumper?.abort();
    guard.release();
    throw err;
  }
  guard.release();
  if (opts.stop) {
    await waitGone(pids);
    endApp(t, aid, { keep: false });
  }
  return sum;
}

/** The temporary file a snapshot writes, and the guard that cleans up
 * after this process should it die; made before anything is stopped. */
function guardedWriter(t: TableDb, aid: string, file: string): { guard: StopGuard; w: SnapWriter } {
  const guard = new StopGuard(t.home, aid, SnapWriter.tempPath(file));
  try {
    return { guard, w: new SnapWriter(file) };
  } catch (err) {
    guard.release();
    throw err;
  }
}

/** Today's snapshot (--ipc-only): SIGSTOP, the IPC state, SIGCONT. */
async function ipcSnapshot(t: TableDb, aid: string, app: S.AppVal, file: string, opts: SnapshotOptions): Promise<SnapshotSummary> {
  const started = performance.now();
  // Before anything is stopped: the guard resumes the application if this
  // process dies while it holds it stopped.
  const { guard, w } = guardedWriter(t, aid, file);
  const stopped = new Set<number>();
  const sum = newSummary(file, false);
  let written = false;
  try {
    await suspend(t, aid, stopped, guard);
    const pids = [...stopped];
    sum.processes = pids.length;
    await testDelay();
    writeHead(w, t, aid, app, pids, false, sum, opts.progress);
    // Still the application's own processes: none ended while we wrote.
    if (pids.some(isGone)) throw new AppshotError(`application '${aid}' lost a process during the snapshot; no snapshot was written`);
    w.finish();
    written = true;
    sum.seconds = (performance.now() - started) / 1000; // the capture, not the --stop after it
  } finally {
    if (!written) w.abort();
    if (!opts.stop || !written) {
      resume([...stopped]);
      guard.release();
    }
  }
  if (opts.stop) {
    await endProcesses([...stopped]);
    guard.release();
    endApp(t, aid, { keep: false });
  }
  return sum;
}
