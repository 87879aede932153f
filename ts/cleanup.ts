import { templateFileExists } from './home.js';
import { processAlive, processesOf } from './procinfo.js';
import { unmap } from './rows.js';
import { isIpcType } from './sysv/ipctype.js';
import { Listings } from './sysv/kernel.js';
import { KINDS } from './sysv/kinds.js';
import { foldJournal, recoverInflight, rowIsOurs } from './sysv/object.js';
import { lastDetachCame } from './sysv/shm.js';
import { type TableDb, appRows, fwdRows, getApp, prefixRange, putApp, writeTxn } from './tabledb.js';
import * as S from '../tables/schema.js';

export interface CleanupReport {
  aid: string;
  /** Kernel objects removed, by resource type. */
  removed: Partial<Record<S.ResourceType, number>>;
  rows: number;
  notes: string[];
}

/** Inside a write transaction: removes every kernel object of the
 * application and every row that names it, except its apps row and the
 * rows of segments left alone because a process outside still has them
 * attached. Returns how many were left alone. */
function removeAll(t: TableDb, aid: string, report: CleanupReport): number {
  const listings = new Listings();
  const rows = [...fwdRows(t, aid)];
  const keep = new Set<string>();
  for (const row of rows) {
    const type = S.RT_NAME[row.type];
    if (!isIpcType(type) || !rowIsOurs(t, row)) continue;
    const outcome = KINDS[type].remove(row, listings);
    if (outcome === 'removed') report.removed[type] = (report.removed[type] ?? 0) + 1;
    else if (outcome === 'gone') continue;
    else if ('failed' in outcome) report.notes.push(outcome.failed);
    else {
      report.notes.push(outcome.attached);
      keep.add(S.fwdKey(aid, row.type, row.vrid).toString('hex'));
      if (row.vkey) keep.add(S.fwdKey(aid, S.RT[S.KEY_TYPE_OF[type]!], row.vkey).toString('hex'));
    }
  }
  for (const row of rows) {
    const fwdKey = S.fwdKey(aid, row.type, row.vrid);
    if (keep.has(fwdKey.toString('hex'))) continue;
    report.rows += unmap(t, aid, row.type, row.vrid);
  }
  for (const db of [t.alloc, t.paths]) {
    for (const key of [...db.getKeys(prefixRange(S.fwdPrefix(aid)))]) {
      db.removeSync(key);
      report.rows++;
    }
  }
  dropProcsRows(t, aid, report);
  return keep.size;
}

function dropProcsRows(t: TableDb, aid: string, report: CleanupReport): void {
  for (const { key, value } of [...t.procs.getRange({})]) {
    if (S.decodeProcVal(value).aid === aid) {
      t.procs.removeSync(key);
      report.rows++;
    }
  }
}

/** Inside a write transaction: the rows of the application's processes,
 * which are all gone when it ends, kept or not. */
function forgetProcesses(t: TableDb, aid: string, report: CleanupReport): void {
  for (const row of [...fwdRows(t, aid, S.RT.pid)]) {
    unmap(t, aid, row.type, row.vrid);
    report.rows++;
  }
  dropProcsRows(t, aid, report);
}

/**
 * The end of an application (FIG. 5's --stop, or its last process gone):
 * kernel objects removed and tables marked ended, or with keep both left
 * for a later snapshot and the application marked kept.
 */
export function endApp(t: TableDb, aid: string, opts: { keep: boolean }): CleanupReport {
  const recovered = foldJournal(t);
  const report = writeTxn(t, () => endAppInTxn(t, aid, opts));
  if (recovered) report.notes.push(recovered);
  return report;
}

export function endAppInTxn(t: TableDb, aid: string, opts: { keep: boolean }): CleanupReport {
  const report: CleanupReport = { aid, removed: {}, rows: 0, notes: [] };
  const recovered = recoverInflight(t);
  if (recovered) report.notes.push(recovered);
  if (!opts.keep) removeAll(t, aid, report);
  else forgetProcesses(t, aid, report);
  const app = getApp(t, aid);
  if (app) putApp(t, aid, { ...app, state: opts.keep ? S.APP_STATE.kept : S.APP_STATE.ended, endedMs: app.endedMs || Date.now() });
  return report;
}

/** A running application is live while its harness or any process started
 * under it is. */
export function appLive(t: TableDb, aid: string, app: S.AppVal): boolean {
  return processAlive(app.harnessSpid, app.harnessStart) || processesOf(aid, t).length > 0;
}

/** Whether any fwd row still names the application. */
export function hasRows(t: TableDb, aid: string): boolean {
  return !fwdRows(t, aid).next().done;
}

/** A live application's segments removed while attached whose last detach
 * came at a process's exit (no shmdt for the shim to see): their rows go. */
function dropGoneSegments(t: TableDb, aid: string, listings: Listings): CleanupReport | null {
  // No AID on the report: the application is not ended, only tidied.
  const report: CleanupReport = { aid: '', removed: {}, rows: 0, notes: [] };
  let segments = 0;
  for (const row of [...fwdRows(t, aid, S.RT.shm)]) {
    if (!S.fwdValRemoved(row) || !lastDetachCame(t, aid, row, listings)) continue;
    segments++;
    report.rows += unmap(t, aid, row.type, row.vrid);
  }
  if (!report.rows) return null;
  report.notes.push(`dropped the rows of ${segments} removed shared memory segment(s) of running application '${aid}' whose last detach has come`);
  return report;
}

/** What a crashed harness left behind: applications marked running whose
 * processes are all gone are ended; ended ones whose segments were left
 * attached are retried; with kept, kept ones are ended too. */
export function gc(t: TableDb, opts: { kept: boolean }): CleanupReport[] {
  const fromJournal = foldJournal(t);
  return writeTxn(t, () => {
    const reports: CleanupReport[] = [];
    if (fromJournal) reports.push({ aid: '', removed: {}, rows: 0, notes: [fromJournal] });
    const listings = new Listings();
    const recovered = recoverInflight(t);
    if (recovered) reports.push({ aid: '', removed: {}, rows: 0, notes: [recovered] });
    for (const { aid, app } of [...appRows(t)]) {
      const running = app.state === S.APP_STATE.running;
      const live = running && appLive(t, aid, app);
      const stale = running && !live;
      const dropKept = opts.kept && app.state === S.APP_STATE.kept;
      const leftovers = app.state === S.APP_STATE.ended && hasRows(t, aid);
      const halfMadeTemplate = app.state === S.APP_STATE.template && !processAlive(app.harnessSpid, app.harnessStart) && !templateFileExists(t.home, aid);
      if (halfMadeTemplate) {
        reports.push(endAppInTxn(t, aid, { keep: false }));
        t.apps.removeSync(Buffer.from(aid, 'latin1'));
      } else if (stale || dropKept || leftovers) reports.push(endAppInTxn(t, aid, { keep: false }));
      else if (live) {
        const dropped = dropGoneSegments(t, aid, listings);
        if (dropped) reports.push(dropped);
      }
    }
    return reports;
  });
}
