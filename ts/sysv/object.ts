import { join } from 'node:path';
import { AppshotError, EXIT } from '../errors.js';
import type { Progress } from '../progress.js';
import * as rows from '../rows.js';
import type { Section, SnapReader, SnapWriter } from '../snapfile.js';
import { type FwdRow, type TableDb, writeTxn } from '../tabledb.js';
import { IPC_NOUN, IPCRM_OPTION, type IpcType, keyText } from './ipctype.js';
import {
  type Listings,
  foldJournalBegin,
  foldJournalEnd,
  inflightClear,
  ipcCreate,
  ipcRemove,
  ipcSetPerm,
  ipcStat,
  journalUsed,
  recoverInflight as recoverInflightIn,
  recoverJournal,
} from './kernel.js';
import * as S from '../../tables/schema.js';

/**
 * What the three kinds of SysV object (sem.ts, shm.ts, msg.ts) share, and
 * the face each shows the rest of the library (Kind): its capture (what a
 * snapshot holds of it), its re-creation (restore and clone), its removal
 * (cleanup and gc) and its kernel-side check (verify), side by side as
 * CRIU's ipc_ns.c holds them. snapshot.ts, restore.ts, cleanup.ts and
 * verify.ts keep the transactions, files and reports, and loop over the
 * kinds (kinds.ts).
 */

/** What a snapshot holds of every object: its virtual ID and key, owner and mode. */
export interface Perm {
  vrid: number;
  vkey: number;
  uid: number;
  gid: number;
  mode: number;
}

/** What a snapshot counts as it captures. */
export interface CaptureCounts {
  sems: number;
  segments: number;
  shmBytes: number;
  /** Of the time, what copying shared memory into the file took. */
  copySeconds: number;
  queues: number;
  messages: number;
}

/** What a restore counts as it makes objects again. */
export interface RestoreCounts {
  sems: number;
  segments: number;
  shmBytes: number;
  /** A template's segments mapped, not made (clones only). */
  shared: number;
  /** Of the time, what filling shared memory from the file took. */
  copySeconds: number;
  queues: number;
  messages: number;
}

/** A template's shared segment: mapped into a clone, not made again. */
export interface SharedSegment {
  vrid: number;
  vkey: number;
  srid: number;
  skey: number;
}

export interface CaptureContext {
  aid: string;
  /** The application's processes, every one stopped. */
  pids: number[];
  sum: CaptureCounts;
  progress?: Progress;
}

export interface RecreateContext {
  t: TableDb;
  aid: string;
  /** Whether saved keys may be had as they are (not --no-identity). */
  identity: boolean;
  sum: RestoreCounts;
  progress?: Progress;
  /** A clone's template segments, by vrid: mapped instead of made. */
  shared: Map<number, SharedSegment>;
}

/** What became of the kernel object a row names, at removal: a segment
 * still attached is left alone, with the note that says so. */
export type Outcome = 'removed' | 'gone' | { attached: string } | { failed: string };

export interface Kind {
  type: IpcType;
  /** Snapshot: writes the sections of the application's live objects of this kind. */
  capture(w: SnapWriter, rows: FwdRow[], c: CaptureContext): void;
  /** Restore, clone: makes again (and maps) what one section of this kind holds. */
  recreate(r: SnapReader, s: Section, c: RecreateContext): void;
  /** Cleanup, gc: removes the object a row names, if it still is that object. */
  remove(row: FwdRow, listings: Listings): Outcome;
  /** Verify: why the kernel does not hold object srid under key, or null when it does. */
  check(listings: Listings, srid: number, key: number): string | null;
}

/* --- capture ---------------------------------------------------------------- */

/** The rows of one kind whose objects are still the application's (not removed while attached). */
export function liveRows(rows: FwdRow[], type: IpcType): FwdRow[] {
  return rows.filter((r) => r.type === S.RT[type] && !S.fwdValRemoved(r));
}

/** A row's kernel object as it must still be: gone means the application ended under us. */
export function capturedStat(type: IpcType, row: FwdRow, aid: string) {
  try {
    const st = ipcStat(type, row.srid);
    if (st.key >>> 0 !== row.skey >>> 0) throw new Error('its key changed');
    return st;
  } catch (err) {
    throw endedDuring(type, row, aid, (err as Error).message);
  }
}

/** A row's kernel object gone or changed under the snapshot, and why. */
export function endedDuring(type: IpcType, row: FwdRow, aid: string, why: string): AppshotError {
  return new AppshotError(`application '${aid}' ended during the snapshot (${type} ${row.srid}, virtual ${row.vrid}: ${why}); no snapshot was written`);
}

export const perm = (row: FwdRow, st: { uid: number; gid: number; mode: number }): Perm => ({ vrid: row.vrid, vkey: row.vkey, uid: st.uid, gid: st.gid, mode: st.mode & 0o777 });

/* --- re-creation ------------------------------------------------------------ */

/** Inside a write transaction: a creator that died between its kernel call
 * and its commit may have left an unmapped object; remove it. */
export function recoverInflight(t: TableDb): string | null {
  if (t.empty) return null; // nothing has run: no record, and none is made
  return recoverInflightIn(t.home, (type, srid) => t.rev.get(S.revKey(t.node, type, srid)) !== undefined);
}

/** journalUsed, with what a damaged or unreadable journal means said. */
function journalHolds(home: string): number {
  try {
    return journalUsed(home);
  } catch (err) {
    const file = join(home, S.INFLIGHT_FILE);
    if ((err as NodeJS.ErrnoException).code === 'EPROTO')
      throw new AppshotError(`the journal of new objects in ${file} is damaged (its header is not a journal's): end this home's applications (appshot ps, appshot stop) and remove that file`, EXIT.home);
    throw new AppshotError(`cannot open the journal of new objects in ${file}: ${(err as Error).message}`, EXIT.home);
  }
}

/**
 * The rows of new private objects the shim keeps in the home's journal
 * (native/core/journal.h) moved into the tables, in a write transaction of
 * their own, with what a creator that died while creating left removed:
 * before anything reads an application's rows as a whole. Returns what it
 * removed, or null.
 */
export function foldJournal(t: TableDb): string | null {
  if (t.empty || journalHolds(t.home) === 0) return null;
  let recovered: string | null = null;
  let committed = false;
  try {
    writeTxn(t, () => {
      recovered = recoverJournal(t.home, (type, srid) => t.rev.get(S.revKey(t.node, type, srid)) !== undefined);
      try {
        foldJournalBegin(t.home, (aid, type, vrid, srid, creator, createdMs, vkey, skey) =>
          rows.mapOver(t, aid, type, vrid, { srid, vkey, skey, creator, createdMs }),
        );
      } catch (err) {
        // The rows given back before the abort lets the write lock go: the
        // next writer's fold passes over rows a live process holds.
        foldJournalEnd(t.home, false);
        if (err instanceof AppshotError) throw err;
        throw new AppshotError(`cannot move the rows of new objects into the tables at ${t.path}: ${(err as Error).message}`, EXIT.failure);
      }
    });
    committed = true;
  } finally {
    foldJournalEnd(t.home, committed);
  }
  return recovered;
}

/** Maps a saved object at its saved vrid. The AID is fresh or ended, so
 * a row already there is one cleanup left behind (a segment still
 * attached outside): say so rather than overwrite it. */
function mapObject(t: TableDb, aid: string, type: IpcType, vrid: number, row: S.FwdVal): void {
  if (!rows.mapAt(t, aid, S.RT[type], vrid, row)) throw mappedAlready(aid, type, vrid);
}

/** A saved vrid the application maps already. */
export function mappedAlready(aid: string, type: IpcType, vrid: number): AppshotError {
  return new AppshotError(`application '${aid}' still maps virtual ${IPC_NOUN[type]} ${vrid} from an earlier run; run 'appshot gc', or restore under another --aid`, EXIT.conflict);
}

/** Creates one kernel object for a saved one and records it, in one write
 * transaction under the inflight record: a crash leaves no object unmapped. */
export function createObject(t: TableDb, aid: string, identity: boolean, type: IpcType, rec: { vrid: number; vkey: number }, size: number): number {
  const keyType = S.RT[S.KEY_TYPE_OF[type]!];
  let srid = -1;
  try {
    writeTxn(t, () => {
      srid = -1;
      recoverInflight(t); // a record a dead creator left must not be overwritten
      let skey = 0;
      if (rec.vkey) skey = rows.claimSkey(t, aid, keyType, rec.vkey, identity);
      for (;;) {
        try {
          srid = ipcCreate(t.home, aid, type, skey, size, 0o600);
          break;
        } catch (err) {
          // A program outside appshot holds that key: take another.
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !rec.vkey) throw err;
          rows.release(t, keyType, skey);
          skey = rows.claimSkey(t, aid, keyType, rec.vkey, false);
        }
      }
      const now = Date.now();
      if (rec.vkey) rows.putFwd(t, aid, keyType, rec.vkey, { srid: skey, vkey: 0, skey: 0, creator: process.pid, createdMs: now });
      mapObject(t, aid, type, rec.vrid, { srid, vkey: rec.vkey, skey, creator: process.pid, createdMs: now });
    });
  } catch (err) {
    if (srid >= 0) ipcRemove(type, srid); // made, never recorded
    throw err;
  } finally {
    inflightClear(t.home);
  }
  return srid;
}

/** Gives a made object its saved owner and mode (and a queue its byte limit). */
export function setPerm(type: IpcType, srid: number, rec: { uid: number; gid: number; mode: number }, qbytes?: number): void {
  ipcSetPerm(type, srid, { uid: rec.uid, gid: rec.gid, mode: rec.mode, ...(qbytes ? { qbytes } : {}) });
}

/** What made the restore fail, said with the object it was at. */
export function failedAt(what: string, err: unknown): AppshotError {
  if (err instanceof AppshotError) return err;
  const e = err as NodeJS.ErrnoException;
  const hint = e.code === 'ENOSPC' || e.code === 'ENOMEM' || e.code === 'EINVAL' ? ' (a kernel limit: see ipcs -l)' : '';
  return new AppshotError(`restore failed at ${what}: ${e.message}${hint}; everything it had made was removed`, EXIT.failure);
}

/* --- removal and check ------------------------------------------------------ */

/** Whether the reverse row of a row's object still names the row: the
 * object is this application's, not another's that took its ID since. */
export function rowIsOurs(t: TableDb, row: FwdRow): boolean {
  const rev = t.rev.get(S.revKey(t.node, row.type, row.srid));
  if (rev === undefined) return false;
  const r = S.decodeRevVal(rev);
  return r.aid === row.aid && r.vrid === row.vrid;
}

/** The key a row's object must carry in the kernel: its skey, or 0 once it
 * was removed while attached (IPC_RMID makes the key private). */
export const recordedKey = (row: S.FwdVal): number => (S.fwdValRemoved(row) ? 0 : row.skey);

/** Why the kernel does not hold object srid of type under key, or null when
 * it does. A row can be stale (its object removed behind the shim's back)
 * and its ID reused since by a program outside appshot, under another key. */
export function whyNotHeld(type: IpcType, listings: Listings, srid: number, key: number): string | null {
  const obj = listings.of(type).get(srid);
  if (obj && obj.key >>> 0 === key >>> 0) return null;
  return obj ? `the kernel's ${IPC_NOUN[type]} ${srid} has key ${keyText(obj.key)}, not ${keyText(key)}` : `the kernel has no ${IPC_NOUN[type]} ${srid}`;
}

const EINVAL = 22;
const EIDRM = 43;

/** IPC_RMID of the object a row names, which the caller found still held. */
export function removeHeld(type: IpcType, row: FwdRow): Outcome {
  const err = ipcRemove(type, row.srid);
  if (err === 0) return 'removed';
  if (err === EINVAL || err === EIDRM) return 'gone';
  return {
    failed: `could not remove ${IPC_NOUN[type]} ${row.srid} (virtual ${row.vrid}): errno ${err}; remove it as its owner with 'ipcrm ${IPCRM_OPTION[type]} ${row.srid}'`,
  };
}

/** Removal of a kind whose objects nothing attaches (sem, msg): the
 * object goes if it is still the one the row names. */
export function removeObject(type: IpcType, row: FwdRow, listings: Listings): Outcome {
  return whyNotHeld(type, listings, row.srid, recordedKey(row)) ? 'gone' : removeHeld(type, row);
}
