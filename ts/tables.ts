import { randomInt } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase, type RootDatabaseOptionsWithPath } from 'lmdb';
import { AppshotError, EXIT, errnoText } from './errors.js';
import { addon } from './addon.js';
import { checkHomeFiles, openHomeFile } from './home.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
import * as S from '../tables/schema.js';

type Bin = Database<Buffer, Buffer>;

/** The LMDB environment under APPSHOT_HOME, opened from Node with the same
 * layout, map size and reader limit the shim uses. */
export interface Tables {
  home: string;
  path: string;
  node: number;
  env: RootDatabase<Buffer, Buffer>;
  meta: Bin;
  apps: Bin;
  fwd: Bin;
  rev: Bin;
  alloc: Bin;
  procs: Bin;
  /** Path redirections (ts/redirect.ts). */
  paths: Bin;
}

const binary = { keyEncoding: 'binary', encoding: 'binary' } as const;

/** The environment as the shim opens it (native/core/tables.c). */
export function envOptions(path: string): RootDatabaseOptionsWithPath {
  const options = {
    path,
    ...binary,
    noSync: true,
    maxDbs: S.MAX_DBS,
    maxReaders: S.MAX_READERS,
    mapSize: S.MAP_SIZE,
    // Owner-only, as the directory is. lmdb passes it to mdb_env_open;
    // its typings do not list it.
    permissionsMode: 0o600,
  };
  return options as RootDatabaseOptionsWithPath;
}

/**
 * The open lock (see native/core/tables.h): the lmdb package's LMDB writes
 * the transaction id it read while opening into shared state without the
 * write lock, so opening must never overlap a commit. Openers hold the lock
 * file exclusively, every write transaction holds it shared.
 */
function withOpenLock<T>(home: string, operation: number, fn: () => T): T {
  const fd = openHomeFile(join(home, S.OPEN_LOCK_FILE), constants.O_RDWR | constants.O_CREAT);
  try {
    addon().flock(fd, operation);
    return fn();
  } finally {
    closeSync(fd); // releases the lock
  }
}

/** A synchronous write transaction, under the open lock held shared. */
export function writeTxn<T>(t: Tables, fn: () => T): T {
  return withOpenLock(t.home, LOCK_SH, () => t.env.transactionSync(fn));
}

export function openTables(home: string, opts: { create?: boolean } = {}): Tables {
  const path = join(home, S.TABLES_FILE);
  if (!opts.create && !tablesExist(path))
    throw new AppshotError(`no tables at ${path}; nothing has run under this APPSHOT_HOME yet`, EXIT.home);
  checkHomeFiles(home);
  try {
    // Opening the named databases and the first meta rows write too: all
    // of it under the exclusive lock.
    return withOpenLock(home, LOCK_EX, () => {
      if (existsSync(path)) checkDataFile(path);
      const env = open<Buffer, Buffer>(envOptions(path));
      const db = (name: string) => env.openDB<Buffer, Buffer>({ name, ...binary });
      const t: Tables = {
        home,
        path,
        node: 0,
        env,
        meta: db(S.DB.meta),
        apps: db(S.DB.apps),
        fwd: db(S.DB.fwd),
        rev: db(S.DB.rev),
        alloc: db(S.DB.alloc),
        procs: db(S.DB.procs),
        paths: db(S.DB.paths),
      };
      t.node = env.transactionSync(() => initMeta(t));
      return t;
    });
  } catch (err) {
    if (err instanceof AppshotError) throw err;
    throw new AppshotError(`cannot open tables at ${path}: ${errnoText(err)}; check that APPSHOT_HOME is writable`, EXIT.home);
  }
}

/** Whether the tables file is there; one the caller may not look at is
 * not "nothing has run". */
function tablesExist(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new AppshotError(
      `cannot open tables at ${path}: ${code === 'EACCES' ? 'permission denied' : errnoText(err)}; run appshot as the user whose APPSHOT_HOME this is, or set APPSHOT_HOME to a directory of your own`,
      EXIT.home,
    );
  }
}

const LMDB_MAGIC = 0xbeefc0de;
const LMDB_DATA_VERSION = 2;

/**
 * LMDB maps the data file and trusts it: a file cut short faults the
 * process (SIGBUS) when a page past its end is read, and a damaged header
 * makes the open fail obscurely. Its two meta pages (in the lmdb package's
 * LMDB: a 24-byte page header, then magic u32, version u32, address 8, map
 * size 8, two 48-byte database records (the first starts with the page
 * size; each ends with its root page number), the last page number 8, the
 * transaction id 8) say what the file must hold: the root pages at least
 * (the last page number may lie past the end: pages a transaction took and
 * freed are never written). Checked
 * here, under the open lock, so no commit is torn under the read.
 */
function checkDataFile(path: string): void {
  const damaged = (why: string) =>
    new AppshotError(`the tables at ${path} are damaged: ${why}; nothing was changed. Move the file aside (appshot starts new tables) or restore it from a backup`, EXIT.home);
  const fd = openSync(path, constants.O_RDONLY);
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(8192);
    const got = readSync(fd, head, 0, head.length, 0);
    const meta = (at: number) => {
      if (at + 160 > got || head.readUInt32LE(at + 24) !== LMDB_MAGIC) return undefined;
      const roots = [head.readBigUInt64LE(at + 88), head.readBigUInt64LE(at + 136)].filter((r) => r !== 0xffffffffffffffffn);
      return { version: head.readUInt32LE(at + 28), psize: head.readUInt32LE(at + 48), lastRoot: Math.max(1, ...roots.map(Number)), txnid: head.readBigUInt64LE(at + 152) };
    };
    const first = meta(0);
    if (!first) throw damaged('it is not an LMDB file (no valid header)');
    const second = first.psize >= 512 && first.psize <= 4096 ? meta(first.psize) : undefined;
    const newest = second && second.txnid > first.txnid ? second : first;
    if (newest.version !== LMDB_DATA_VERSION) throw damaged(`its data format is ${newest.version}, not LMDB's ${LMDB_DATA_VERSION}`);
    const needed = (newest.lastRoot + 1) * newest.psize;
    if (size < needed) throw damaged(`it is truncated: ${size} bytes, where its pages need ${needed}`);
  } finally {
    closeSync(fd);
  }
}

const metaKey = (name: string) => Buffer.from(name, 'latin1');

function initMeta(t: Tables): number {
  const version = t.meta.get(metaKey('version'));
  if (version === undefined) {
    t.meta.putSync(metaKey('version'), S.u32(S.SCHEMA_VERSION));
    const node = randomInt(1, 0xffffffff);
    t.meta.putSync(metaKey('node'), S.u32(node));
    return node;
  }
  const v = S.readU32(version);
  if (v !== S.SCHEMA_VERSION)
    throw new AppshotError(
      `tables at ${t.path} have schema version ${v}, and this appshot reads version ${S.SCHEMA_VERSION}; use the appshot that wrote them`,
      EXIT.inconsistent,
    );
  return S.readU32(t.meta.get(metaKey('node'))!);
}

/** Next value of a meta counter, inside the caller's write transaction. */
export function nextCounter(t: Tables, name: string): number {
  const cur = t.meta.get(metaKey(name));
  const n = cur ? S.readU32(cur) : 1;
  t.meta.putSync(metaKey(name), S.u32(n + 1));
  return n;
}

export interface FwdRow extends S.FwdKey, S.FwdVal {}

/** Every fwd row, or those of one AID, or of one AID and type, in key order. */
export function* fwdRows(t: Tables, aid?: string, type?: number): Generator<FwdRow> {
  const range = aid === undefined ? {} : prefixRange(S.fwdPrefix(aid, type));
  for (const { key, value } of t.fwd.getRange(range)) {
    const k = S.decodeFwdKey(key);
    if (aid !== undefined && k.aid !== aid) continue;
    yield { ...k, ...S.decodeFwdVal(value) };
  }
}

export function prefixRange(prefix: Buffer): { start: Buffer; end: Buffer } {
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  return { start: prefix, end };
}

export function getApp(t: Tables, aid: string): S.AppVal | undefined {
  const v = t.apps.get(Buffer.from(aid, 'latin1'));
  return v ? S.decodeAppVal(v) : undefined;
}

export function putApp(t: Tables, aid: string, app: S.AppVal): void {
  t.apps.putSync(Buffer.from(aid, 'latin1'), S.appVal(app));
}

export function* appRows(t: Tables): Generator<{ aid: string; app: S.AppVal }> {
  for (const { key, value } of t.apps.getRange({})) yield { aid: key.toString('latin1'), app: S.decodeAppVal(value) };
}
