import type { TableDb } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * Every write of a forward (fwd) or reverse (rev) row from TypeScript goes
 * through this module. Each function is the TypeScript twin of the C
 * function of the same name in native/core/tabledb.c (tabledb_claim_skey ->
 * claimSkey, ...), and the scenario vectors of tables/rows.json hold both to
 * the same rows (test/rows.test.ts). Change one, change the other. All of
 * them run inside the caller's write transaction (writeTxn).
 */

/** The next value of an allocation counter (aid '' for host-wide ones),
 * wrapping to base below 0x7fffffff: counter_next. */
function counterNext(t: TableDb, aid: string, type: number, base: number): number {
  const key = S.allocKey(aid, type);
  const cur = t.alloc.get(key);
  const next = cur && cur.length === 4 ? S.readU32(cur) : base;
  t.alloc.putSync(key, S.u32(next + 1 >= 0x7fffffff ? base : next + 1));
  return next;
}

/** Claims srid host-wide for the application's vrid by writing its reverse
 * row; false, and nothing written, when someone holds it: tables_claim. */
export function claim(t: TableDb, aid: string, type: number, vrid: number, srid: number): boolean {
  const rk = S.revKey(t.node, type, srid);
  if (t.rev.get(rk) !== undefined) return false;
  t.rev.putSync(rk, S.revVal(vrid, aid));
  return true;
}

/** Drops a reverse row; false when there was none: tables_release. */
export function release(t: TableDb, type: number, srid: number): boolean {
  return t.rev.removeSync(S.revKey(t.node, type, srid));
}

/** Reserves a system key for the application's virtual key vkey,
 * host-wide: vkey itself when identity is asked and no one holds it, else
 * the next free remapped key: tables_claim_skey (identity is false for an
 * application registered with --no-identity). */
export function claimSkey(t: TableDb, aid: string, keytype: number, vkey: number, identity: boolean): number {
  if (identity && claim(t, aid, keytype, vkey, vkey)) return vkey >>> 0;
  for (;;) {
    const skey = counterNext(t, '', keytype, S.SKEY_REMAP_BASE);
    if (claim(t, aid, keytype, vkey, skey)) return skey;
  }
}

/** Writes (or overwrites) a forward row alone: tables_put_fwd. For rows
 * whose reverse row is someone else's to hold (a key's, a template's
 * segment in a clone, a published port) or was claimed first. */
export function putFwd(t: TableDb, aid: string, type: number, vrid: number, row: S.FwdVal): void {
  t.fwd.putSync(S.fwdKey(aid, type, vrid), S.fwdVal(row));
}

/** A reverse row already held for srid is stale (the kernel just handed
 * srid out, so no live object has it): its owner's forward row goes, but
 * only while it still maps srid. A forward row that has since been mapped
 * to another object is that application's live mapping: drop_stale_owner. */
function dropStaleOwner(t: TableDb, type: number, srid: number, stale: Uint8Array): void {
  const owner = S.decodeRevVal(stale);
  const fk = S.fwdKey(owner.aid, type, owner.vrid);
  const fwd = t.fwd.get(fk);
  if (fwd && fwd.length === S.FWD_VAL_LEN && S.decodeFwdVal(fwd).srid === srid) t.fwd.removeSync(fk);
}

/** The reverse row of a new object, taking over a stale one: put_rev. */
function putRev(t: TableDb, aid: string, type: number, vrid: number, srid: number): void {
  const rk = S.revKey(t.node, type, srid);
  const stale = t.rev.get(rk);
  if (stale !== undefined) dropStaleOwner(t, type, srid, stale);
  t.rev.putSync(rk, S.revVal(vrid, aid));
}

/** Maps an object in both directions at the vrid the caller gives (a
 * restored object's saved one); false, and nothing written, when the
 * application maps that vrid already: tables_map_at. */
export function mapAt(t: TableDb, aid: string, type: number, vrid: number, row: S.FwdVal): boolean {
  const fk = S.fwdKey(aid, type, vrid);
  if (t.fwd.get(fk) !== undefined) return false;
  t.fwd.putSync(fk, S.fwdVal(row));
  putRev(t, aid, type, vrid, row.srid);
  return true;
}

/** Maps vrid to the object in both directions, replacing the mapping of
 * vrid the application had (a stale one: the caller knows): a row folded
 * from the journal of new objects: tabledb_map_over. */
export function mapOver(t: TableDb, aid: string, type: number, vrid: number, row: S.FwdVal): void {
  unmap(t, aid, type, vrid);
  putFwd(t, aid, type, vrid, row);
  putRev(t, aid, type, vrid, row.srid);
}

/** Drops the application's mapping of vrid, and the reverse row too if it
 * still points back at it (else it is another mapping's, and stays).
 * Returns how many rows went (0: there was no mapping): tables_unmap. */
export function unmap(t: TableDb, aid: string, type: number, vrid: number): number {
  const fk = S.fwdKey(aid, type, vrid);
  const fwd = t.fwd.get(fk);
  if (fwd === undefined) return 0;
  const rk = S.revKey(t.node, type, S.decodeFwdVal(fwd).srid);
  const rev = t.rev.get(rk);
  const owner = rev === undefined ? undefined : S.decodeRevVal(rev);
  const pointsBack = owner?.aid === aid && owner.vrid === vrid >>> 0;
  if (pointsBack) t.rev.removeSync(rk);
  t.fwd.removeSync(fk);
  return pointsBack ? 2 : 1;
}
