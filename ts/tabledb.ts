import { closeSync, constants, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type { Database, RootDatabase, RootDatabaseOptionsWithPath } from 'lmdb';
import { AppshotError, EXIT, errnoText } from './errors.js';
import { addon } from './addon.js';
import { checkHomeFiles, openHomeFile } from './home.js';
import { fdLinks } from './procinfo.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
import * as S from '../tables/schema.js';

type Bin = Database<Buffer, Buffer>;

/** The lmdb package, loaded when tables are first opened: its CommonJS
 * build (one file: 20-25 ms sooner here than its ES modules), and not at
 * all by a command that reads the tables in C (firstFwdRows). */
let lmdbModule: typeof import('lmdb') | undefined;
const lmdb = () => (lmdbModule ??= createRequire(import.meta.url)('lmdb') as typeof import('lmdb'));

/** The LMDB environment under APPSHOT_HOME, opened from Node with the same
 * layout, map size and reader limit the shim uses. */
export interface TableDb {
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
  /** A home where nothing has run, read as empty tables (see emptyTables):
   * nothing of it is in the home, and nothing written to it is kept. */
  empty?: boolean;
}

const binary = { keyEncoding: 'binary', encoding: 'binary' } as const;

/** The environment as the shim opens it (native/core/tabledb.c). */
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
 * The open lock (see native/core/tabledb.h): the lmdb package's LMDB writes
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
export function writeTxn<T>(t: TableDb, fn: () => T): T {
  let committing = false; // fn's own errors (a kernel's ENOSPC, say) are fn's to tell
  if (t.empty) return t.env.transactionSync(fn);
  try {
    return withOpenLock(t.home, LOCK_SH, () =>
      t.env.transactionSync(() => {
        const r = fn();
        committing = true;
        return r;
      }),
    );
  } catch (err) {
    if (committing && noSpace(err)) throw new AppshotError(`cannot write the tables at ${t.path}: no space left on its filesystem; nothing was written. ${FREE_SPACE}`, EXIT.home);
    throw err;
  }
}

const FREE_SPACE = 'Free some space there, or set APPSHOT_HOME to a directory on another filesystem';

function noSpace(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOSPC' || /No space left on device/.test(String((err as Error)?.message ?? err));
}

/** Whether the tables at path are yet to be made: no file, or the empty
 * one a reservation left (LMDB sets an empty file up as new tables). One
 * the caller may not look at is not "nothing has run". */
function unmade(path: string): boolean {
  try {
    return statSync(path).size === 0;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return true;
    throw new AppshotError(
      `cannot open tables at ${path}: ${code === 'EACCES' ? 'permission denied' : errnoText(err)}; run appshot as the user whose APPSHOT_HOME this is, or set APPSHOT_HOME to a directory of your own`,
      EXIT.home,
    );
  }
}

/** Whether anything has run under home: its tables are made. */
export function tablesMade(home: string): boolean {
  return !unmade(join(home, S.TABLES_FILE));
}

/** How openTableDb is to be used: create makes new tables where there are
 * none; firstRows says the caller reads only the first so many rows of each
 * table in key order (the first page of a listing), so only the pages those
 * reads pass through are checked (see checkDataFile), not all of them. */
export interface OpenOptions {
  create?: boolean;
  firstRows?: number;
}

export function openTableDb(home: string, opts: OpenOptions = {}): TableDb {
  const path = join(home, S.TABLES_FILE);
  const none = () => new AppshotError(`no tables at ${path}; nothing has run under this APPSHOT_HOME yet`, EXIT.home);
  if (!opts.create && unmade(path)) return emptyTables(home, path, none);
  checkHomeFiles(home);
  try {
    // Opening the named databases and the first meta rows write too: all
    // of it under the exclusive lock.
    return withOpenLock(home, LOCK_EX, () => {
      const fresh = unmade(path);
      if (fresh && !opts.create) throw none();
      if (!fresh) return openEnv(home, path, opts.firstRows ?? true);
      reserveTables(home);
      try {
        return openEnv(home, path);
      } catch (err) {
        addon().unreserveTables(home); // nothing half-made is left
        throw err;
      }
    });
  } catch (err) {
    if (err instanceof AppshotError) throw err;
    if (noSpace(err)) throw new AppshotError(`cannot make the tables at ${path}: no space left on its filesystem; nothing was made. ${FREE_SPACE}`, EXIT.home);
    throw new AppshotError(`cannot open tables at ${path}: ${errnoText(err)}; check that APPSHOT_HOME is writable`, EXIT.home);
  }
}

/** The first blocks of new tables, taken before LMDB maps anything
 * (native/core/tablespace.h): on a full disk, a message and nothing made
 * rather than SIGBUS. */
function reserveTables(home: string): void {
  try {
    addon().reserveTables(home);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AppshotError(`${e.message}; nothing was made. ${e.code === 'ENOSPC' ? FREE_SPACE : 'Check that APPSHOT_HOME is writable'}`, EXIT.home);
  }
}

/**
 * The tables of a home where nothing has run (no home, no tables file, or
 * the empty one a reservation left): a command that only reads them
 * (tables, ps, gc, ...) finds them empty rather than refusing, and makes
 * nothing in the home. They are an empty environment in a private folder
 * under the system's temporary directory, unlinked as soon as it is open
 * (the map stays), so nothing is left behind either.
 */
function emptyTables(home: string, path: string, none: () => AppshotError): TableDb {
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'appshot-empty-'));
    const t = openEnv(home, join(dir, S.TABLES_FILE), false);
    return { ...t, path, empty: true };
  } catch {
    throw none(); // no temporary directory to be had: say what the home lacks
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** Opens the environment at path (checked first unless it is new: check
 * is checkDataFile's scope) with its named databases and meta rows;
 * closes it again if any of that fails. */
function openEnv(home: string, path: string, check: boolean | number = true): TableDb {
  if (check !== false) {
    if (statSync(path).size > 0) checkDataFile(path, check);
    checkLockFile(`${path}-lock`, home);
  }
  const env = lmdb().open<Buffer, Buffer>(envOptions(path));
  try {
    const db = (name: string) => env.openDB<Buffer, Buffer>({ name, ...binary });
    const t: TableDb = {
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
  } catch (err) {
    env.close();
    throw err;
  }
}

/**
 * LMDB has no page checksums and follows every page number and offset it
 * reads: a damaged page makes Node's lmdb read outside its map (SIGSEGV,
 * SIGBUS) or abort. Every page reachable from the file's header is checked
 * once here (native/core/tablecheck.c), under the open lock, so no commit
 * is torn under the walk, before lmdb reads any of them. scope true: every
 * page (86 MB, 35-60 ms at a million mappings); a number N: the pages a
 * reader of the first N rows passes through, whatever the table's size.
 */
function checkDataFile(path: string, scope: true | number): void {
  const why = addon().checkTables(path, scope);
  if (why !== null) throw damagedTables(path, why);
}

/**
 * Translations skip to n - 1 in key order (raw forward rows) and the
 * entries of fwd and paths, read in C (native/addon/firstpage.cc) after the
 * checks an open with firstRows: n makes, without loading lmdb here or
 * opening the environment through it: a page of `appshot tables`. null
 * where that is not to be had (no tables yet, or the C open refused): the
 * caller opens the tables as usual, which says why.
 */
export function firstFwdRows(home: string, n: number, skip = 0): ReturnType<ReturnType<typeof addon>['firstRows']> {
  const path = join(home, S.TABLES_FILE);
  if (unmade(path)) return null;
  checkHomeFiles(home);
  withOpenLock(home, LOCK_EX, () => {
    checkDataFile(path, n);
    checkLockFile(`${path}-lock`, home);
  });
  return addon().firstRows(home, n, skip);
}

/** Every page checked now, for a reader opened with firstRows that is about
 * to read further than that (under the open lock, as at open). */
export function checkWhole(t: TableDb): void {
  if (!t.empty) withOpenLock(t.home, LOCK_EX, () => checkDataFile(t.path, true));
}

/** LMDB's lock file, before lmdb maps it: garbage reader slots (a
 * program's stray write) are cleared; a garbage header while other
 * processes use it is refused, where lmdb would abort on its lock. */
function checkLockFile(lockPath: string, home: string): void {
  const r = addon().checkLock(lockPath);
  if (r && 'damaged' in r) throw new AppshotError(`${r.damaged}; nothing was changed. End the applications using ${home}, then run again (LMDB rebuilds the file when no one uses it)`, EXIT.home);
  if (r) process.stderr.write(`appshot: ${r.repaired}\n`);
}

/**
 * For a harness whose application has ended, before it cleans up: a program
 * of the application may have written into LMDB's lock file (its mapping is
 * in every process), and lmdb aborts the process on a garbage write lock.
 * Checked through lmdb's own descriptor (closing another would drop lmdb's
 * locks); with its header damaged, this process lets go of the tables and
 * opens them again, and LMDB, then the only opener, rebuilds the file.
 */
export function healLock(t: TableDb): void {
  const lockPath = `${t.path}-lock`;
  const fd = descriptorOf(lockPath);
  const r = fd === undefined ? null : addon().checkLock(lockPath, fd);
  if (!r) return;
  if ('repaired' in r) {
    process.stderr.write(`appshot: ${r.repaired}\n`);
    return;
  }
  if (r.inUse) throw new AppshotError(`${r.damaged}; the tables were left as they are. Once those processes end, run appshot gc (LMDB rebuilds the file when no one uses it)`, EXIT.home);
  process.stderr.write(`appshot: ${r.damaged}; opening the tables again\n`);
  t.env.close();
  Object.assign(t, openTableDb(t.home));
}

/** This process's descriptor of path, found without opening it. */
function descriptorOf(path: string): number | undefined {
  for (const [fd, target] of fdLinks('self')) if (target === path) return fd;
  return undefined;
}

function damagedTables(path: string, why: string): AppshotError {
  return new AppshotError(`the tables at ${path} are damaged: ${why}; nothing was changed. Move the file aside (appshot starts new tables) or restore it from a backup`, EXIT.home);
}

const metaKey = (name: string) => Buffer.from(name, 'latin1');

function initMeta(t: TableDb): number {
  const version = t.meta.get(metaKey('version'));
  if (version === undefined) {
    t.meta.putSync(metaKey('version'), S.u32(S.SCHEMA_VERSION));
    // 1..0xfffffffe, from the Web Crypto global: node:crypto costs every
    // command 5-10 ms to load, and only new tables need it.
    const node = 1 + (globalThis.crypto.getRandomValues(new Uint32Array(1))[0] % 0xfffffffe);
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
export function nextCounter(t: TableDb, name: string): number {
  const cur = t.meta.get(metaKey(name));
  const n = cur ? S.readU32(cur) : 1;
  t.meta.putSync(metaKey(name), S.u32(n + 1));
  return n;
}

export interface FwdRow extends S.FwdKey, S.FwdVal {}

/** Every fwd row, or those of one AID, or of one AID and type, in key order. */
export function* fwdRows(t: TableDb, aid?: string, type?: number): Generator<FwdRow> {
  const range = aid === undefined ? {} : prefixRange(S.fwdPrefix(aid, type));
  for (const { key, value } of t.fwd.getRange(range)) {
    const k = S.decodeFwdKey(key);
    if (aid !== undefined && k.aid !== aid) continue;
    // Not { ...k, ...v }: a spread of two objects per row was 9 us a row
    // here, most of reading an application's rows (a snapshot's 2,500 sets).
    yield Object.assign(k, S.decodeFwdVal(value));
  }
}

/** The rows of one resource type, of one application or of each: per
 * application its own key range, so a million rows of other types are not
 * read. */
export function* fwdRowsOfType(t: TableDb, type: number, aid?: string): Generator<FwdRow> {
  if (aid !== undefined) return yield* fwdRows(t, aid, type);
  for (const { aid: each } of [...appRows(t)]) yield* fwdRows(t, each, type);
}

export function prefixRange(prefix: Buffer): { start: Buffer; end: Buffer } {
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  return { start: prefix, end };
}

export function getApp(t: TableDb, aid: string): S.AppVal | undefined {
  const v = t.apps.get(Buffer.from(aid, 'latin1'));
  return v ? S.decodeAppVal(v) : undefined;
}

export function putApp(t: TableDb, aid: string, app: S.AppVal): void {
  t.apps.putSync(Buffer.from(aid, 'latin1'), S.appVal(app));
}

export function* appRows(t: TableDb): Generator<{ aid: string; app: S.AppVal }> {
  for (const { key, value } of t.apps.getRange({})) yield { aid: key.toString('latin1'), app: S.decodeAppVal(value) };
}

/** Drops an application's apps row, inside the caller's write transaction
 * (its other rows are cleanup's to remove first, ts/cleanup.ts). */
export function removeApp(t: TableDb, aid: string): boolean {
  return t.apps.removeSync(Buffer.from(aid, 'latin1'));
}
