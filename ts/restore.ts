import { existsSync } from 'node:fs';
import { appLive, endApp } from './cleanup.js';
import { AppshotError, EXIT } from './errors.js';
import type { Progress } from './progress.js';
import { checkAppAid } from './aid.js';
import { forgetApp, registerApp } from './registry.js';
import type { SnapMeta } from './snapshot.js';
import { readProcessSection } from './checkpoint.js';
import { PROCESS_SECTIONS, SnapReader } from './snapfile.js';
import { isIpcType } from './sysv/ipctype.js';
import { KINDS } from './sysv/kinds.js';
import type { RecreateContext, RestoreCounts, SharedSegment } from './sysv/object.js';
import { type TableDb, fwdRows, getApp } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * FIG. 6: the application's global and shared state made again from a
 * snapshot, under whatever system IDs and keys the kernel gives now, each
 * bound to its saved virtual ID and key; then the caller starts the
 * command. All or nothing: on any failure everything made so far goes,
 * rows and application record included.
 */

export interface RestoreSummary extends RestoreCounts {
  aid: string;
  meta: SnapMeta;
  /** The processes the image holds whole (PROC sections), checked here and
   * made again by appshot-checkpoint under the supervisor (harness/run.ts). */
  processes: number;
  seconds: number;
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
    const sum: RestoreSummary = { aid, meta, processes: 0, sems: 0, segments: 0, shmBytes: 0, shared: 0, copySeconds: 0, queues: 0, messages: 0, seconds: 0 };
    try {
      opts.progress?.start(meta.shmBytes);
      restoreSections(t, r, aid, !meta.noIdentity, sum, opts.progress);
      opts.progress?.stop();
    } catch (err) {
      endApp(t, aid, { keep: false });
      forgetApp(t, aid);
      throw err;
    }
    sum.seconds = (performance.now() - started) / 1000;
    return sum;
  } finally {
    r.close();
  }
}

export function restoreSections(
  t: TableDb,
  r: SnapReader,
  aid: string,
  identity: boolean,
  sum: RestoreSummary,
  progress?: Progress,
  shared: Map<number, SharedSegment> = new Map(),
  /** false for a template's clone: the template checked its file whole, and
   * a clone starts the command, its processes are not made from the file. */
  checkProcesses = true,
): void {
  const c: RecreateContext = { t, aid, identity, sum, progress, shared };
  for (let s = r.next(); s; s = r.next()) {
    if (s.kind === 'rows' || s.kind === 'meta') r.json(s); // checked; the objects' own sections say what to make
    else if (isIpcType(s.kind)) KINDS[s.kind].recreate(r, s, c);
    else if (PROCESS_SECTIONS.has(s.kind)) {
      // Checked whole before any process is made from them: a damaged
      // image is refused here, and everything made so far goes.
      if (checkProcesses) readProcessSection(r, s);
      else r.skip(s);
      if (s.kind === 'proc') sum.processes++;
    }
  }
}
