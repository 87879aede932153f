import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addon } from '../ts/addon.js';
import { ROOT, builtProgram } from '../ts/paths.js';
import * as S from '../tables/schema.js';

const golden = JSON.parse(readFileSync(`${ROOT}/tables/golden.json`, 'utf8'));
const hex = (b: Buffer) => b.toString('hex');
const c = addon();

describe('table layouts: C and TypeScript produce the golden bytes', () => {
  it('fwd keys', () => {
    for (const g of golden.fwdKey) {
      expect(hex(S.fwdKey(g.aid, g.type, g.vrid))).toBe(g.hex);
      expect(hex(c.fwdKey(g.aid, g.type, g.vrid))).toBe(g.hex);
      expect(S.decodeFwdKey(Buffer.from(g.hex, 'hex'))).toEqual({ aid: g.aid, type: g.type, vrid: g.vrid });
    }
  });
  it('fwd values', () => {
    for (const g of golden.fwdVal) {
      const { hex: want, ...v } = g;
      expect(hex(S.fwdVal(v))).toBe(want);
      expect(hex(c.fwdVal(v))).toBe(want);
      expect(S.decodeFwdVal(Buffer.from(want, 'hex'))).toEqual(v);
    }
  });
  it('a segment removed while attached is told apart from a private one and from key -1', () => {
    for (const g of golden.fwdRemoved) {
      const b = Buffer.from(g.hex, 'hex');
      expect(S.fwdValRemoved(S.decodeFwdVal(b)), g.comment).toBe(g.removed);
      expect(c.fwdValRemoved(b), g.comment).toBe(g.removed);
    }
  });
  it('rev keys and values', () => {
    for (const g of golden.revKey) {
      expect(hex(S.revKey(g.node, g.type, g.srid))).toBe(g.hex);
      expect(hex(c.revKey(g.node, g.type, g.srid))).toBe(g.hex);
    }
    for (const g of golden.revVal) {
      expect(hex(S.revVal(g.vrid, g.aid))).toBe(g.hex);
      expect(hex(c.revVal(g.vrid, g.aid))).toBe(g.hex);
      expect(S.decodeRevVal(Buffer.from(g.hex, 'hex'))).toEqual({ vrid: g.vrid, aid: g.aid });
    }
  });
  it('alloc keys', () => {
    for (const g of golden.allocKey) {
      expect(hex(S.allocKey(g.aid, g.type))).toBe(g.hex);
      expect(hex(c.allocKey(g.aid, g.type))).toBe(g.hex);
    }
  });
  it('procs keys and values', () => {
    for (const g of golden.procKey) {
      expect(hex(S.procKey(g.spid))).toBe(g.hex);
      expect(hex(c.procKey(g.spid))).toBe(g.hex);
    }
    for (const g of golden.procVal) {
      expect(hex(S.procVal(g.startTicks, g.aid))).toBe(g.hex);
      expect(hex(c.procVal(g.startTicks, g.aid))).toBe(g.hex);
      expect(S.decodeProcVal(Buffer.from(g.hex, 'hex'))).toEqual({ startTicks: g.startTicks, aid: g.aid });
    }
  });
  it('port IDs: protocol in the high half, port in the low', () => {
    for (const g of golden.portId) {
      expect(S.portId(g.proto, g.port), g.comment).toBe(g.id);
      expect(c.portId(g.proto, g.port), g.comment).toBe(g.id);
      expect(S.decodePortId(g.id).port).toBe(g.port);
    }
  });
  it('paths keys and values (path redirections)', () => {
    for (const g of golden.pathKey) {
      expect(hex(S.pathKey(g.aid, g.index))).toBe(g.hex);
      expect(hex(c.pathKey(g.aid, g.index))).toBe(g.hex);
      expect(S.decodePathKey(Buffer.from(g.hex, 'hex'))).toEqual({ aid: g.aid, index: g.index });
    }
    for (const g of golden.pathVal) {
      expect(hex(S.pathVal(g.from, g.to)), g.comment).toBe(g.hex);
      expect(hex(c.pathVal(g.from, g.to)), g.comment).toBe(g.hex);
      expect(S.decodePathVal(Buffer.from(g.hex, 'hex'))).toEqual({ from: g.from, to: g.to });
    }
  });
  it('app values', () => {
    for (const g of golden.appVal) {
      const { hex: want, ...v } = g;
      expect(hex(S.appVal({ ...v, command: [] }))).toBe(want);
      expect(hex(c.appVal(v))).toBe(want);
      expect(S.decodeAppVal(Buffer.from(want, 'hex'))).toEqual({ ...v, command: [] });
    }
  });
  it('AID validity', () => {
    for (const g of golden.aidValid) {
      expect(S.aidValid(g.aid), g.aid).toBe(g.valid);
      expect(c.aidValid(g.aid), g.aid).toBe(g.valid);
    }
  });
  it('an app value carries its command line', () => {
    const v = { schema: 1, state: 2, flags: 0, harnessSpid: 1, harnessStart: 2, createdMs: 3, endedMs: 4, command: ['sh', '-c', 'echo hé'] };
    expect(S.decodeAppVal(S.appVal(v))).toEqual(v);
  });
});

describe('schema constants: C and TypeScript hold the golden values', () => {
  const { comment: _, ...want } = golden.constants;
  const longestAid = 'a'.repeat(S.AID_MAX);
  const longestPath = '/' + 'p'.repeat(S.PATH_MAX - 2);

  it('schema.h (through schemaconsts)', () => {
    const c = JSON.parse(execFileSync(builtProgram('schemaconsts'), { encoding: 'utf8' }));
    expect(c).toEqual(want);
  });
  it('schema.ts, its encoders making rows of the sizes schema.h gives them', () => {
    const { META_KEY_MAX: __, ...wantTs } = want;
    expect({
      SCHEMA_VERSION: S.SCHEMA_VERSION,
      TABLES_FILE: S.TABLES_FILE,
      INFLIGHT_FILE: S.INFLIGHT_FILE,
      OPEN_LOCK_FILE: S.OPEN_LOCK_FILE,
      MAP_SIZE: S.MAP_SIZE,
      MAX_READERS: S.MAX_READERS,
      MAX_DBS: S.MAX_DBS,
      AID_MAX: S.AID_MAX,
      META_VAL_MAX: S.META_VAL_MAX,
      PATH_MAX: S.PATH_MAX,
      DB: S.DB,
      RT: S.RT,
      KEY_TYPE_OF: S.KEY_TYPE_OF,
      APP_STATE: S.APP_STATE,
      APP_FLAG_NO_IDENTITY: S.APP_FLAG_NO_IDENTITY,
      APP_FLAG_CLONE: S.APP_FLAG_CLONE,
      VRID_REMAP_BASE: S.VRID_REMAP_BASE,
      SKEY_REMAP_BASE: S.SKEY_REMAP_BASE,
      SKEY_REMOVED: S.SKEY_REMOVED,
      CREATOR_TEMPLATE: S.CREATOR_TEMPLATE,
      PORT_PROTO: S.PORT_PROTO,
      PORT_RANGE_DEFAULT: S.PORT_RANGE_DEFAULT,
      FWD_VAL_LEN: S.FWD_VAL_LEN,
      APP_VAL_FIXED: S.APP_VAL_FIXED,
      FWD_KEY_MAX: S.fwdKey(longestAid, S.RT.sem, 0).length,
      REV_KEY_LEN: S.revKey(0, S.RT.sem, 0).length,
      REV_VAL_MAX: S.revVal(0, longestAid).length,
      PROC_KEY_LEN: S.procKey(0).length,
      PROC_VAL_MAX: S.procVal(0, longestAid).length,
      PATH_KEY_MAX: S.pathKey(longestAid, 0).length,
      PATH_VAL_MAX: 2 * S.PATH_MAX,
    }).toEqual(wantTs);
    expect(S.pathVal(longestPath, longestPath).length).toBeLessThanOrEqual(want.PATH_VAL_MAX);
  });
  it("schema.ts's name lists agree with its codes", () => {
    expect(S.RT_NAME).toEqual(Object.fromEntries(Object.entries(S.RT).map(([n, code]) => [code, n])));
    expect(S.APP_STATE_NAME).toEqual(Object.fromEntries(Object.entries(S.APP_STATE).map(([n, code]) => [code, n])));
    expect(S.KEY_TYPES).toEqual(Object.values(S.KEY_TYPE_OF));
  });
});
