import { existsSync } from 'node:fs';
import { addon } from './addon.js';
import { appLive, endApp, recoverInflight } from './cleanup.js';
import { AppshotError, EXIT } from './errors.js';
import { ipcRemove } from './libc.js';
import type { Progress } from './progress.js';
import { checkAppAid } from './aid.js';
import { registerApp } from './registry.js';
import * as rows from './rows.js';
import type { MsgRecord, SemRecord, ShmRecord, SnapMeta } from './snapshot.js';
import { type Section, SnapReader } from './snapfile.js';
import { IPC_NOUN } from './sysvipc.js';
import { type TableDb, fwdRows, getApp, writeTxn } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * FIG. 6: the application's global and shared state made again from a
 * snapshot, under whatever system IDs and keys the kernel gives now, each
 * bound to its saved virtual ID and key; then the caller starts the
 * command. All or nothing: on any failure everything made so far goes,
 * rows and application record included.
 */

export interface RestoreSummary {
  aid: string;
  meta: SnapMeta;
  sems: number;
  segments: number;
  shmBytes: number;
  /** A template's segments mapped, not made (clones only). */
  shared: number;
  /** Of the time, what filling shared memory from the file took. */
  copySeconds: number;
  queues: number;
  messages: number;
  seconds: number;
}

export type IpcType = 'sem' | 'shm' | 'msg';
const KEY_TYPE: Record<IpcType, number> = { sem: S.RT.semkey, shm: S.RT.shmkey, msg: S.RT.msgkey };

/** Maps a saved object at its saved vrid. The AID is fresh or ended, so
 * a row already there is one cleanup left behind (a segment still
 * attached outside): say so rather than overwrite it. */
function mapObject(t: TableDb, aid: string, type: IpcType, vrid: number, row: S.FwdVal): void {
  if (!rows.mapAt(t, aid, S.RT[type], vrid, row))
    throw new AppshotError(
      `application '${aid}' still maps virtual ${IPC_NOUN[type]} ${vrid} from an earlier run; run 'appshot gc', or restore under another --aid`,
      EXIT.conflict,
    );
}

/** Creates one kernel object for a saved one and records it, in one write
 * transaction under the inflight record: a crash leaves no object unmapped. */
export function createObject(t: TableDb, aid: string, identity: boolean, type: IpcType, rec: { vrid: number; vkey: number }, size: number): number {
  let srid = -1;
  try {
    writeTxn(t, () => {
      srid = -1;
      recoverInflight(t); // a record a dead creator left must not be overwritten
      let skey = 0;
      if (rec.vkey) skey = rows.claimSkey(t, aid, KEY_TYPE[type], rec.vkey, identity);
      for (;;) {
        try {
          srid = addon().ipcCreate(t.home, aid, type, skey, size, 0o600);
          break;
        } catch (err) {
          // A program outside appshot holds that key: take another.
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !rec.vkey) throw err;
          rows.release(t, KEY_TYPE[type], skey);
          skey = rows.claimSkey(t, aid, KEY_TYPE[type], rec.vkey, false);
        }
      }
      const now = Date.now();
      if (rec.vkey) rows.putFwd(t, aid, KEY_TYPE[type], rec.vkey, { srid: skey, vkey: 0, skey: 0, creator: process.pid, createdMs: now });
      mapObject(t, aid, type, rec.vrid, { srid, vkey: rec.vkey, skey, creator: process.pid, createdMs: now });
    });
  } catch (err) {
    if (srid >= 0) ipcRemove(type, srid); // made, never recorded
    throw err;
  } finally {
    addon().inflightClear(t.home);
  }
  return srid;
}

export function setPerm(type: IpcType, srid: number, rec: { uid: number; gid: number; mode: number }, qbytes?: number): void {
  addon().ipcSetPerm(type, srid, { uid: rec.uid, gid: rec.gid, mode: rec.mode, ...(qbytes ? { qbytes } : {}) });
}

/** What made the restore fail, said with the object it was at. */
export function failedAt(what: string, err: unknown): AppshotError {
  if (err instanceof AppshotError) return err;
  const e = err as NodeJS.ErrnoException;
  const hint = e.code === 'ENOSPC' || e.code === 'ENOMEM' || e.code === 'EINVAL' ? ' (a kernel limit: see ipcs -l)' : '';
  return new AppshotError(`restore failed at ${what}: ${e.message}${hint}; everything it had made was removed`, EXIT.failure);
}

/** Refuses an AID that is running or holds kept state: nothing is touched. */
function checkFree(t: TableDb, aid: string): void {
  const app = getApp(t, aid);
  if (app?.state === S.APP_STATE.running && appLive(t, aid, app))
    throw new AppshotError(`application '${aid}' is running; restore under another --aid, or end it first`, EXIT.conflict);
  if (app?.state === S.APP_STATE.kept)
    throw new AppshotError(`application '${aid}' holds kept state; restore under another --aid, or drop it with 'appshot gc --kept'`, EXIT.conflict);
  // Rows an ended run left (a segment a process outside still has
  // attached) hold virtual IDs the snapshot's objects may need.
  if (app?.state === S.APP_STATE.ended && !fwdRows(t, aid).next().done)
    throw new AppshotError(
      `application '${aid}' has ended but rows of its objects are left (a shared memory segment still attached outside it: 'appshot gc' says which); restore under another --aid, or run 'appshot gc' once they are detached`,
      EXIT.conflict,
    );
}

export function restore(t: TableDb, file: string, opts: { aid?: string; command?: string[]; progress?: Progress }): RestoreSummary {
  const started = performance.now();
  const r = new SnapReader(file);
  try {
    const first = r.next();
    if (first?.kind !== 'meta') throw new AppshotError(`${file} is not a usable snapshot: it does not begin with its META section`, EXIT.inconsistent);
    const meta = r.json<SnapMeta>(first);
    const aid = opts.aid ?? meta.aid;
    checkAppAid(aid);
    checkFree(t, aid);
    if (!opts.command && meta.cwd && !existsSync(meta.cwd))
      throw new AppshotError(`the snapshot's working directory ${meta.cwd} does not exist here; create it, or give the command to run after --`, EXIT.failure);
    registerApp(t, { aid, command: opts.command ?? meta.command, noIdentity: meta.noIdentity, publish: meta.publish, redirects: meta.redirects });
    const sum: RestoreSummary = { aid, meta, sems: 0, segments: 0, shmBytes: 0, shared: 0, copySeconds: 0, queues: 0, messages: 0, seconds: 0 };
    try {
      opts.progress?.start(meta.shmBytes);
      restoreSections(t, r, aid, !meta.noIdentity, sum, opts.progress);
      opts.progress?.stop();
    } catch (err) {
      endApp(t, aid, { keep: false });
      writeTxn(t, () => t.apps.removeSync(Buffer.from(aid, 'latin1')));
      throw err;
    }
    sum.seconds = (performance.now() - started) / 1000;
    return sum;
  } finally {
    r.close();
  }
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

/** A template's shared segment: mapped into a clone, not made again. */
export interface SharedSegment {
  vrid: number;
  vkey: number;
  srid: number;
  skey: number;
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

export function restoreSections(
  t: TableDb,
  r: SnapReader,
  aid: string,
  identity: boolean,
  sum: RestoreSummary,
  progress?: Progress,
  shared: Map<number, SharedSegment> = new Map(),
): void {
  for (let s = r.next(); s; s = r.next()) {
    if (s.kind === 'rows' || s.kind === 'meta') {
      r.json(s); // checked; the objects' own sections say what to make
    } else if (s.kind === 'sem') {
      for (const rec of r.json<SemRecord[]>(s)) {
        const what = `semaphore set ${rec.vrid}`;
        try {
          const srid = createObject(t, aid, identity, 'sem', rec, rec.values.length);
          addon().semSetAll(srid, rec.values);
          setPerm('sem', srid, rec);
        } catch (err) {
          throw failedAt(what, err);
        }
        sum.sems++;
      }
    } else if (s.kind === 'shm') {
      const { header: rec, bytes, sum: crc } = r.shmHeader<ShmRecord>(s);
      if (bytes !== rec.size) throw r.badChecksum(s);
      const seg = shared.get(rec.vrid);
      if (seg) {
        r.skip(s);
        mapShared(t, aid, seg);
        sum.shared++;
        continue;
      }
      const made = makeSegment(t, r, s, aid, identity, rec, crc, progress);
      sum.copySeconds += made.copySeconds;
      setPerm('shm', made.srid, rec);
      sum.segments++;
      sum.shmBytes += rec.size;
    } else if (s.kind === 'msg') {
      const rec = r.json<MsgRecord>(s);
      try {
        const srid = createObject(t, aid, identity, 'msg', rec, 0);
        setPerm('msg', srid, rec, rec.qbytes);
        addon().msgSendAll(srid, rec.messages.map((m) => ({ type: m.type, data: Buffer.from(m.data, 'base64') })));
      } catch (err) {
        throw failedAt(`message queue ${rec.vrid}`, err);
      }
      sum.queues++;
      sum.messages += rec.messages.length;
    }
  }
}
