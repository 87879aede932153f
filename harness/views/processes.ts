import { type ProcStat, commandLine, isProcess, procStat } from '../../ts/procinfo.js';
import { unsupervised } from '../../ts/supervision.js';
import { type TableDb, fwdRowsOfType, getApp } from '../../ts/tabledb.js';
import * as S from '../../tables/schema.js';
import { type CellFormat, renderRows } from './table.js';

export interface ProcessRow {
  aid: string;
  vpid: number;
  spid: number;
  /** The parent as the application sees it: its vpid when it is a process
   * of the same application, else its spid (0 when the process is gone). */
  ppid: number;
  /** The state letter of /proc/PID/stat (R, S, D, Z, ...), or 'gone': no
   * process has the spid any more, or a newer one has it. */
  state: string;
  command: string;
  /** Set when the application runs without its harness or its supervisor
   * (ts/supervision.ts unsupervised): 'no supervisor', 'no harness', or
   * both. */
  unsupervised?: string;
}

/** spid's stat while it is still the process the procs table recorded for
 * aid: a PID can have been reused since. */
function recordedStat(t: TableDb, spid: number, aid: string): ProcStat | undefined {
  const v = t.procs.get(S.procKey(spid));
  if (!v) return undefined;
  const recorded = S.decodeProcVal(v);
  const stat = procStat(spid);
  return recorded.aid === aid && stat?.startTicks === recorded.startTicks ? stat : undefined;
}

/** The vpid of spid if it is a live process of aid. */
function vpidOf(t: TableDb, aid: string, spid: number): number | undefined {
  const v = t.rev.get(S.revKey(t.node, S.RT.pid, spid));
  if (!v) return undefined;
  const rev = S.decodeRevVal(v);
  return rev.aid === aid && recordedStat(t, spid, aid) ? rev.vrid : undefined;
}

/** The processes of every application, or of one, in vpid order; those
 * that are gone (stale rows) too, with state 'gone'. */
export function* processRows(t: TableDb, f: { aid?: string }): Generator<ProcessRow> {
  const supervision = new Map<string, string | null>();
  const missing = (aid: string) => {
    if (!supervision.has(aid)) {
      const app = getApp(t, aid);
      supervision.set(aid, app?.state === S.APP_STATE.running ? unsupervised(t, aid, app) : null);
    }
    return supervision.get(aid) ?? undefined;
  };
  for (const r of fwdRowsOfType(t, S.RT.pid, f.aid)) {
    const stat = recordedStat(t, r.srid, r.aid);
    if (stat && !isProcess(r.srid)) continue; // a thread's row (its first gettid): part of its process
    yield {
      ...(stat ? { unsupervised: missing(r.aid) } : {}),
      aid: r.aid,
      vpid: r.vrid,
      spid: r.srid,
      ppid: stat ? (vpidOf(t, r.aid, stat.ppid) ?? stat.ppid) : 0,
      state: stat ? stat.state : 'gone',
      command: stat ? commandLine(r.srid) : '',
    };
  }
}

const UNSUPERVISED_MEANS: Record<string, string> = {
  'no supervisor': 'its supervisor is gone; its harness waits for these processes and cleans up after the last',
  'no harness': 'its harness is gone; nothing cleans up after its last process but `appshot gc`',
  'no harness, no supervisor': 'its harness and supervisor are gone; nothing cleans up after its last process but `appshot gc`',
};

/** PIDs print in decimal, as ps prints them. An application running
 * unsupervised is said so under the table (not in CSV: the command says it
 * on stderr). */
export function renderProcesses(rows: ProcessRow[], format: CellFormat): string {
  const table = renderRows(['AID', 'VPID', 'SPID', 'PPID', 'STAT', 'COMMAND'], rows.map((r) => [r.aid, String(r.vpid), String(r.spid), String(r.ppid), r.state, r.command]), format);
  return format === 'csv' ? table : [table, ...unsupervisedNotes(rows)].join('\n');
}

/** A line for each application running unsupervised. */
export function unsupervisedNotes(rows: ProcessRow[]): string[] {
  const notes = new Map<string, string>();
  for (const r of rows) if (r.unsupervised) notes.set(r.aid, `'${r.aid}' runs unsupervised (${r.unsupervised}): ${UNSUPERVISED_MEANS[r.unsupervised]}`);
  return [...notes.values()];
}
