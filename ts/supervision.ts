import { SUPERVISOR_PATH } from './paths.js';
import { exePath, isProcess, processAlive, processesOf } from './procinfo.js';
import { type TableDb, fwdRows } from './tabledb.js';
import * as S from '../tables/schema.js';

/** Whether pid runs appshot-supervisor (appshot's, not the application's). */
export function isSupervisor(pid: number): boolean {
  return exePath(pid) === SUPERVISOR_PATH;
}

/** The application's processes whose pid rows say they still run: the
 * shim records every child at fork, so these include those a /proc scan
 * made while they were being forked would miss. The rows of threads (made
 * at their first gettid) are left out: a thread is its process's. */
function recordedProcesses(t: TableDb, aid: string): number[] {
  const alive: number[] = [];
  for (const r of fwdRows(t, aid, S.RT.pid)) {
    const v = t.procs.get(S.procKey(r.srid));
    if (!v) continue;
    const rec = S.decodeProcVal(v);
    if (rec.aid === aid && processAlive(r.srid, rec.startTicks) && isProcess(r.srid)) alive.push(r.srid);
  }
  return alive;
}

/** Every process of the application still running (stopped ones too),
 * whether or not the supervisor is their ancestor. */
export function processesLeft(t: TableDb, aid: string): number[] {
  const all = new Set([...processesOf(aid, t), ...recordedProcesses(t, aid)]);
  all.delete(process.pid);
  return [...all];
}

/** What is missing of a running application's supervision: its harness
 * (which cleans up after it) or its supervisor (which reaps its orphans and
 * reports its command's status); null when both run. */
export function unsupervised(t: TableDb, aid: string, app: S.AppVal): string | null {
  const harness = processAlive(app.harnessSpid, app.harnessStart);
  const supervisor = processesOf(aid, t).some(isSupervisor);
  if (harness && supervisor) return null;
  if (!harness && !supervisor) return 'no harness, no supervisor';
  return harness ? 'no supervisor' : 'no harness';
}
