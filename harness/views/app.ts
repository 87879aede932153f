import { processAlive, processesOf } from '../../ts/procinfo.js';
import type { PruneReport } from '../../ts/prune.js';
import { isSupervisor, unsupervised } from '../../ts/supervision.js';
import { Listings, ipcStat } from '../../ts/sysv/kernel.js';
import { IPC_TYPES, type IpcType } from '../../ts/sysv/ipctype.js';
import { recordedKey, whyNotHeld } from '../../ts/sysv/object.js';
import { type TableDb, fwdRows } from '../../ts/tabledb.js';
import { describeCleanup } from '../report.js';
import { type PoolRow, type PortRow, poolRows, portRows, renderPools, renderPorts } from './ports.js';
import { type ProcessRow, processRows, renderProcesses } from './processes.js';
import type { CellFormat } from './format.js';
import { type TranslationRow, View, renderTable } from './inspect.js';
import { renderRows } from './table.js';
import * as S from '../../tables/schema.js';

/**
 * `appshot inspect AID`: one application whole, put together from the
 * readers `ps` and `tables` use (processes.ts, ports.ts, inspect.ts), and
 * `appshot prune`'s report.
 */

export interface ObjectRow {
  type: IpcType;
  vrid: number;
  srid: number;
  /** The virtual IPC key; 0 for a private object. */
  key: number;
  /** The vpid-space creator as `tables` shows it; null for a template's segment in a clone. */
  creator: number | null;
  created: string;
  /** A segment removed (IPC_RMID) while still attached. */
  removed: boolean;
  /** Shared memory: its size in bytes and attachments, from the kernel;
   * null when the kernel no longer holds it. */
  size?: number | null;
  attachments?: number | null;
  /** Shared memory: a template's segment, shared read-only with its other clones. */
  template?: boolean;
}

export interface AppDetail {
  aid: string;
  state: S.AppState;
  /** For a running application, what of its supervision is gone (as `ps`
   * says): 'no supervisor', 'no harness', or both; else null. */
  unsupervised: string | null;
  /** false when it runs with --no-identity: no virtual ID equals its system ID. */
  identity: boolean;
  /** The template it was cloned from. */
  template: string | null;
  command: string[];
  started: string;
  ended: string | null;
  harness: { pid: number; running: boolean };
  /** Its supervisor's pid, while one runs. */
  supervisor: number | null;
  processes: Omit<ProcessRow, 'aid' | 'unsupervised'>[];
  objects: ObjectRow[];
  ports: Omit<PortRow, 'aid'>[];
  pools: PoolRow[];
  redirections: { from: string; to: string }[];
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `(not a time: ${ms})` : d.toISOString();
}

/** Shared memory segments as the kernel holds them now: size and attachments. */
function segmentsNow(t: TableDb, aid: string): Map<number, { size: number | null; attachments: number | null }> {
  const listings = new Listings();
  const now = new Map<number, { size: number | null; attachments: number | null }>();
  for (const row of fwdRows(t, aid, S.RT.shm)) {
    let seen: { size: number | null; attachments: number | null } = { size: null, attachments: null };
    if (!whyNotHeld('shm', listings, row.srid, recordedKey(row))) {
      try {
        const st = ipcStat('shm', row.srid);
        seen = { size: st.size, attachments: st.nattch };
      } catch {
        // Removed between the listing and the stat: not held.
      }
    }
    now.set(row.vrid, seen);
  }
  return now;
}

/** The application, or undefined when the tables have no record of it. */
export async function appDetail(t: TableDb, aid: string): Promise<AppDetail | undefined> {
  const view = new View(t);
  let detail: Omit<AppDetail, 'processes' | 'ports' | 'pools'> & { app: S.AppVal };
  try {
    const app = view.app(aid);
    if (!app) return undefined;
    const [summary] = [...view.applications({ aid })];
    const segments = segmentsNow(t, aid);
    const objects: ObjectRow[] = [];
    for (const type of IPC_TYPES)
      for (const r of view.translations({ aid, type })) {
        const vrid = r.virtual as number;
        const shm = type === 'shm' ? { ...(segments.get(vrid) ?? { size: null, attachments: null }), template: r.creator === S.CREATOR_TEMPLATE } : {};
        objects.push({
          type,
          vrid,
          srid: r.system as number,
          key: r.key ?? 0,
          creator: r.creator === S.CREATOR_TEMPLATE ? null : r.creator,
          created: r.created,
          removed: r.removed ?? false,
          ...shm,
        });
      }
    const redirections = [...view.translations({ aid, type: 'path' })].map((r) => ({ from: String(r.virtual), to: String(r.system) }));
    const running = app.state === S.APP_STATE.running;
    detail = {
      app,
      aid,
      state: summary.state,
      unsupervised: running ? unsupervised(t, aid, app) : null,
      identity: !(app.flags & S.APP_FLAG_NO_IDENTITY),
      template: summary.template,
      command: app.command,
      started: summary.created,
      ended: app.endedMs ? isoTime(app.endedMs) : null,
      harness: { pid: app.harnessSpid, running: processAlive(app.harnessSpid, app.harnessStart) },
      supervisor: running ? (processesOf(aid, t).find(isSupervisor) ?? null) : null,
      objects,
      redirections,
    };
  } finally {
    view.close();
  }
  const { app: _app, objects, redirections, ...rest } = detail;
  // As ps shows them: a process that is gone is a stale row, not a process.
  const processes = [...processRows(t, { aid })].filter((r) => r.state !== 'gone').map(({ aid: _aid, unsupervised: _u, ...p }) => p);
  const ports = portRows(t, { aid }).map(({ aid: _aid, ...p }) => p);
  const pools = await poolRows(t, { aid });
  return { ...rest, processes, objects, ports, pools, redirections };
}

const IDENTITY_TEXT = {
  true: 'a virtual ID is its system ID where that one is free',
  false: 'no virtual ID equals its system ID (--no-identity)',
};

/** The head of the report: one 'field  value' line each, aligned. */
function fields(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

function section(heading: string, body: string | null): string {
  return `\n${heading}:\n${body ?? '  none'}`;
}

/** The application's sections: its summary, then processes, objects (and
 * shared memory sizes), ports, pools and redirections, each as `ps` and
 * `tables` draw them. */
export function renderApp(d: AppDetail, format: CellFormat): string {
  const state = d.unsupervised ? `${d.state}, unsupervised (${d.unsupervised})` : d.state;
  const head: [string, string][] = [
    ['application', d.aid],
    ['state', state],
    ['command', d.command.join(' ')],
    ['started', d.started],
  ];
  if (d.ended) head.push(['ended', d.ended]);
  head.push(['harness', `pid ${d.harness.pid} (${d.harness.running ? 'running' : 'gone'})`]);
  if (d.state === 'running') head.push(['supervisor', d.supervisor === null ? 'gone' : `pid ${d.supervisor}`]);
  head.push(['identity', IDENTITY_TEXT[String(d.identity) as 'true' | 'false']]);
  head.push(['template', d.template ?? 'none (not a clone)']);
  const out = [fields(head)];

  const processes = d.processes.map((p) => ({ aid: d.aid, ...p, ...(d.unsupervised ? { unsupervised: d.unsupervised } : {}) }));
  out.push(section('Processes', processes.length ? renderProcesses(processes, format) : null));

  const objects: TranslationRow[] = d.objects.map((o) => ({
    aid: d.aid,
    type: o.type,
    virtual: o.vrid,
    system: o.srid,
    key: o.key,
    creator: o.template ? S.CREATOR_TEMPLATE : o.creator,
    created: o.created,
    removed: o.removed,
  }));
  out.push(section('Objects', objects.length ? renderTable(objects, format) : null));
  const segments = d.objects.filter((o) => o.type === 'shm');
  if (segments.length) {
    const rows = segments.map((s) => [String(s.vrid), String(s.srid), s.size == null ? 'gone' : String(s.size), s.attachments == null ? '' : String(s.attachments)]);
    out.push(section('Shared memory segments', renderRows(['VIRTUAL', 'SYSTEM', 'SIZE', 'ATTACHED'], rows, format)));
  }

  out.push(section('Ports', d.ports.length ? renderPorts(d.ports.map((p) => ({ aid: d.aid, ...p })), format) : null));
  if (d.pools.length) out.push(section('Pools behind published ports', renderPools(d.pools, format)));
  const redirections: TranslationRow[] = d.redirections.map((r) => ({ aid: d.aid, type: 'path', virtual: r.from, system: r.to, key: null, creator: null, created: d.started }));
  out.push(section('Path redirections', redirections.length ? renderTable(redirections, format) : null));
  return out.join('\n');
}

/** One line per application pruned (or, dry, that would be), then one per
 * application left and why. */
export function describePrune(r: PruneReport, verb: 'prune' | 'remove' = 'prune'): string[] {
  const lines: string[] = [];
  for (const p of r.pruned) {
    const what = p.state === 'kept' ? 'kept application' : 'application';
    if (r.dryRun) lines.push(`would ${verb} ${what} '${p.aid}' (${p.translations} translation${p.translations === 1 ? '' : 's'})`);
    else lines.push(...describeCleanup(p, `${verb}d ${what}`));
  }
  for (const l of r.left) lines.push(`left ${l.state} application '${l.aid}': ${l.reason}`);
  if (!r.pruned.length) lines.unshift(r.dryRun ? `nothing would be ${verb}d` : `nothing to ${verb}`);
  return lines;
}
