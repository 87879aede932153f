import type { Transaction } from 'lmdb';
import { type TableDb, prefixRange } from '../../ts/tabledb.js';
import { isIpcType } from '../../ts/sysv/ipctype.js';
import type { SortField } from './filters.js';
import * as S from '../../tables/schema.js';
import { type CellFormat, csvLine, renderRows } from './table.js';

export { csvHeader } from './table.js';

/**
 * The administrator's view of the tables: applications, and translations
 * filtered, sorted and paged. Every read of one view happens in one LMDB
 * read transaction, so it never shows a half-committed state, and a read
 * never blocks a shim (LMDB readers take no lock writers wait for).
 */

export interface TranslationRow {
  aid: string;
  type: S.ResourceType | 'path';
  /** A path redirection's FROM, for type path. */
  virtual: number | string;
  /** A path redirection's TO, for type path. */
  system: number | string;
  key: number | null;
  creator: number | null;
  created: string;
  /** A shared memory segment removed while still attached (IPC objects only). */
  removed?: boolean;
  /** Ports: tcp or udp (virtual and system are port numbers). */
  proto?: string;
}

export interface AppRow {
  aid: string;
  state: S.AppState;
  /** Processes recorded for it (pid rows). */
  processes: number;
  created: string;
  /** The template it was cloned from, when it was. */
  template: string | null;
  command: string;
}


export interface Filter {
  aid?: string;
  /** A resource type name, or 'key' for the IPC keys of every family. */
  type?: string;
  state?: S.AppState;
  vrid?: number;
  srid?: number;
}

/** The type codes a type filter names ([] for path: no fwd rows). */
function typeCodes(type?: string): number[] | undefined {
  if (!type) return undefined;
  if (type === 'path') return [];
  if (type === 'key') return S.KEY_TYPES.map((k) => S.RT[k]);
  return [S.RT[type as S.ResourceType]];
}

/** Port rows (a port, or a published port and its public one). */
export function isPortType(type: S.ResourceType): boolean {
  return type === 'port' || type === 'publish';
}

/** A row's time as ISO 8601; a time no Date can hold (a damaged row: LMDB
 * has no checksums) is shown as the number it is, not a crash. */
function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `(not a time: ${ms})` : d.toISOString();
}

function toRow(aid: string, type: number, vrid: number, v: S.FwdVal): TranslationRow {
  const name = S.RT_NAME[type] ?? (`type${type}` as S.ResourceType);
  const isKey = S.KEY_TYPES.includes(name);
  const isPort = isPortType(name);
  return {
    aid,
    type: name,
    virtual: isPort ? S.decodePortId(vrid).port : vrid,
    system: isPort ? S.decodePortId(v.srid).port : v.srid,
    key: isIpcType(name) ? v.vkey : null,
    creator: isKey ? null : v.creator,
    created: isoTime(v.createdMs),
    ...(isIpcType(name) ? { removed: S.fwdValRemoved(v) } : {}),
    ...(isPort ? { proto: S.decodePortId(vrid).proto } : {}),
  };
}

/** A forward row as shown, from its raw key and value (the first page
 * read in C: ts/tabledb.ts firstFwdRows). */
export function fwdTranslation(key: Buffer, value: Buffer): TranslationRow {
  const k = S.decodeFwdKey(key);
  return toRow(k.aid, k.type, k.vrid, S.decodeFwdVal(value));
}

/** One consistent read of the tables: close it when done. */
export class View {
  readonly txn: Transaction;
  constructor(readonly t: TableDb) {
    this.txn = t.env.useReadTransaction();
  }
  close(): void {
    this.txn.done();
  }

  app(aid: string): S.AppVal | undefined {
    const v = this.t.apps.get(Buffer.from(aid, 'latin1'), { transaction: this.txn });
    return v ? S.decodeAppVal(v) : undefined;
  }

  *apps(state?: S.AppState): Generator<{ aid: string; app: S.AppVal }> {
    for (const { key, value } of this.t.apps.getRange({ transaction: this.txn })) {
      const app = S.decodeAppVal(value);
      if (!state || app.state === S.APP_STATE[state]) yield { aid: key.toString('latin1'), app };
    }
  }

  /** The fwd rows under one key prefix, in key order. */
  private *range(prefix: Buffer): Generator<TranslationRow & { vrid: number }> {
    const range = prefix.length ? prefixRange(prefix) : {};
    for (const { key, value } of this.t.fwd.getRange({ ...range, transaction: this.txn })) {
      const k = S.decodeFwdKey(key);
      yield { ...toRow(k.aid, k.type, k.vrid, S.decodeFwdVal(value)), vrid: k.vrid };
    }
  }

  /** Path redirections (the paths table), of one AID or of all, in key
   * order; created is the application's, which set them when it started. */
  private *redirections(aid?: string): Generator<TranslationRow> {
    const range = aid === undefined ? {} : prefixRange(S.fwdPrefix(aid));
    const created = new Map<string, string>();
    for (const { key, value } of this.t.paths.getRange({ ...range, transaction: this.txn })) {
      const k = S.decodePathKey(key);
      if (!created.has(k.aid)) created.set(k.aid, isoTime(this.app(k.aid)?.createdMs ?? 0));
      const { from, to } = S.decodePathVal(value);
      yield { aid: k.aid, type: 'path', virtual: from, system: to, key: null, creator: null, created: created.get(k.aid)! };
    }
  }

  /** The row owning a system ID (the reverse table); a port's
   * under TCP and UDP both. */
  private *bySrid(srid: number, codes: number[]): Generator<TranslationRow & { vrid: number }> {
    for (const type of codes) {
      const ids = type === S.RT.port ? [S.portId(S.PORT_PROTO.tcp, srid), S.portId(S.PORT_PROTO.udp, srid)] : [srid];
      for (const id of ids) {
        const rev = this.t.rev.get(S.revKey(this.t.node, type, id), { transaction: this.txn });
        if (!rev) continue;
        const { vrid, aid } = S.decodeRevVal(rev);
        const fwd = this.t.fwd.get(S.fwdKey(aid, type, vrid), { transaction: this.txn });
        if (fwd) yield { ...toRow(aid, type, vrid, S.decodeFwdVal(fwd)), vrid };
      }
    }
  }

  /**
   * The translations a filter selects, in key order (AID, type, virtual),
   * read lazily: a first page costs the rows on it, not the whole table.
   * An AID or type narrows the cursor ranges; a system ID is a reverse
   * lookup.
   */
  *translations(f: Filter): Generator<TranslationRow> {
    const codes = typeCodes(f.type);
    if (f.srid !== undefined) {
      const all = Object.values(S.RT).filter((c) => c !== S.RT.publish); // a public port is shared: no reverse row
      for (const row of this.bySrid(f.srid, codes ?? all)) if (keep(row, f)) yield strip(row);
      return;
    }
    // Path redirections follow an application's translations; they have
    // no numeric virtual ID for --vrid to match.
    const paths = (!f.type || f.type === 'path') && f.vrid === undefined;
    const aids = f.aid !== undefined ? [f.aid] : f.state || codes ? [...this.apps(f.state)].map((a) => a.aid) : undefined;
    if (f.aid !== undefined && f.state && this.app(f.aid)?.state !== S.APP_STATE[f.state]) return;
    if (!aids) {
      for (const row of this.range(Buffer.alloc(0))) if (keep(row, f)) yield strip(row);
      if (paths) yield* this.redirections();
      return;
    }
    for (const aid of aids) {
      for (const prefix of codes ? codes.map((c) => S.fwdPrefix(aid, c)) : [S.fwdPrefix(aid)])
        for (const row of this.range(prefix)) if (keep(row, f)) yield strip(row);
      if (paths) yield* this.redirections(aid);
    }
  }

  /** Applications with their recorded process count. */
  *applications(f: { aid?: string; state?: S.AppState }): Generator<AppRow> {
    for (const { aid, app } of this.apps(f.state)) {
      if (f.aid !== undefined && aid !== f.aid) continue;
      let processes = 0;
      for (const _ of this.t.fwd.getKeys({ ...prefixRange(S.fwdPrefix(aid, S.RT.pid)), transaction: this.txn })) processes++;
      yield {
        aid,
        state: S.APP_STATE_NAME[app.state],
        processes,
        created: isoTime(app.createdMs),
        template: S.cloneTemplate(aid, app.flags),
        command: app.command.join(' '),
      };
    }
  }

  /** How many rows there are in all: a page's "of N", without counting. */
  total(): number {
    const entries = (db: TableDb['fwd']) => (db.getStats() as { entryCount: number }).entryCount;
    return entries(this.t.fwd) + entries(this.t.paths);
  }
}

/** A --vrid filter matches the virtual ID as stored or as shown (a port's number). */
function keep(row: TranslationRow & { vrid: number }, f: Filter): boolean {
  return f.vrid === undefined || row.vrid === f.vrid || row.virtual === f.vrid;
}

/** The row as shown, without the stored vrid the cursor carried. */
function strip(row: TranslationRow & { vrid: number }): TranslationRow {
  const { vrid: _vrid, ...shown } = row;
  return shown;
}

export function sortRows(rows: TranslationRow[], field: SortField, desc: boolean): TranslationRow[] {
  const dir = desc ? -1 : 1;
  const cmp = (a: TranslationRow, b: TranslationRow) => {
    const x = a[field];
    const y = b[field];
    // Numbers in numeric order, before the paths of path rows.
    if (typeof x !== typeof y) return (typeof x === 'number' ? -1 : 1) * dir;
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  };
  return rows.sort(cmp);
}

const hex = (n: number) => '0x' + (n >>> 0).toString(16).padStart(8, '0');

function cells(r: TranslationRow): string[] {
  const isKey = S.KEY_TYPES.includes(r.type as S.ResourceType);
  const show = (n: number | string) => (typeof n === 'string' ? n : isKey ? hex(n) : r.proto ? `${n}/${r.proto}` : String(n));
  return [
    r.aid,
    r.type,
    show(r.virtual),
    show(r.system),
    r.removed ? 'removed' : r.key === null ? '' : r.key === 0 ? 'private' : hex(r.key),
    r.creator === null ? '' : r.creator === S.CREATOR_TEMPLATE ? 'template' : String(r.creator),
    r.created,
  ];
}

export const TRANSLATION_COLUMNS = ['AID', 'type', 'virtual', 'system', 'key', 'creator', 'created'];
export const APP_COLUMNS = ['AID', 'state', 'processes', 'created', 'template', 'command'];

const appCells = (r: AppRow) => [r.aid, r.state, String(r.processes), r.created, r.template ?? '', r.command];

/** IDs print in decimal, keys in hex as ipcs prints them. */
export function renderTable(rows: TranslationRow[], format: CellFormat): string {
  return renderRows(TRANSLATION_COLUMNS, rows.map(cells), format);
}

export function renderApps(rows: AppRow[], format: CellFormat): string {
  return renderRows(APP_COLUMNS, rows.map(appCells), format);
}

/** A CSV line of a translation (keys in hex, as in the table). */
export function csvTranslation(r: TranslationRow): string {
  return csvLine(cells(r));
}

export function csvApp(r: AppRow): string {
  return csvLine(appCells(r));
}
