import { BALANCE_NAMES, type PoolStatus, poolStatus } from '../../ts/pool.js';
import { type TableDb, fwdRowsOfType } from '../../ts/tabledb.js';
import * as S from '../../tables/schema.js';
import { type CellFormat, renderRows } from './table.js';

export interface PortRow {
  aid: string;
  proto: string;
  virtual: number;
  system: number;
  /** The public port this virtual port is published at, if it is. */
  published: number | null;
}

export interface PoolRow {
  public: number;
  balance: string;
  /** Whether a pool daemon runs for the port. */
  running: boolean;
  /** Its pid, when it runs. */
  pid: number | null;
  /** Who picks each connection's instance (PoolStatus.steer), when it runs. */
  steer: PoolStatus['steer'] | null;
  /** Connections accepted and waiting for an instance. */
  held: number;
  /** Applications publishing the port. */
  applications: string[];
  instances: PoolStatus['instances'];
}

/** Each application's ports, with the public port each is published at. */
export function portRows(t: TableDb, f: { aid?: string }): PortRow[] {
  const published = new Map<string, number>();
  for (const r of fwdRowsOfType(t, S.RT.publish, f.aid)) published.set(`${r.aid} ${r.vrid}`, S.decodePortId(r.srid).port);
  const rows: PortRow[] = [];
  const bound = new Set<string>();
  for (const r of fwdRowsOfType(t, S.RT.port, f.aid)) {
    const v = S.decodePortId(r.vrid);
    bound.add(`${r.aid} ${r.vrid}`);
    rows.push({ aid: r.aid, proto: v.proto, virtual: v.port, system: S.decodePortId(r.srid).port, published: published.get(`${r.aid} ${r.vrid}`) ?? null });
  }
  // A published port the application has not bound yet.
  for (const [key, pub] of published) {
    if (bound.has(key)) continue;
    const [aid, vrid] = key.split(' ');
    rows.push({ aid, proto: 'tcp', virtual: S.decodePortId(Number(vrid)).port, system: 0, published: pub });
  }
  return rows;
}

/** The pool behind each public port the tables name, as its daemon tells it. */
export async function poolRows(t: TableDb, f: { aid?: string }): Promise<PoolRow[]> {
  const publishers = new Map<number, string[]>();
  for (const r of fwdRowsOfType(t, S.RT.publish)) {
    const pub = S.decodePortId(r.srid).port;
    publishers.set(pub, [...(publishers.get(pub) ?? []), r.aid]);
  }
  // Asked all at once: a daemon that does not answer costs one deadline.
  const pools = [...publishers].sort((a, b) => a[0] - b[0]).filter(([, aids]) => f.aid === undefined || aids.includes(f.aid));
  const status = await Promise.all(pools.map(([pub]) => poolStatus(t.home, pub)));
  return pools.map(([pub, aids], i) => {
    const st = status[i];
    return { public: pub, balance: st ? st.policy : '', running: st !== null, pid: st?.pid ?? null, steer: st?.steer ?? null, held: st?.held ?? 0, applications: aids, instances: st?.instances ?? [] };
  });
}

export function renderPorts(rows: PortRow[], format: CellFormat): string {
  const cells = rows.map((r) => [r.aid, r.proto, String(r.virtual), r.system ? String(r.system) : 'not bound', r.published === null ? '' : String(r.published)]);
  return renderRows(['AID', 'PROTO', 'VIRTUAL', 'SYSTEM', 'PUBLISHED'], cells, format);
}

/** One line per instance of each pool, one for a pool with none. */
export function renderPools(rows: PoolRow[], format: CellFormat): string {
  const table: string[][] = [];
  for (const p of rows) {
    const balance = p.running ? BALANCE_NAMES[p.balance as keyof typeof BALANCE_NAMES] ?? p.balance : 'not running';
    if (!p.instances.length) table.push([String(p.public), balance, p.applications.join(', '), '', '', '', '', '', String(p.held)]);
    for (const i of p.instances)
      table.push([String(p.public), balance, i.aid, String(i.vport), String(i.sport), String(i.spid), String(i.active), String(i.handed), String(i.unacked)]);
  }
  return renderRows(['PUBLIC', 'BALANCE', 'AID', 'VIRTUAL', 'SYSTEM', 'SPID', 'ACTIVE', 'HANDED', 'WAITING'], table, format);
}
