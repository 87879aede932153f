import { POOL_PATH } from './paths.js';
import { boundPorts, exePath, socketHolders, startTicks } from './procinfo.js';
import { IPC_NOUN, isIpcType, keyText } from './sysv/ipctype.js';
import { Listings } from './sysv/kernel.js';
import { KINDS } from './sysv/kinds.js';
import { recordedKey } from './sysv/object.js';
import { claim, release, unmap } from './rows.js';
import { type TableDb, writeTxn } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * `appshot tables --verify`: the tables checked against themselves and the
 * kernel. Forward and reverse rows must agree; every mapped IPC object and
 * process must exist and be the one recorded; a bound system port must be
 * held by the application it is leased to; no two applications may share
 * a system ID. With repair, what can be fixed without guessing is: rows
 * whose object is gone are dropped, a missing reverse row is written, a
 * stale one dropped.
 */

export interface Finding {
  /** What is wrong, naming the rows. */
  problem: string;
  /** What --repair did about it, if anything. */
  repaired?: string;
}

interface Pending extends Finding {
  /** Inside the repair's write transaction: fixes it, or returns null when it
   * no longer applies (the tables moved on since the check). */
  fix?: () => string | null;
}

interface Row extends S.FwdKey, S.FwdVal {
  name: S.ResourceType;
}

const noun = (r: Row) => (isIpcType(r.name) ? IPC_NOUN[r.name] : r.name);

function shown(r: Row): string {
  if (r.type === S.RT.port) return `${r.aid} port ${S.decodePortId(r.vrid).port}/${S.decodePortId(r.vrid).proto} -> ${S.decodePortId(r.srid).port}`;
  if (S.KEY_TYPES.includes(r.name)) return `${r.aid} ${r.name} ${keyText(r.vrid)} -> ${keyText(r.srid)}`;
  return `${r.aid} ${r.name} ${r.vrid} -> ${r.srid}`;
}

function rowsOf(t: TableDb): Row[] {
  return [...t.fwd.getRange({})].map(({ key, value }) => {
    const k = S.decodeFwdKey(key);
    return { ...k, ...S.decodeFwdVal(value), name: S.RT_NAME[k.type] };
  });
}

/** Drops a mapping and its reverse row, if both are still as found. */
function dropRow(t: TableDb, r: Row): () => string | null {
  return () => {
    const v = t.fwd.get(S.fwdKey(r.aid, r.type, r.vrid));
    if (!v || S.decodeFwdVal(v).srid !== r.srid) return null;
    unmap(t, r.aid, r.type, r.vrid);
    if (r.type === S.RT.pid) {
      const p = t.procs.get(S.procKey(r.srid));
      if (p && S.decodeProcVal(p).aid === r.aid) t.procs.removeSync(S.procKey(r.srid));
    }
    return `dropped ${shown(r)}`;
  };
}

/** Forward rows against reverse rows: each must point back at the other. */
function checkPairs(t: TableDb, rows: Row[], out: Pending[]): void {
  const byKey = new Map(rows.map((r) => [`${r.aid}\0${r.type}\0${r.vrid}`, r]));
  const bySrid = new Map<string, Row[]>();
  for (const r of rows) {
    if (r.type === S.RT.publish) continue; // a public port is shared by its pool
    if (r.creator === S.CREATOR_TEMPLATE) {
      checkTemplateRow(t, r, byKey, out);
      continue;
    }
    const k = `${r.type}\0${r.srid}`;
    bySrid.set(k, [...(bySrid.get(k) ?? []), r]);
  }
  for (const [, owners] of bySrid) {
    const r = owners[0];
    const rev = t.rev.get(S.revKey(t.node, r.type, r.srid));
    const owner = rev ? S.decodeRevVal(rev) : undefined;
    const named = owners.find((o) => owner && o.aid === owner.aid && o.vrid === owner.vrid);
    if (owners.length > 1) {
      const who = owners.map(shown).join('; ');
      for (const o of owners.filter((x) => x !== named))
        out.push({ problem: `two mappings share ${noun(r)} ${r.srid}: ${who}${named ? `; the reverse row names ${named.aid}` : ''}`, fix: named ? dropRow(t, o) : undefined });
      continue;
    }
    if (!owner) {
      out.push({
        problem: `${shown(r)} has no reverse row`,
        fix: () => {
          if (!claim(t, r.aid, r.type, r.vrid, r.srid)) return null;
          return `wrote the reverse row of ${shown(r)}`;
        },
      });
    } else if (!named) {
      out.push({ problem: `${shown(r)}: its reverse row names ${owner.aid} ${owner.vrid} instead`, fix: undefined });
    }
  }
  for (const { key, value } of t.rev.getRange({})) {
    const type = key[4];
    const srid = key.readUInt32BE(5);
    const { vrid, aid } = S.decodeRevVal(value);
    const fwd = byKey.get(`${aid}\0${type}\0${vrid}`);
    if (fwd && fwd.srid === srid) continue;
    const name = S.RT_NAME[type] ?? `type${type}`;
    out.push({
      problem: `the reverse row of ${name} ${srid} names ${aid} ${vrid}, which ${fwd ? `maps to ${fwd.srid}` : 'has no forward row'}`,
      fix: () => {
        const now = t.rev.get(S.revKey(t.node, type, srid));
        if (!now || !Buffer.from(now).equals(Buffer.from(value))) return null;
        release(t, type, srid);
        return `dropped the stale reverse row of ${name} ${srid}`;
      },
    });
  }
}

/** A clone's row of a template's shared segment (or its key) must name
 * what the template itself maps, under the template's reverse row. */
function checkTemplateRow(t: TableDb, r: Row, byKey: Map<string, Row>, out: Pending[]): void {
  const rev = t.rev.get(S.revKey(t.node, r.type, r.srid));
  const owner = rev ? S.decodeRevVal(rev) : undefined;
  const app = owner ? t.apps.get(Buffer.from(owner.aid, 'latin1')) : undefined;
  const theirs = owner ? byKey.get(`${owner.aid}\0${r.type}\0${owner.vrid}`) : undefined;
  if (owner && app && S.decodeAppVal(app).state === S.APP_STATE.template && theirs?.srid === r.srid) return;
  out.push({ problem: `${shown(r)} maps a template's shared ${noun(r)} that no template holds`, fix: dropRow(t, r) });
}

/** Every mapped IPC object must exist in the kernel, under its recorded key. */
function checkKernel(t: TableDb, rows: Row[], out: Pending[]): void {
  const listings = new Listings();
  for (const r of rows) {
    // A clone's row of a template's segment is tied to the template's row
    // (checkTemplateRow), and that row is checked here.
    if (!isIpcType(r.name) || r.creator === S.CREATOR_TEMPLATE) continue;
    const why = KINDS[r.name].check(listings, r.srid, recordedKey(r));
    if (!why) continue;
    out.push({ problem: `${shown(r)}: ${why}`, fix: dropRow(t, r) });
  }
}

/** Every mapped process must be alive and be the one recorded (its start time). */
function checkProcesses(t: TableDb, rows: Row[], out: Pending[]): void {
  for (const r of rows) {
    if (r.type !== S.RT.pid) continue;
    const p = t.procs.get(S.procKey(r.srid));
    const rec = p ? S.decodeProcVal(p) : undefined;
    if (rec && rec.aid === r.aid && startTicks(r.srid) === rec.startTicks) continue;
    const why = !rec ? 'has no process record' : rec.aid !== r.aid ? `is recorded for ${rec.aid}` : 'is no longer running';
    out.push({ problem: `${shown(r)}: process ${r.srid} ${why}`, fix: dropRow(t, r) });
  }
}

/** A system port that is bound must be bound by the application leasing it
 * (or by the pool daemon holding its published listener). */
function checkPorts(t: TableDb, rows: Row[], out: Pending[]): void {
  const ports = rows.filter((r) => r.type === S.RT.port);
  if (!ports.length) return;
  const bound = boundPorts();
  const holders = socketHolders();
  for (const r of ports) {
    const { port, proto } = S.decodePortId(r.srid);
    for (const s of bound.get(port)?.filter((b) => b.proto === proto) ?? []) {
      const pid = holders.get(s.ino);
      if (pid === undefined) continue;
      const p = t.procs.get(S.procKey(pid));
      const aid = p ? S.decodeProcVal(p).aid : undefined;
      if (aid === r.aid || exePath(pid) === POOL_PATH) continue;
      out.push({ problem: `${shown(r)}: system port ${port}/${proto} is bound by process ${pid}${aid ? ` of application ${aid}` : ', outside appshot'}` });
    }
  }
}

/** Process records of applications that no longer exist. */
function checkProcs(t: TableDb, out: Pending[]): void {
  for (const { key, value } of t.procs.getRange({})) {
    const { aid } = S.decodeProcVal(value);
    if (t.apps.get(Buffer.from(aid, 'latin1'))) continue;
    const spid = key.readUInt32BE(0);
    out.push({
      problem: `process record ${spid} names application ${aid}, which does not exist`,
      fix: () => (t.procs.get(key) ? (t.procs.removeSync(key), `dropped process record ${spid}`) : null),
    });
  }
}

export function verify(t: TableDb, opts: { repair: boolean }): Finding[] {
  const check = (): Pending[] => {
    const rows = rowsOf(t);
    const out: Pending[] = [];
    checkPairs(t, rows, out);
    checkKernel(t, rows, out);
    checkProcesses(t, rows, out);
    checkPorts(t, rows, out);
    checkProcs(t, out);
    return out;
  };
  if (!opts.repair) return check().map(({ problem }) => ({ problem }));
  // Checked and fixed in one write transaction: nothing moves in between.
  return writeTxn(t, () =>
    check().map(({ problem, fix }) => {
      const done = fix?.();
      return done ? { problem, repaired: done } : { problem };
    }),
  );
}

/** One line per finding, then a summary. */
export function describeFindings(findings: Finding[]): string[] {
  const lines = findings.map((f) => (f.repaired ? `${f.problem} (repaired: ${f.repaired})` : f.problem));
  const open = findings.filter((f) => !f.repaired).length;
  if (!findings.length) lines.push('the tables are consistent: forward and reverse rows agree, and every mapped object, process and port is where they say');
  else lines.push(`${findings.length} problem(s) found, ${findings.length - open} repaired, ${open} left${open ? ': see above' : ''}`);
  return lines;
}
