import { constants } from 'node:os';
import { appLive, type CleanupReport, endAppInTxn } from './cleanup.js';
import { foldJournal } from './sysv/object.js';
import { AppshotError, EXIT } from './errors.js';
import { signalPinned, waitAnyExit } from './libc.js';
import { commandLine, environ, processAlive, processesOf, startTicks } from './procinfo.js';
import { type Publication, parsePortRange, parsePublish } from './pool.js';
import { type Redirect, redirectsOf } from './redirect.js';
import { isSupervisor, processesLeft } from './supervision.js';
import { type TableDb, getApp, healLock, writeTxn } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * The lifecycle of a running application from outside it: joining it with
 * a new process (`appshot exec`), which processes are its own, signalling
 * them (`appshot kill`), ending them and waiting for their cleanup
 * (`appshot stop`). A process is signalled only while it is
 * the one found (same PID, same start time), through a pidfd, so a PID the
 * kernel hands to another program meanwhile is never signalled.
 */

export interface AppProcess {
  pid: number;
  startTicks: number;
}

/** The application's own processes now running: those its pid rows record
 * and those whose environment names it, less appshot's supervisors (they
 * end by themselves once their children are gone, and pass signals on). */
export function applicationProcesses(t: TableDb, aid: string): AppProcess[] {
  const found: AppProcess[] = [];
  for (const pid of processesLeft(t, aid)) {
    if (isSupervisor(pid)) continue;
    const ticks = startTicks(pid);
    if (ticks !== undefined) found.push({ pid, startTicks: ticks });
  }
  return found.sort((a, b) => a.pid - b.pid);
}

/** The number of a signal given by name (TERM, SIGTERM, term) or number. */
export function parseSignal(spec: string): number {
  const text = spec.trim();
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = text.toUpperCase().replace(/^SIG/, '');
    const n = (constants.signals as Record<string, number>)[`SIG${name}`];
    if (n !== undefined) return n;
  }
  throw new AppshotError(`'${spec}' is not a signal: give a name such as TERM, SIGTERM, KILL, HUP, USR1, or a number from 1 to 64 (see kill -l)`, EXIT.usage);
}

/** A signal's name as kill -l writes it with SIG (SIGTERM), or its number. */
export function signalName(sig: number): string {
  const entry = Object.entries(constants.signals).find(([, n]) => n === sig);
  return entry ? entry[0] : String(sig);
}

/** Sends sig to p if it is still that process; false if it is gone. */
export function signalProcess(p: AppProcess, sig: number): boolean {
  return signalPinned(p.pid, sig, p.startTicks, startTicks);
}

/** The application's record, when it runs; otherwise an error for the user
 * (exit 1) that names it and says what it is. A running record with
 * nothing alive (its harness died) counts as running for stop, which
 * cleans up after it: allowStale. */
export function runningApp(t: TableDb, aid: string, opts: { allowStale?: boolean } = {}): S.AppVal {
  const app = getApp(t, aid);
  if (!app) throw new AppshotError(`there is no application '${aid}' under ${t.home}; 'appshot tables --apps' lists them`, EXIT.failure);
  if (app.state !== S.APP_STATE.running) {
    const state = S.APP_STATE_NAME[app.state] ?? `in state ${app.state}`;
    throw new AppshotError(`application '${aid}' is not running (it is ${state}); start it with 'appshot run --aid ${aid} -- CMD'`, EXIT.failure);
  }
  if (!opts.allowStale && !appLive(t, aid, app))
    throw new AppshotError(`application '${aid}' is not running: its harness and every process of it are gone; 'appshot gc' (or 'appshot stop ${aid}') cleans up after it`, EXIT.failure);
  return app;
}

/** How a process that joins the application starts, as its first one
 * did: its port range and publications (in its processes' environment, as
 * the harness set them) and its path redirections (in the tables). */
export interface JoinSettings {
  portRange: { lo: number; hi: number };
  publish: Publication[];
  redirects: Redirect[];
}

export function joinSettings(t: TableDb, aid: string): JoinSettings {
  const pids = processesOf(aid, t);
  // The supervisor's environment is the harness's own making.
  const from = [...pids.filter(isSupervisor), ...pids].map(environ).find((vars) => vars?.some((v) => v.startsWith('APPSHOT_PORT_RANGE=')));
  const value = (name: string) => from?.find((v) => v.startsWith(`${name}=`))?.slice(name.length + 1);
  let portRange: { lo: number; hi: number } = { ...S.PORT_RANGE_DEFAULT };
  let publish: Publication[] = [];
  try {
    portRange = parsePortRange(value('APPSHOT_PORT_RANGE') ?? '');
  } catch {
    /* none found: the default, as run's */
  }
  try {
    publish = (value('APPSHOT_PUBLISH') ?? '').split(',').filter(Boolean).map(parsePublish);
  } catch {
    publish = [];
  }
  return { portRange, publish, redirects: redirectsOf(t, aid) };
}

/** Sends sig once to every process of the application; returns those it reached. */
export function killApp(t: TableDb, aid: string, sig: number): AppProcess[] {
  return applicationProcesses(t, aid).filter((p) => signalProcess(p, sig));
}

export interface StopReport {
  aid: string;
  /** Processes that had SIGTERM. */
  terminated: AppProcess[];
  /** Those still running after the grace period, and their command lines. */
  killed: { pid: number; command: string }[];
  /** Who cleaned up: the application's harness, or this stop (its harness was gone). */
  cleanedBy: 'harness' | 'stop';
  /** This stop's own cleanup, when it made one. */
  cleanup?: CleanupReport;
}

const SIGTERM = constants.signals.SIGTERM;
const SIGKILL = constants.signals.SIGKILL;
/** How often the processes are looked at again while waiting: one forked
 * meanwhile wakes no pidfd. */
const RESCAN_MS = 200;
/** A supervisor whose processes are all gone ends at once; one still
 * there after this long is stuck (stopped, say) and has SIGKILL. */
const SUPERVISOR_GRACE_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves when one of pids has exited, or after ms. */
function waitSome(pids: number[], ms: number): Promise<void> {
  return pids.length ? Promise.race([waitAnyExit(pids), sleep(ms)]) : sleep(ms);
}

/**
 * `appshot stop`: SIGTERM to every process of the application (and to each
 * it forks meanwhile), SIGKILL to those still running after graceMs, then
 * waits until every process of it (its supervisors too) is gone and it has
 * been cleaned up: by its harness, or by this stop when the harness is gone
 * (as `appshot gc` would).
 */
export async function stopApp(t: TableDb, aid: string, graceMs: number): Promise<StopReport> {
  const report: StopReport = { aid, terminated: [], killed: [], cleanedBy: 'harness' };
  const deadline = Date.now() + graceMs;
  // A process that joined while the harness was gone keeps the record
  // running: its processes are ended again, then the cleanup is awaited again.
  do await endProcesses(t, aid, deadline, report);
  while (!(await awaitCleanup(t, aid, report)));
  return report;
}

/** SIGTERM to each process of the application once (those it forks
 * meanwhile too), SIGKILL to every one still there at deadline; returns
 * when no process of it is left, its supervisors included. */
async function endProcesses(t: TableDb, aid: string, deadline: number, report: StopReport): Promise<void> {
  const termed = new Set<string>();
  const id = (p: AppProcess) => `${p.pid}:${p.startTicks}`;
  let onlySupervisorsSince = 0;
  for (;;) {
    const procs = applicationProcesses(t, aid);
    const all = processesLeft(t, aid);
    if (!all.length) return;
    const killing = Date.now() >= deadline;
    for (const p of procs) {
      if (killing) {
        const command = commandLine(p.pid);
        if (signalProcess(p, SIGKILL) && !report.killed.some((k) => k.pid === p.pid)) report.killed.push({ pid: p.pid, command });
      } else if (!termed.has(id(p))) {
        termed.add(id(p));
        if (signalProcess(p, SIGTERM)) report.terminated.push(p);
      }
    }
    // Supervisors whose processes are all gone end at once; one that does
    // not (stopped, stuck) would hold the cleanup back forever.
    if (!procs.length) {
      onlySupervisorsSince ||= Date.now();
      if (Date.now() - onlySupervisorsSince > SUPERVISOR_GRACE_MS)
        for (const pid of all) {
          const ticks = startTicks(pid);
          if (ticks !== undefined && isSupervisor(pid)) signalProcess({ pid, startTicks: ticks }, SIGKILL);
        }
    } else onlySupervisorsSince = 0;
    await waitSome(all, killing ? RESCAN_MS : Math.max(1, Math.min(RESCAN_MS, deadline - Date.now())));
  }
}

/** Once its processes are gone: waits for the harness to clean up, or
 * cleans up itself if the harness is gone too. False when a process of
 * the application runs again (one joined meanwhile). */
async function awaitCleanup(t: TableDb, aid: string, report: StopReport): Promise<boolean> {
  // As the harness does before it reads the tables again: a program of the
  // application may have written into LMDB's lock file.
  healLock(t);
  for (;;) {
    const app = getApp(t, aid);
    if (!app || app.state !== S.APP_STATE.running) return true;
    if (!processAlive(app.harnessSpid, app.harnessStart)) {
      foldJournal(t);
      const cleanup = writeTxn(t, () => {
        const now = getApp(t, aid);
        return now && now.state === S.APP_STATE.running && !appLive(t, aid, now) ? endAppInTxn(t, aid, { keep: false }) : undefined;
      });
      if (!cleanup) return getApp(t, aid)?.state !== S.APP_STATE.running;
      report.cleanedBy = 'stop';
      report.cleanup = cleanup;
      return true;
    }
    if (processesLeft(t, aid).length) return false;
    await waitSome([app.harnessSpid], 100);
  }
}
