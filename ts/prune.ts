import { type CleanupReport, endAppInTxn, hasRows } from './cleanup.js';
import { AppshotError, EXIT } from './errors.js';
import { TEMPLATE_AID_PREFIX } from './home.js';
import { Listings } from './sysv/kernel.js';
import { foldJournal, recordedKey, rowIsOurs, whyNotHeld } from './sysv/object.js';
import { type TableDb, appRows, fwdRows, getApp, removeApp, writeTxn } from './tabledb.js';
import * as S from '../tables/schema.js';

/** An application whose record prune removed (or, dry, would remove). */
export interface Pruned extends CleanupReport {
  /** Its state before: ended, or kept (ended first, as gc --kept does). */
  state: 'ended' | 'kept';
  /** Its translations (fwd rows) before: dry, the ones that would go. */
  translations: number;
}

/** An application prune left, and why. */
export interface Left {
  aid: string;
  state: 'ended' | 'kept';
  reason: string;
}

export interface PruneReport {
  dryRun: boolean;
  pruned: Pruned[];
  left: Left[];
}

/** Why an application's record must stay: a shared memory segment of its
 * own that a live process (necessarily outside it: it has ended) still has
 * attached, so its rows are still held. Null when nothing holds it. */
function heldBy(t: TableDb, aid: string, listings: Listings): string | null {
  const held: string[] = [];
  for (const row of fwdRows(t, aid, S.RT.shm)) {
    if (!rowIsOurs(t, row) || whyNotHeld('shm', listings, row.srid, recordedKey(row))) continue;
    const nattch = listings.of('shm').get(row.srid)!.nattch;
    if (nattch > 0) held.push(`shared memory segment ${row.srid} (virtual ${row.vrid}) is still attached by ${nattch} process${nattch === 1 ? '' : 'es'}`);
  }
  if (!held.length) return null;
  return `${held.join('; ')}: its record stays until they detach (then prune or 'appshot gc' removes the segment)`;
}

/** The applications `appshot rm` names, all checked before anything is
 * removed: each must have a record that is ended or kept. */
function named(t: TableDb, aids: string[]): { aid: string; app: S.AppVal }[] {
  const found: { aid: string; app: S.AppVal }[] = [];
  for (const aid of new Set(aids)) {
    const app = getApp(t, aid);
    if (!app) throw new AppshotError(`no application '${aid}' in ${t.home}: nothing was removed; 'appshot tables --apps' lists the applications there are`, EXIT.failure);
    if (app.state === S.APP_STATE.running)
      throw new AppshotError(`application '${aid}' is running (harness pid ${app.harnessSpid}): nothing was removed; end it first, or if its harness died, 'appshot gc' ends it`, EXIT.conflict);
    if (app.state === S.APP_STATE.template)
      throw new AppshotError(`'${aid}' is a template's entry: nothing was removed; remove the template with 'appshot template rm ${aid.slice(TEMPLATE_AID_PREFIX.length)}'`, EXIT.conflict);
    found.push({ aid, app });
  }
  return found;
}

/**
 * Removes the records of applications that have ended: the apps row and
 * whatever rows of theirs are left (ts/cleanup.ts removes them, and their
 * kernel objects, as gc does). With kept, applications left with --keep
 * too, ended first. Never a running application or a template, nor one
 * whose segment is still attached. One write transaction; dryRun reads
 * only and says what would go. With aids (`appshot rm`), those alone,
 * kept or ended; one running, a template or none at all refuses them all.
 */
export function prune(t: TableDb, opts: { kept: boolean; dryRun: boolean; aids?: string[] }): PruneReport {
  const pass = (): PruneReport => {
    const report: PruneReport = { dryRun: opts.dryRun, pruned: [], left: [] };
    const listings = new Listings();
    const candidates = opts.aids ? named(t, opts.aids) : [...appRows(t)];
    for (const { aid, app } of candidates) {
      const state = S.APP_STATE_NAME[app.state];
      if (state !== 'ended' && state !== 'kept') continue;
      if (state === 'kept' && !opts.kept) {
        report.left.push({ aid, state, reason: "kept for a snapshot (run with --keep): 'appshot prune --kept' ends it and removes it" });
        continue;
      }
      const held = heldBy(t, aid, listings);
      if (held) {
        report.left.push({ aid, state, reason: held });
        continue;
      }
      let translations = 0;
      for (const _ of fwdRows(t, aid)) translations++;
      if (opts.dryRun) {
        report.pruned.push({ aid, state, translations, removed: {}, rows: 0, notes: [] });
        continue;
      }
      const cleaned = endAppInTxn(t, aid, { keep: false });
      if (hasRows(t, aid)) {
        // Cleanup could not remove everything (its notes say why): the
        // record stays for gc to retry.
        report.left.push({ aid, state, reason: cleaned.notes.join('; ') || 'some of its table rows could not be removed' });
        continue;
      }
      if (getApp(t, aid)) removeApp(t, aid);
      report.pruned.push({ ...cleaned, rows: cleaned.rows + 1, state, translations });
    }
    return report;
  };
  if (!opts.dryRun) foldJournal(t);
  return opts.dryRun ? pass() : writeTxn(t, pass);
}
