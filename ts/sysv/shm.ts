import type { Progress } from '../progress.js';
import { processesOf } from '../procinfo.js';
import * as rows from '../rows.js';
import type { Section, SnapReader } from '../snapfile.js';
import { type FwdRow, type TableDb, writeTxn } from '../tabledb.js';
import { keyText } from './ipctype.js';
import { type Listings, shmAttachModes, shmAttachers } from './kernel.js';
import {
  type Kind,
  type Perm,
  type SharedSegment,
  capturedStat,
  createObject,
  failedAt,
  liveRows,
  perm,
  recordedKey,
  removeHeld,
  rowIsOurs,
  setPerm,
  whyNotHeld,
} from './object.js';
import * as S from '../../tables/schema.js';

/**
 * Shared memory segments: a snapshot streams each segment's bytes into its
 * own SHM section (never whole in memory) with how the application had it
 * attached; restore makes it again and fills it, or, in a clone, maps the
 * template's shared segment instead. A segment still attached is never
 * removed: the kernel keeps it until the last detach, and so do its rows.
 */

export interface ShmRecord extends Perm {
  size: number;
  /** How the application's processes had it attached at the snapshot
   * (absent in snapshots made before templates): a template shares a
   * segment nobody had writable. */
  attached?: { rw: number; ro: number };
}

/** The bytes of the application's live segments: what a snapshot will hold. */
export function capturedBytes(rows: FwdRow[], aid: string): number {
  return liveRows(rows, 'shm').reduce((n, r) => n + capturedStat('shm', r, aid).size, 0);
}

/** One saved segment made (under the inflight record) and filled from its
 * section; the caller gives it its owner and mode. */
export function makeSegment(
  t: TableDb,
  r: SnapReader,
  s: Section,
  aid: string,
  identity: boolean,
  rec: ShmRecord,
  crc: number,
  progress?: Progress,
): { srid: number; copySeconds: number } {
  let srid: number;
  try {
    srid = createObject(t, aid, identity, 'shm', rec, rec.size);
  } catch (err) {
    throw failedAt(`shared memory segment ${rec.vrid} (${rec.size} bytes)`, err);
  }
  const copyStart = performance.now();
  r.shmInto(s, srid, rec.size, crc, progress?.advance);
  return { srid, copySeconds: (performance.now() - copyStart) / 1000 };
}

/** Rows that map a template's shared segment, and its key, into a clone:
 * no reverse rows (they are the template's), creator CREATOR_TEMPLATE. */
function mapShared(t: TableDb, aid: string, seg: SharedSegment): void {
  const row = { vkey: seg.vkey, skey: seg.skey, creator: S.CREATOR_TEMPLATE, createdMs: Date.now() };
  writeTxn(t, () => {
    if (seg.vkey) rows.putFwd(t, aid, S.RT.shmkey, seg.vkey, { ...row, srid: seg.skey, vkey: 0, skey: 0 });
    rows.putFwd(t, aid, S.RT.shm, seg.vrid, { ...row, srid: seg.srid });
  });
}

/** Why a segment the application has ended with is left: who has it attached. */
function attachedNote(row: FwdRow): string {
  const pids = shmAttachers(row.srid);
  const who = pids.length ? ` (process${pids.length === 1 ? '' : 'es'} ${pids.join(', ')})` : '';
  const key = row.vkey ? `, key ${keyText(row.vkey)}` : '';
  return (
    `shared memory segment ${row.srid} (virtual ${row.vrid}${key}) is still attached by a process outside the application${who}: ` +
    `left alone with its table rows; 'appshot gc' removes it once they detach`
  );
}

/** Whether a removed segment's last detach by the application has come:
 * its own segment is gone from the kernel; a template's segment, which the
 * kernel keeps for the other clones, is attached by none of its processes. */
export function lastDetachCame(t: TableDb, aid: string, row: FwdRow, listings: Listings): boolean {
  if (row.creator !== S.CREATOR_TEMPLATE) return !listings.of('shm').has(row.srid) && rowIsOurs(t, row);
  const attachers = new Set(shmAttachers(row.srid));
  return !processesOf(aid, t).some((pid) => attachers.has(pid));
}

export const SHM: Kind = {
  type: 'shm',

  capture(w, rows, c) {
    const segments = liveRows(rows, 'shm').map((row) => ({ row, st: capturedStat('shm', row, c.aid) }));
    c.progress?.start(segments.reduce((n, s) => n + s.st.size, 0));
    const modes = shmAttachModes(c.pids);
    for (const { row, st } of segments) {
      const rec: ShmRecord = { ...perm(row, st), size: st.size, attached: modes.get(row.srid) ?? { rw: 0, ro: 0 } };
      const copyStart = performance.now();
      w.shm(rec, row.srid, st.size, c.progress?.advance);
      c.sum.copySeconds += (performance.now() - copyStart) / 1000;
      c.sum.segments++;
      c.sum.shmBytes += st.size;
    }
    c.progress?.stop();
  },

  recreate(r, s, c) {
    const { header: rec, bytes, sum: crc } = r.headerOf<ShmRecord>(s);
    if (bytes !== rec.size) throw r.badChecksum(s);
    const seg = c.shared.get(rec.vrid);
    if (seg) {
      r.skip(s);
      mapShared(c.t, c.aid, seg);
      c.sum.shared++;
      return;
    }
    const made = makeSegment(c.t, r, s, c.aid, c.identity, rec, crc, c.progress);
    c.sum.copySeconds += made.copySeconds;
    setPerm('shm', made.srid, rec);
    c.sum.segments++;
    c.sum.shmBytes += rec.size;
  },

  remove(row, listings) {
    if (whyNotHeld('shm', listings, row.srid, recordedKey(row))) return 'gone';
    // The application's processes are gone, so a process outside it has it attached.
    if (listings.of('shm').get(row.srid)!.nattch > 0) return { attached: attachedNote(row) };
    return removeHeld('shm', row);
  },

  check: (listings, srid, key) => whyNotHeld('shm', listings, srid, key),
};
