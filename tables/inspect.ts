import Table from 'cli-table3';
import { type Tables, fwdRows } from '../ts/tables.js';
import * as S from './schema.js';
import { isIpcType } from '../ts/sysvipc.js';

export interface TranslationRow {
  aid: string;
  type: S.ResourceType;
  virtual: number;
  system: number;
  key: number | null;
  creator: number | null;
  created: string;
  /** A shared memory segment removed while still attached (IPC objects only). */
  removed?: boolean;
  /** Ports: tcp or udp (virtual and system are port numbers). */
  proto?: string;
}

export interface Filter {
  aid?: string;
  /** A resource type name, or 'key' for the IPC keys of every family. */
  type?: string;
}

export const TYPE_FILTERS = ['sem', 'shm', 'msg', 'pid', 'port', 'publish', 'key', ...S.KEY_TYPES] as const;

function typeMatches(type: S.ResourceType, filter?: string): boolean {
  if (!filter) return true;
  if (filter === 'key') return S.KEY_TYPES.includes(type);
  return type === filter;
}

/** The translation tables as rows a person or a script reads. */
export function* translationRows(t: Tables, f: Filter): Generator<TranslationRow> {
  const code = f.type && f.type !== 'key' ? S.RT[f.type as S.ResourceType] : undefined;
  for (const r of fwdRows(t, f.aid, f.aid !== undefined ? code : undefined)) {
    const type = S.RT_NAME[r.type] ?? (`type${r.type}` as S.ResourceType);
    if (!typeMatches(type, f.type)) continue;
    const isKey = S.KEY_TYPES.includes(type);
    const isPort = isPortType(type);
    yield {
      aid: r.aid,
      type,
      virtual: isPort ? S.decodePortId(r.vrid).port : r.vrid,
      system: isPort ? S.decodePortId(r.srid).port : r.srid,
      key: isIpcType(type) ? r.vkey : null,
      creator: isKey ? null : r.creator,
      created: new Date(r.createdMs).toISOString(),
      ...(isIpcType(type) ? { removed: S.fwdValRemoved(r) } : {}),
      ...(isPort ? { proto: S.decodePortId(r.vrid).proto } : {}),
    };
  }
}

/** Port rows (a port, or a published port and its public one). */
export function isPortType(type: S.ResourceType): boolean {
  return type === 'port' || type === 'publish';
}

const hex = (n: number) => '0x' + n.toString(16).padStart(8, '0');

/** IDs print in decimal, keys in hex as ipcs prints them. */
export function renderTable(rows: TranslationRow[]): string {
  const table = new Table({
    head: ['AID', 'type', 'virtual', 'system', 'key', 'creator', 'created'],
    style: { head: [], border: [] },
  });
  for (const r of rows) {
    const isKey = S.KEY_TYPES.includes(r.type);
    const show = (n: number) => (isKey ? hex(n) : r.proto ? `${n}/${r.proto}` : String(n));
    table.push([
      r.aid,
      r.type,
      show(r.virtual),
      show(r.system),
      r.removed ? 'removed' : r.key === null ? '' : r.key === 0 ? 'private' : hex(r.key),
      r.creator === null ? '' : String(r.creator),
      r.created,
    ]);
  }
  return table.toString();
}
