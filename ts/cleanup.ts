import { addon } from './addon.js';
import { semRemove } from './libc.js';
import { processAlive, processesOf } from './procinfo.js';
import { semKeysById } from './sysvipc.js';
import { type FwdRow, type Tables, appRows, fwdRows, getApp, prefixRange, putApp, writeTxn } from './tables.js';
import * as S from '../tables/schema.js';

export interface CleanupReport {
  aid: string;
  /** Kernel objects removed, by resource type. */
  removed: Partial<Record<S.ResourceType, number>>;
  rows: number;
  notes: string[];
}

const EINVAL = 22;
const EIDRM = 43;

/**
 * Removes the kernel set a row names, if it is still that set: present,
 * and carrying the key the row says it was created with. A row can be
 * stale (its set removed behind the shim's back) and its ID reused since by
 * a program outside appshot, whose set must not go. Returns whether it
 * removed it, or a note when it could not.
 */
function removeSet(row: FwdRow, sets: Map<number, number>): boolean | string {
  if (sets.get(row.srid) !== row.skey) return false;
  const err = semRemove(row.srid);
  if (err === 0) return true;
  if (err === EINVAL || err === EIDRM) return false;
  return `could not remove semaphore set ${row.srid} (virtual ${row.vrid}): errno ${err}; remove it as its owner with 'ipcrm -s ${row.srid}'`;
}

/** Inside a write transaction: a creator that died between its kernel call
 * and its commit may have left an unmapped object; remove it. */
export function recoverInflight(t: Tables): string | null {
  return addon().recoverInflight(t.home, (type, srid) => t.rev.get(S.revKey(t.node, type, srid)) !== undefined);
}

/** Inside a write transaction: removes every kernel object of the
 * application and every row that names it, except its apps row. */
function removeAll(t: Tables, aid: string, report: CleanupReport): void {
  const sets = semKeysById();
  for (const row of [...fwdRows(t, aid)]) {
    const revKey = S.revKey(t.node, row.type, row.srid);
    const rev = t.rev.get(revKey);
    const ours = rev !== undefined && S.decodeRevVal(rev).aid === aid && S.decodeRevVal(rev).vrid === row.vrid;
    if (ours) {
      const removed = row.type === S.RT.sem ? removeSet(row, sets) : false;
      if (typeof removed === 'string') report.notes.push(removed);
      else if (removed) report.removed.sem = (report.removed.sem ?? 0) + 1;
      t.rev.removeSync(revKey);
      report.rows++;
    }
    t.fwd.removeSync(S.fwdKey(aid, row.type, row.vrid));
    report.rows++;
  }
  for (const { key } of [...t.alloc.getRange(prefixRange(S.fwdPrefix(aid)))]) {
    t.alloc.removeSync(key);
    report.rows++;
  }
  for (const { key, value } of [...t.procs.getRange({})]) {
    if (S.decodeProcVal(value).aid === aid) {
      t.procs.removeSync(key);
      report.rows++;
    }
  }
}

/**
 * The end of an application (FIG. 5's --stop, or its last process gone):
 * kernel objects removed and tables marked ended, or with keep both left
 * for a later snapshot and the application marked kept.
 */
export function endApp(t: Tables, aid: string, opts: { keep: boolean }): CleanupReport {
  return writeTxn(t, () => endAppInTxn(t, aid, opts));
}

export function endAppInTxn(t: Tables, aid: string, opts: { keep: boolean }): CleanupReport {
  const report: CleanupReport = { aid, removed: {}, rows: 0, notes: [] };
  const recovered = recoverInflight(t);
  if (recovered) report.notes.push(recovered);
  if (!opts.keep) removeAll(t, aid, report);
  const app = getApp(t, aid);
  if (app) putApp(t, aid, { ...app, state: opts.keep ? S.APP_STATE.kept : S.APP_STATE.ended, endedMs: Date.now() });
  return report;
}

/** A running application is live while its harness or any process started
 * under it is. */
export function appLive(t: Tables, aid: string, app: S.AppVal): boolean {
  return processAlive(app.harnessSpid, app.harnessStart) || processesOf(aid, t.home).length > 0;
}

/** What a crashed harness left behind: applications marked running whose
 * processes are all gone are ended; with kept, kept ones are ended too. */
export function gc(t: Tables, opts: { kept: boolean }): CleanupReport[] {
  return writeTxn(t, () => {
    const reports: CleanupReport[] = [];
    const recovered = recoverInflight(t);
    if (recovered) reports.push({ aid: '', removed: { sem: 1 }, rows: 0, notes: [recovered] });
    for (const { aid, app } of [...appRows(t)]) {
      const stale = app.state === S.APP_STATE.running && !appLive(t, aid, app);
      const dropKept = opts.kept && app.state === S.APP_STATE.kept;
      if (stale || dropKept) reports.push(endAppInTxn(t, aid, { keep: false }));
    }
    return reports;
  });
}
