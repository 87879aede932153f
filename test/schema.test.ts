import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addon } from '../ts/addon.js';
import { ROOT } from '../ts/paths.js';
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
