import { closeSync, constants, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addon } from './addon.js';
import { AppshotError, EXIT } from './errors.js';
import { homeSubdir, openHomeFile } from './home.js';
import { stopApp } from './lifecycle.js';
import { processAlive, startTicks } from './procinfo.js';
import type { Balance } from './pool.js';
import { type TableDb, appRows } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * Instances on demand behind a published port (`appshot template serve`):
 * the policy that decides when an instance is made or retired, and the
 * serving command's state in the home, HOME/serve/NAME.json (what `appshot
 * ps` shows: the pool, its instances and why each started or was retired),
 * beside HOME/serve/NAME.lock, flock'ed while the command runs: the kernel
 * lets go of it however the command ends, so a free lock with a state file
 * left means the command was killed, its instances running on without it.
 * The next `serve` of the template adopts them; `appshot gc` ends them.
 */

/** A connection that waits this long, held by the pool daemon or handed to
 * an instance that has not accepted it, means every instance is busy
 * (POOL_BUSY_MS, native/core/pool.h, whose daemon measures it). */
export const BUSY_MS = 100;

export interface ServeInstance {
  aid: string;
  startedMs: number;
  /** Why it was started, or adopted. */
  why: string;
  warm: boolean;
  /** From asking for it to its processes running. */
  readyMs?: number;
  /** From asking for it to its program listening (in the pool). */
  listeningMs?: number;
  /** A serving command before this one started it. */
  adopted?: boolean;
  /** Why it is being retired, while it is. */
  retiring?: string;
}

export interface ServeRetired {
  aid: string;
  endedMs: number;
  why: string;
}

export interface ServeState {
  template: string;
  pid: number;
  startTicks: number;
  startedMs: number;
  public: number;
  virtual: number;
  host?: string;
  min: number;
  max: number;
  idleS: number;
  conns: number;
  balance: Balance;
  instances: ServeInstance[];
  /** The latest retirements, newest last. */
  retired: ServeRetired[];
}

/** How many retirements the state file keeps. */
export const RETIRED_KEPT = 20;

function serveDir(home: string): string {
  return join(home, 'serve');
}

export function serveFile(home: string, name: string): string {
  return join(serveDir(home), `${name}.json`);
}

function lockFile(home: string, name: string): string {
  return join(serveDir(home), `${name}.lock`);
}

const LOCK_EX = 2;
const LOCK_NB = 4;

/** Whether a lock file is held (by a serving command that runs). */
function tryLock(path: string): number | null {
  const fd = openHomeFile(path, constants.O_RDWR | constants.O_CREAT);
  try {
    addon().flock(fd, LOCK_EX | LOCK_NB);
    return fd;
  } catch (err) {
    closeSync(fd);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EWOULDBLOCK' || code === 'EAGAIN') return null;
    throw err;
  }
}

/** The template's serving lock, held until this process ends (or
 * unlockServe): refused, exit 3, while another serving command runs. */
export function lockServe(home: string, name: string): number {
  homeSubdir(home, 'serve');
  const fd = tryLock(lockFile(home, name));
  if (fd !== null) {
    removeTemps(home, name);
    return fd;
  }
  const other = readServeState(home, name);
  const who = other ? `pid ${other.pid}, public port ${other.public}` : `see ${serveFile(home, name)}`;
  throw new AppshotError(`template '${name}' is already served by another 'appshot template serve' (${who}); stop it first (Ctrl-C or kill -TERM)`, EXIT.conflict);
}

export function unlockServe(home: string, name: string, fd: number): void {
  removeIfThere(serveFile(home, name));
  removeTemps(home, name);
  removeIfThere(lockFile(home, name));
  closeSync(fd);
}

/** The state's temporary files (writeServeState) a serving command killed
 * between writing and renaming left: only the lock's holder writes them, so
 * under the lock every one there is a dead writer's. */
function removeTemps(home: string, name: string): void {
  const temp = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.json\\.\\d+\\.tmp$`);
  let names: string[];
  try {
    names = readdirSync(serveDir(home));
  } catch {
    return;
  }
  for (const f of names) if (temp.test(f)) removeIfThere(join(serveDir(home), f));
}

function removeIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* gone already */
  }
}

/** Replaced whole: a reader (ps) never sees half of it. */
export function writeServeState(home: string, st: ServeState): void {
  const file = serveFile(home, st.template);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openHomeFile(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC);
  try {
    writeFileSync(fd, JSON.stringify(st) + '\n');
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export function readServeState(home: string, name: string): ServeState | undefined {
  try {
    const fd = openHomeFile(serveFile(home, name), constants.O_RDONLY);
    try {
      return JSON.parse(readFileSync(fd, 'utf8')) as ServeState;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined; // none, or being replaced by a command that died part way
  }
}

/** Every state file of the home, with whether its serving command runs. */
export function serveStates(home: string): { state: ServeState; running: boolean }[] {
  let names: string[];
  try {
    names = readdirSync(serveDir(home));
  } catch {
    return [];
  }
  const out: { state: ServeState; running: boolean }[] = [];
  for (const f of names.filter((n) => n.endsWith('.json')).sort()) {
    const state = readServeState(home, f.slice(0, -5));
    if (state) out.push({ state, running: processAlive(state.pid, state.startTicks) });
  }
  return out;
}

/** The running applications a serving command that is gone left: the
 * clones whose harness it was, and those it had adopted. */
export function orphansOf(t: TableDb, st: ServeState): string[] {
  const listed = new Set(st.instances.map((i) => i.aid));
  const found: string[] = [];
  for (const { aid, app } of appRows(t)) {
    if (app.state !== S.APP_STATE.running || S.cloneTemplate(aid, app.flags) !== st.template) continue;
    const ours = (app.harnessSpid === st.pid && app.harnessStart === st.startTicks) || listed.has(aid);
    // A clone whose own harness runs (another command's) is not left over.
    if (ours && !processAlive(app.harnessSpid, app.harnessStart)) found.push(aid);
  }
  return found;
}

/**
 * For `appshot gc`: each serving command that was killed (its lock free,
 * its state file left) has its instances ended and cleaned up, and its
 * state removed. Says what it did.
 */
export async function sweepServes(t: TableDb): Promise<string[]> {
  const notes: string[] = [];
  for (const { state } of serveStates(t.home)) {
    const fd = tryLock(lockFile(t.home, state.template));
    if (fd === null) continue; // its command runs
    try {
      const ended: string[] = [];
      for (const aid of orphansOf(t, state)) {
        await stopApp(t, aid, 5000);
        ended.push(aid);
      }
      notes.push(
        `'appshot template serve ${state.template}' (pid ${state.pid}, public port ${state.public}) ended without its instances: ` +
          (ended.length ? `ended ${ended.join(', ')}` : 'none was left running'),
      );
    } finally {
      unlockServe(t.home, state.template, fd);
    }
  }
  return notes;
}

/* --- the policy ------------------------------------------------------------- */

export interface PoolSize {
  /** Instances running (ready or not), less those being retired. */
  live: number;
  /** Being made now. */
  starting: number;
  min: number;
  max: number;
  conns: number;
}

/**
 * Why another instance is to be made for connections that wait (the
 * daemon's need: held connections, the oldest wait), or null. With none
 * running or being made, at once; otherwise one at a time (a clone being
 * made counts as the capacity asked for), when connections are held (each
 * instance is at --conns, or none accepts) or one has waited BUSY_MS.
 */
export function growReason(need: { held: number; oldestMs: number }, n: PoolSize): string | null {
  if (n.live + n.starting >= n.max) return null;
  if (n.live + n.starting === 0) return need.held ? `${need.held} connection(s) waiting and no instance running` : null;
  if (n.starting) return null;
  if (need.held && n.conns) return `${need.held} connection(s) held: every instance has --conns ${n.conns} open or is not accepting`;
  if (need.held) return `${need.held} connection(s) held: no instance accepts them now`;
  if (need.oldestMs >= BUSY_MS) return `a connection has waited ${need.oldestMs} ms to be accepted (bound ${BUSY_MS} ms)`;
  return null;
}

/** The instances to retire now: idle at least idleS, the longest idle
 * first, never below min. */
export function retireChoice(
  instances: { aid: string; idleMs: number }[],
  n: { live: number; min: number; idleS: number },
): string[] {
  const idle = instances.filter((i) => i.idleMs >= n.idleS * 1000).sort((a, b) => b.idleMs - a.idleMs);
  return idle.slice(0, Math.max(0, n.live - n.min)).map((i) => i.aid);
}

export function processStart(): number {
  return startTicks(process.pid) ?? 0;
}
