import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { addon } from './addon.js';
import { endApp } from './cleanup.js';
import { AppshotError, EXIT } from './errors.js';
import { TEMPLATE_AID_PREFIX } from './home.js';
import type { Publication } from './pool.js';
import { processesOf, procStat } from './procinfo.js';
import type { Progress } from './progress.js';
import { type Redirect, redirectsOf } from './redirect.js';
import { SnapWriter } from './snapfile.js';
import { StopGuard } from './stops.js';
import { isSupervisor } from './supervision.js';
import { shmAttachModes } from './sysvipc.js';
import { type FwdRow, type TableDb, fwdRows, getApp } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * FIG. 5: an application's state through its virtual IDs, captured while
 * every process of it is stopped: the translation rows, each semaphore
 * set's values, each segment's contents, each queue's messages, its ports
 * and published ports, its command line, environment and directory.
 * Process memory is not captured: a restore starts the command again.
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
}

interface Perm {
  vrid: number;
  vkey: number;
  uid: number;
  gid: number;
  mode: number;
}
export interface SemRecord extends Perm {
  values: number[];
}
export interface ShmRecord extends Perm {
  size: number;
  /** How the application's processes had it attached at the snapshot
   * (absent in snapshots made before templates): a template shares a
   * segment nobody had writable. */
  attached?: { rw: number; ro: number };
}
export interface MsgRecord extends Perm {
  qbytes: number;
  messages: { type: number; data: string }[];
}

export interface SnapshotSummary {
  file: string;
  sems: number;
  segments: number;
  shmBytes: number;
  queues: number;
  messages: number;
  processes: number;
  /** From the SIGSTOPs to the file in place. */
  seconds: number;
}

const SIGNAL_WAIT_MS = 5000;

/** The application's processes (the supervisor is appshot's, not the application's). */
function applicationProcesses(t: TableDb, aid: string): number[] {
  return processesOf(aid, t.home).filter((pid) => !isSupervisor(pid));
}

function isStopped(pid: number): boolean | undefined {
  const st = procStat(pid);
  return st ? st.state === 'T' || st.state === 't' : undefined;
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
  const running = (p: number) => (procStat(p)?.state ?? 'Z') !== 'Z';
  for (const p of pids) while (running(p)) await sleep(2);
}

/** The environment a process started with, without appshot's own variables. */
function environmentOf(spid: number): Record<string, string> | null {
  try {
    const env: Record<string, string> = {};
    for (const kv of readFileSync(`/proc/${spid}/environ`, 'latin1').split('\0')) {
      const i = kv.indexOf('=');
      if (i <= 0) continue;
      const name = kv.slice(0, i);
      if (name.startsWith('APPSHOT_') || name === 'LD_PRELOAD') continue;
      env[name] = kv.slice(i + 1);
    }
    return env;
  } catch {
    return null;
  }
}

/** The application's first process still running: its pid row made first. */
function firstProcess(rows: FwdRow[], alive: number[]): FwdRow | undefined {
  return rows
    .filter((r) => r.type === S.RT.pid && alive.includes(r.srid))
    .sort((a, b) => a.createdMs - b.createdMs || a.vrid - b.vrid)[0];
}

/** A row's kernel object as it must still be: gone means the application ended under us. */
function stat(type: 'sem' | 'shm' | 'msg', row: FwdRow, aid: string) {
  try {
    const st = addon().ipcStat(type, row.srid);
    if (st.key >>> 0 !== row.skey >>> 0) throw new Error('its key changed');
    return st;
  } catch (err) {
    throw new AppshotError(`application '${aid}' ended during the snapshot (${type} ${row.srid}, virtual ${row.vrid}: ${(err as Error).message}); no snapshot was written`);
  }
}

const perm = (row: FwdRow, st: { uid: number; gid: number; mode: number }): Perm => ({ vrid: row.vrid, vkey: row.vkey, uid: st.uid, gid: st.gid, mode: st.mode & 0o777 });

function writeState(w: SnapWriter, aid: string, rows: FwdRow[], pids: number[], sum: SnapshotSummary, progress?: Progress): void {
  const live = (type: number) => rows.filter((r) => r.type === type && !S.fwdValRemoved(r));
  const sems: SemRecord[] = live(S.RT.sem).map((row) => ({ ...perm(row, stat('sem', row, aid)), values: addon().semGetAll(row.srid) }));
  w.json('sem', sems);
  sum.sems = sems.length;
  const segments = live(S.RT.shm).map((row) => ({ row, st: stat('shm', row, aid) }));
  progress?.start(segments.reduce((n, s) => n + s.st.size, 0));
  const modes = shmAttachModes(pids);
  for (const { row, st } of segments) {
    const rec: ShmRecord = { ...perm(row, st), size: st.size, attached: modes.get(row.srid) ?? { rw: 0, ro: 0 } };
    w.shm(rec, row.srid, st.size, progress?.advance);
    sum.segments++;
    sum.shmBytes += st.size;
  }
  progress?.stop();
  for (const row of live(S.RT.msg)) {
    const st = stat('msg', row, aid);
    const messages = addon().msgCopyAll(row.srid).map((m) => ({ type: m.type, data: m.data.toString('base64') }));
    const rec: MsgRecord = { ...perm(row, st), qbytes: st.qbytes, messages };
    w.json('msg', rec);
    sum.queues++;
    sum.messages += messages.length;
  }
}

export async function snapshot(t: TableDb, aid: string, file: string, opts: { stop: boolean; progress?: Progress }): Promise<SnapshotSummary> {
  const started = performance.now();
  const app = getApp(t, aid);
  if (!app) throw new AppshotError(`there is no application '${aid}' in ${t.home}; 'appshot ps' lists the running ones`, EXIT.failure);
  if (app.state === S.APP_STATE.template) {
    const name = aid.slice(TEMPLATE_AID_PREFIX.length);
    throw new AppshotError(`'${aid}' is the entry of template '${name}', not an application: there is nothing to snapshot; 'appshot template inspect ${name}' shows what it holds`, EXIT.usage);
  }
  if (app.state === S.APP_STATE.ended) throw new AppshotError(`application '${aid}' has ended: there is nothing left to snapshot`, EXIT.failure);
  // Before anything is stopped: what resumes the application if this
  // process dies while it holds it stopped.
  const guard = new StopGuard(t.home, aid, SnapWriter.tempPath(file));
  let w: SnapWriter;
  try {
    w = new SnapWriter(file);
  } catch (err) {
    guard.release();
    throw err;
  }
  const stopped = new Set<number>();
  const sum: SnapshotSummary = { file, sems: 0, segments: 0, shmBytes: 0, queues: 0, messages: 0, processes: 0, seconds: 0 };
  let written = false;
  try {
    await suspend(t, aid, stopped, guard);
    const pids = [...stopped];
    sum.processes = pids.length;
    // For the tests: a window in which the application can die under us.
    const delay = Number(process.env.APPSHOT_SNAPSHOT_DELAY_MS ?? 0);
    if (delay > 0) await sleep(delay);
    const rows = [...fwdRows(t, aid)];
    const first = firstProcess(rows, pids);
    const meta: SnapMeta = {
      aid,
      createdAt: new Date().toISOString(),
      host: hostname(),
      command: app.command,
      env: first ? environmentOf(first.srid) : null,
      cwd: first ? readlinkSync(`/proc/${first.srid}/cwd`) : null,
      noIdentity: (app.flags & S.APP_FLAG_NO_IDENTITY) !== 0,
      firstVpid: first?.vrid ?? null,
      publish: rows.filter((r) => r.type === S.RT.publish).map((r) => ({ public: S.decodePortId(r.srid).port, virtual: S.decodePortId(r.vrid).port })),
      redirects: redirectsOf(t, aid),
      shmBytes: rows.filter((r) => r.type === S.RT.shm && !S.fwdValRemoved(r)).reduce((n, r) => n + stat('shm', r, aid).size, 0),
    };
    w.json('meta', meta);
    w.json('rows', rows);
    writeState(w, aid, rows, pids, sum, opts.progress);
    // Still the application's own processes: none ended while we wrote.
    if (pids.some((p) => isStopped(p) === undefined)) throw new AppshotError(`application '${aid}' lost a process during the snapshot; no snapshot was written`);
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
