/**
 * appshot table schema, TypeScript side. The C side is tables/schema.h; both
 * are held to the byte vectors and the constants in tables/golden.json by
 * test/schema.test.ts.
 * Integers are big-endian so LMDB's key order is numeric order.
 */

export const SCHEMA_VERSION = 1;
export const TABLES_FILE = 'tables.mdb';
export const INFLIGHT_FILE = 'inflight';
export const OPEN_LOCK_FILE = 'open.lock';
export const MAP_SIZE = 4 * 1024 ** 3;
export const MAX_READERS = 4096;
export const MAX_DBS = 16;
export const AID_MAX = 63;
/** The longest meta value: a seed record ("seeded/" aid -> JSON, ts/seeds.ts). */
export const META_VAL_MAX = 65536;

export const DB = {
  /** "version", "node", "next_aid" -> u32; "seeded/" aid -> JSON of what a clone's seeding made. */
  meta: 'meta',
  apps: 'apps',
  fwd: 'fwd',
  rev: 'rev',
  alloc: 'alloc',
  procs: 'procs',
  /** aid 0 index -> from 0 to: path redirections. */
  paths: 'paths',
} as const;

export const RT = {
  sem: 1,
  shm: 2,
  msg: 3,
  semkey: 4,
  shmkey: 5,
  msgkey: 6,
  pid: 7,
  port: 8,
  /** vrid: the virtual port published; srid: the public port. */
  publish: 9,
} as const;
export type ResourceType = keyof typeof RT;
export const RT_NAME: Record<number, ResourceType> = Object.fromEntries(
  Object.entries(RT).map(([name, code]) => [code, name as ResourceType]),
);
export const KEY_TYPES: ResourceType[] = ['semkey', 'shmkey', 'msgkey'];

/** template: a snapshot template, owning its shared segments, running nothing. */
export const APP_STATE = { running: 1, ended: 2, kept: 3, template: 4 } as const;
export type AppState = keyof typeof APP_STATE;
export const APP_STATE_NAME: Record<number, AppState> = { 1: 'running', 2: 'ended', 3: 'kept', 4: 'template' };
export const APP_FLAG_NO_IDENTITY = 0x0001;
/** A template's clone, named <template>-<n>. */
export const APP_FLAG_CLONE = 0x0002;

/** The template a clone was made from, or null for any other application. */
export function cloneTemplate(aid: string, flags: number): string | null {
  return flags & APP_FLAG_CLONE ? aid.replace(/-\d+$/, '') : null;
}

/** Remapped IDs come from these ranges so they rarely meet identity IDs. */
export const VRID_REMAP_BASE = 0x10000000;
export const SKEY_REMAP_BASE = 0x61700001;

const AID_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$/;
export function aidValid(aid: string): boolean {
  return AID_RE.test(aid);
}

function aidBytes(aid: string): Buffer {
  const b = Buffer.from(aid, 'latin1');
  if (b.length > AID_MAX) throw new RangeError(`AID '${aid}' is longer than ${AID_MAX} bytes`);
  return b;
}

/** fwd key: aid bytes, 0x00, type u8, vrid u32. */
export function fwdKey(aid: string, type: number, vrid: number): Buffer {
  const a = aidBytes(aid);
  const b = Buffer.alloc(a.length + 6);
  a.copy(b);
  b[a.length + 1] = type;
  b.writeUInt32BE(vrid >>> 0, a.length + 2);
  return b;
}

/** The key prefix of every fwd row of one AID, or of one AID and type. */
export function fwdPrefix(aid: string, type?: number): Buffer {
  const a = aidBytes(aid);
  const b = Buffer.alloc(a.length + (type === undefined ? 1 : 2));
  a.copy(b);
  if (type !== undefined) b[a.length + 1] = type;
  return b;
}

export interface FwdKey {
  aid: string;
  type: number;
  vrid: number;
}
export function decodeFwdKey(b: Uint8Array): FwdKey {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const n = buf.length - 6;
  return { aid: buf.toString('latin1', 0, n), type: buf[n + 1], vrid: buf.readUInt32BE(n + 2) };
}

export interface FwdVal {
  srid: number;
  /** The object's virtual IPC key (0 if private or not an IPC object). */
  vkey: number;
  /** The key the kernel object carries (0 if none). */
  skey: number;
  creator: number;
  createdMs: number;
}
export const FWD_VAL_LEN = 24;
export function fwdVal(v: FwdVal): Buffer {
  const b = Buffer.alloc(FWD_VAL_LEN);
  b.writeUInt32BE(v.srid >>> 0, 0);
  b.writeUInt32BE(v.vkey >>> 0, 4);
  b.writeUInt32BE(v.skey >>> 0, 8);
  b.writeUInt32BE(v.creator >>> 0, 12);
  b.writeBigUInt64BE(BigInt(v.createdMs), 16);
  return b;
}
/** The skey of a shared memory segment removed (IPC_RMID) while still
 * attached: the kernel keeps it, keyless, until the last detach, and its
 * row stays (with vkey 0) until then. */
export const SKEY_REMOVED = 0xffffffff;
/** The creator of a row that maps a template's shared segment, or its key
 * (the reverse rows are the template's): attached read-only, never removed
 * by the clone. No spid is this large. */
export const CREATOR_TEMPLATE = 0xffffffff;

export function fwdValRemoved(v: FwdVal): boolean {
  return v.vkey === 0 && v.skey === SKEY_REMOVED;
}

/** The key type of each IPC family (semkey for sem, ...). */
export const KEY_TYPE_OF: Partial<Record<ResourceType, ResourceType>> = { sem: 'semkey', shm: 'shmkey', msg: 'msgkey' };

export function decodeFwdVal(b: Uint8Array): FwdVal {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return {
    srid: buf.readUInt32BE(0),
    vkey: buf.readUInt32BE(4),
    skey: buf.readUInt32BE(8),
    creator: buf.readUInt32BE(12),
    createdMs: Number(buf.readBigUInt64BE(16)),
  };
}

/** A port as a vrid or srid: the IANA protocol number (6 TCP, 17 UDP) in
 * the high half, since TCP and UDP ports are two name spaces, as in the
 * kernel; the port number in the low half. */
export const PORT_PROTO = { tcp: 6, udp: 17 } as const;
export type PortProto = keyof typeof PORT_PROTO;
export function portId(proto: number, port: number): number {
  return ((proto << 16) | (port & 0xffff)) >>> 0;
}
export function decodePortId(id: number): { proto: PortProto | `proto${number}`; port: number } {
  const code = id >>> 16;
  const proto = code === PORT_PROTO.tcp ? 'tcp' : code === PORT_PROTO.udp ? 'udp' : (`proto${code}` as const);
  return { proto, port: id & 0xffff };
}
/** System ports given to remapped virtual ports, unless --port-range says
 * otherwise: below the kernel's ephemeral range (32768-60999), so a port
 * the kernel picks for a connect never looks like one of ours. */
export const PORT_RANGE_DEFAULT = { lo: 20000, hi: 29999 } as const;

/** rev key: node u32, type u8, srid u32. */
export function revKey(node: number, type: number, srid: number): Buffer {
  const b = Buffer.alloc(9);
  b.writeUInt32BE(node >>> 0, 0);
  b[4] = type;
  b.writeUInt32BE(srid >>> 0, 5);
  return b;
}
/** rev value: vrid u32, aid bytes. */
export function revVal(vrid: number, aid: string): Buffer {
  const a = aidBytes(aid);
  const b = Buffer.alloc(4 + a.length);
  b.writeUInt32BE(vrid >>> 0, 0);
  a.copy(b, 4);
  return b;
}
export function decodeRevVal(b: Uint8Array): { vrid: number; aid: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { vrid: buf.readUInt32BE(0), aid: buf.toString('latin1', 4) };
}

/** alloc key: aid bytes ('' for host-wide counters), 0x00, type u8. */
export function allocKey(aid: string, type: number): Buffer {
  const a = aidBytes(aid);
  const b = Buffer.alloc(a.length + 2);
  a.copy(b);
  b[a.length + 1] = type;
  return b;
}

/** procs key: spid u32. procs value: start ticks u64, aid bytes. */
export function procKey(spid: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(spid >>> 0, 0);
  return b;
}
export function procVal(startTicks: number, aid: string): Buffer {
  const a = aidBytes(aid);
  const b = Buffer.alloc(8 + a.length);
  b.writeBigUInt64BE(BigInt(startTicks), 0);
  a.copy(b, 8);
  return b;
}
export function decodeProcVal(b: Uint8Array): { startTicks: number; aid: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { startTicks: Number(buf.readBigUInt64BE(0)), aid: buf.toString('latin1', 8) };
}

/** The kernel's PATH_MAX, NUL included: a redirection's FROM and TO are
 * shorter. */
export const PATH_MAX = 4096;

/** paths key: aid bytes, 0x00, index u16: an application's path
 * redirections in the order they apply (the first that covers a path wins). */
export function pathKey(aid: string, index: number): Buffer {
  const a = aidBytes(aid);
  const b = Buffer.alloc(a.length + 3);
  a.copy(b);
  b.writeUInt16BE(index, a.length + 1);
  return b;
}
export function decodePathKey(b: Uint8Array): { aid: string; index: number } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const n = buf.length - 3;
  return { aid: buf.toString('latin1', 0, n), index: buf.readUInt16BE(n + 1) };
}

/** paths value: FROM bytes, 0x00, TO bytes (UTF-8, no trailing NUL). */
export function pathVal(from: string, to: string): Buffer {
  return Buffer.concat([Buffer.from(from, 'utf8'), Buffer.alloc(1), Buffer.from(to, 'utf8')]);
}
export function decodePathVal(b: Uint8Array): { from: string; to: string } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const nul = buf.indexOf(0);
  if (nul < 0) throw new RangeError('a paths value holds FROM, a NUL byte and TO: this one has no NUL');
  return { from: buf.toString('utf8', 0, nul), to: buf.toString('utf8', nul + 1) };
}

export interface AppVal {
  schema: number;
  state: number;
  flags: number;
  harnessSpid: number;
  harnessStart: number;
  createdMs: number;
  endedMs: number;
  command: string[];
}
export const APP_VAL_FIXED = 32;
/** apps value: schema u8, state u8, flags u16, harness spid u32, harness
 * start ticks u64, created_ms u64, ended_ms u64, command (NUL-joined UTF-8). */
export function appVal(v: AppVal): Buffer {
  const cmd = Buffer.from(v.command.join('\0'), 'utf8');
  const b = Buffer.alloc(APP_VAL_FIXED + cmd.length);
  b[0] = v.schema;
  b[1] = v.state;
  b.writeUInt16BE(v.flags, 2);
  b.writeUInt32BE(v.harnessSpid >>> 0, 4);
  b.writeBigUInt64BE(BigInt(v.harnessStart), 8);
  b.writeBigUInt64BE(BigInt(v.createdMs), 16);
  b.writeBigUInt64BE(BigInt(v.endedMs), 24);
  cmd.copy(b, APP_VAL_FIXED);
  return b;
}
export function decodeAppVal(b: Uint8Array): AppVal {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const cmd = buf.toString('utf8', APP_VAL_FIXED);
  return {
    schema: buf[0],
    state: buf[1],
    flags: buf.readUInt16BE(2),
    harnessSpid: buf.readUInt32BE(4),
    harnessStart: Number(buf.readBigUInt64BE(8)),
    createdMs: Number(buf.readBigUInt64BE(16)),
    endedMs: Number(buf.readBigUInt64BE(24)),
    command: cmd ? cmd.split('\0') : [],
  };
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}
export function readU32(b: Uint8Array): number {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt32BE(0);
}
