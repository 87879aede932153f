import { spawn } from 'node:child_process';
import { closeSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { AppshotError, EXIT, errnoText } from './errors.js';
import { homeSubdir } from './home.js';
import { closeOnExecPipe } from './libc.js';
import { SNAPGUARD_PATH, STOPGUARD_PATH } from './paths.js';
import { processAlive, startTicks } from './procinfo.js';

/**
 * A snapshot stops every process of its application while it writes. If
 * the snapshotting process dies then (SIGKILL, Ctrl-C), nothing of it runs
 * to resume them: so before it stops anything it writes a stop record,
 * HOME/stops/PID.json (which processes it stopped, where its temporary file
 * is), and starts a guard (native/snapshot/stopguard.c, then ts/snapguard.ts)
 * that holds the read end of a pipe only the snapshotter writes to. The kernel closes that pipe however
 * the snapshotter ends; a guard that then finds the record still there
 * resumes the processes and removes the temporary file. `appshot gc` does
 * the same for a record whose snapshotter is dead, should the guard have
 * died too.
 */

interface Proc {
  pid: number;
  startTicks: number;
}

export interface StopRecord {
  aid: string;
  snapshotter: Proc;
  /** The snapshot's temporary file, beside its target (an absolute path). */
  tmp: string;
  /** Written before each SIGSTOP: a process listed may not be stopped yet. */
  stopped: Proc[];
}

export function stopsDir(home: string): string {
  return join(home, 'stops');
}

/** The record, replaced whole (a reader never sees half of it). */
function writeRecord(file: string, rec: StopRecord): void {
  const tmp = `${file}.new`;
  writeFileSync(tmp, JSON.stringify(rec), { mode: 0o600 });
  renameSync(tmp, file);
}

function readRecord(file: string): StopRecord | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StopRecord;
  } catch {
    return undefined; // gone: its snapshot finished, or another cleaner was first
  }
}

function unlinkIfThere(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The stop record and guard of one snapshot in progress. */
export class StopGuard {
  private readonly file: string;
  private readonly rec: StopRecord;
  private lifeline = -1;

  constructor(home: string, aid: string, tmp: string) {
    this.file = join(stopsDir(home), `${process.pid}.json`);
    this.rec = { aid, snapshotter: { pid: process.pid, startTicks: startTicks(process.pid) ?? 0 }, tmp, stopped: [] };
    homeSubdir(home, 'stops');
    try {
      writeRecord(this.file, this.rec);
    } catch (err) {
      throw new AppshotError(
        `cannot record the snapshot's stop at ${this.file}: ${errnoText(err)}; nothing was stopped. Check that APPSHOT_HOME is writable`,
        EXIT.home,
      );
    }
    const [readEnd, writeEnd] = closeOnExecPipe();
    this.lifeline = writeEnd;
    try {
      // Its own session: the terminal's Ctrl-C that ends the snapshot
      // must not end its guard.
      // Nor is it a process of any application, whatever this one's environment says; and
      // it opens no TLS connection, so its Node's start skips the certificates (bin/appshot).
      const env = { ...process.env };
      for (const name of ['APPSHOT_AID', 'LD_PRELOAD', 'NODE_EXTRA_CA_CERTS']) delete env[name];
      // The waiting is done in C (native/snapshot/stopguard.c), which
      // starts Node with snapguard.js only if the record outlives the snapshotter.
      const guard = spawn(STOPGUARD_PATH, [this.file, process.execPath, SNAPGUARD_PATH, this.file], { stdio: [readEnd, 'ignore', 'inherit'], detached: true, env });
      guard.on('error', () => {}); // no guard: `appshot gc` is the fallback
      guard.unref();
    } finally {
      closeSync(readEnd);
    }
  }

  /** Records processes about to be stopped: before the SIGSTOP. */
  stopping(pids: number[]): void {
    for (const pid of pids) this.rec.stopped.push({ pid, startTicks: startTicks(pid) ?? 0 });
    writeRecord(this.file, this.rec);
  }

  /** The snapshot has resumed or ended its processes: nothing to guard. */
  release(): void {
    unlinkIfThere(this.file);
    if (this.lifeline >= 0) closeSync(this.lifeline);
    this.lifeline = -1;
  }
}

/** Resumes what a dead snapshotter left stopped and removes its temporary
 * file and its record; says what it did, or null if the record is gone. */
export function resumeAbandoned(file: string): string | null {
  const rec = readRecord(file);
  if (!rec) return null;
  let resumed = 0;
  for (const p of rec.stopped) {
    if (!processAlive(p.pid, p.startTicks)) continue;
    try {
      process.kill(p.pid, 'SIGCONT');
      resumed++;
    } catch {
      /* gone meanwhile */
    }
  }
  // Only what the snapshotter itself would have named its file goes.
  const removed = basename(rec.tmp).endsWith(`.tmp-${rec.snapshotter.pid}`) && unlinkIfThere(rec.tmp);
  if (!unlinkIfThere(file)) return null; // another cleaner was first and says so
  return (
    `the snapshot of application '${rec.aid}' by process ${rec.snapshotter.pid} ended before it was done: resumed ${resumed} process(es) it had stopped` +
    (removed ? `, removed its temporary file ${rec.tmp}` : '')
  );
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** For `appshot gc`: every stop record whose snapshotter is dead, undone. */
export function sweepStops(home: string): string[] {
  let names: string[];
  try {
    names = readdirSync(stopsDir(home));
  } catch {
    return [];
  }
  const notes: string[] = [];
  for (const name of names.filter((n) => /^\d+\.json\.new$/.test(n))) {
    // A record being replaced when its writer died.
    if (!pidExists(Number.parseInt(name, 10))) unlinkIfThere(join(stopsDir(home), name));
  }
  for (const name of names.filter((n) => /^\d+\.json$/.test(n))) {
    const file = join(stopsDir(home), name);
    const rec = readRecord(file);
    if (!rec || processAlive(rec.snapshotter.pid, rec.snapshotter.startTicks)) continue;
    const note = resumeAbandoned(file);
    if (note) notes.push(note);
  }
  return notes;
}
