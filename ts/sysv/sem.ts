import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { AppshotError, EXIT } from '../errors.js';
import { SEMSETS_PATH } from '../paths.js';
import type { FwdRow, TableDb } from '../tabledb.js';
import { semCapture } from './kernel.js';
import { type Kind, type Perm, endedDuring, failedAt, liveRows, mappedAlready, perm, removeObject, whyNotHeld } from './object.js';

/**
 * Semaphore sets: a snapshot holds each set's values (one SEM section for
 * all of them); restore makes each set again, sets its values, then gives
 * it its owner and mode (last: a mode without write would refuse SETALL).
 * Restore hands the sets to appshot-semsets (native/snapshot/semsets.c),
 * which makes each one as the shim's semget does, in one write transaction
 * under the inflight record: from Node each set cost a transaction through
 * the lmdb package, ~110 us of CPU, most of a restore of thousands of sets.
 */

export interface SemRecord extends Perm {
  values: number[];
}

/** The sets as appshot-semsets reads them (native byte order: a pipe to a
 * program of this machine): vrid, vkey, uid, gid, mode, nsems as u32, then
 * the values as u16. */
function encodeSets(recs: SemRecord[]): Buffer {
  let size = 0;
  for (const r of recs) {
    checkRecord(r);
    size += 24 + 2 * r.values.length;
  }
  // Through a DataView, with no array per set: written once per restore,
  // in code not warmed up yet, where 2,500 sets took 8-13 ms the other way.
  const b = Buffer.alloc(size);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 0;
  for (const r of recs) {
    view.setUint32(at, r.vrid, true);
    view.setUint32(at + 4, r.vkey, true);
    view.setUint32(at + 8, r.uid, true);
    view.setUint32(at + 12, r.gid, true);
    view.setUint32(at + 16, r.mode, true);
    view.setUint32(at + 20, r.values.length, true);
    at += 24;
    for (const v of r.values) {
      view.setUint16(at, v, true);
      at += 2;
    }
  }
  return b;
}

const isU32 = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
/** A set the snapshot's checksum vouches for but no appshot wrote (values
 * a semaphore cannot hold): refused before anything is made of it. */
function checkRecord(r: SemRecord): void {
  const ok = isU32(r.vrid) && isU32(r.vkey) && isU32(r.uid) && isU32(r.gid) && isU32(r.mode) && Array.isArray(r.values) && r.values.length > 0 && r.values.length < 65536;
  if (!ok || !r.values.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffff))
    throw failedAt(`semaphore set ${r.vrid}`, new Error('the snapshot holds a set no appshot writes (its IDs, mode or values out of range)'));
}

/** The error appshot-semsets ended with, said for the set it was at. */
function semsetsError(aid: string, rec: SemRecord | undefined, line: string | undefined, status: number | null, signal: string | null): Error {
  const what = rec ? `semaphore set ${rec.vrid}` : 'the semaphore sets';
  if (line === 'mapped' && rec) return mappedAlready(aid, 'sem', rec.vrid);
  const m = /^error (\d+) (.*)$/.exec(line ?? '');
  if (!m) return failedAt(what, new Error(`${SEMSETS_PATH} ended ${signal ? `by ${signal}` : `with status ${status}`} without saying why`));
  const errno = Number(m[1]);
  return failedAt(what, Object.assign(new Error(m[2]), { errno, code: errnoName(errno) }));
}

const errnoName = (errno: number) => Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;

/** Every live set's owner, mode and values, read in one call (semCapture:
 * two addon calls per set were most of capturing thousands); a set gone or
 * under another key means the application ended under the snapshot. */
function captureSets(rows: FwdRow[], aid: string): SemRecord[] {
  const got = semCapture(Int32Array.from(rows, (r) => r.srid));
  let at = 0;
  return rows.map((row) => {
    if (got[at]) throw endedDuring('sem', row, aid, `IPC_STAT: ${errnoName(got[at])}`);
    const [key, uid, gid, mode, n] = got.subarray(at + 1, at + 6);
    if (key !== row.skey >>> 0) throw endedDuring('sem', row, aid, 'its key changed');
    at += 6 + n;
    return Object.assign(perm(row, { uid, gid, mode }), { values: Array.from(got.subarray(at - n, at)) });
  });
}

/** Makes the saved sets again under the application, in file order. */
function makeSets(t: TableDb, aid: string, identity: boolean, recs: SemRecord[]): void {
  const env = { ...process.env };
  for (const name of ['LD_PRELOAD', 'APPSHOT_AID']) delete env[name]; // appshot's, outside every application: no shim in it
  const r = spawnSync(SEMSETS_PATH, [t.home, aid, identity ? '1' : '0', String(process.pid)], {
    input: encodeSets(recs),
    encoding: 'latin1',
    stdio: ['pipe', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
    env,
  });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    throw new AppshotError(`cannot start ${SEMSETS_PATH}: it is not built; run 'npm install' to build it; nothing was restored`, EXIT.failure);
  if (r.error) throw failedAt('the semaphore sets', r.error);
  const lines = r.stdout.split('\n').filter(Boolean);
  const made = lines.filter((l) => /^\d+$/.test(l)).length;
  if (r.status !== 0 || made !== recs.length) throw semsetsError(aid, recs[made], lines[made], r.status, r.signal);
}

export const SEM: Kind = {
  type: 'sem',

  capture(w, rows, c) {
    const sems = captureSets(liveRows(rows, 'sem'), c.aid);
    w.json('sem', sems);
    c.sum.sems = sems.length;
  },

  recreate(r, s, c) {
    const recs = r.json<SemRecord[]>(s);
    if (recs.length) makeSets(c.t, c.aid, c.identity, recs);
    c.sum.sems += recs.length;
  },

  remove: (row, listings) => removeObject('sem', row, listings),
  check: (listings, srid, key) => whyNotHeld('sem', listings, srid, key),
};
