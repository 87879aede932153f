import { accessSync, chmodSync, constants, existsSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { AppshotError, EXIT, errnoText } from './errors.js';
import * as S from '../tables/schema.js';

/*
 * The home rules, in one place (native/core/home.c holds the same for the
 * shim). APPSHOT_HOME is one directory, however it is spelled: resolved to
 * its real path once, at entry, and every process of an application gets
 * that path. It and its sub-folders must belong to the user appshot runs as
 * and be writable by no one else, since whoever can write them can plant
 * links that make appshot (often root) write where they choose; a home that
 * passes is made owner-only. Files in it are opened without following links.
 */

/** The folders appshot keeps in a home. */
const SUBDIRS = ['pools', 'templates', 'stops', 'serve'] as const;
export type HomeSubdir = (typeof SUBDIRS)[number];

const OWNER_ONLY = 0o700;
const OTHERS_WRITE = 0o022;

/** The home as given: $APPSHOT_HOME, else $XDG_STATE_HOME/appshot, else
 * ~/.local/state/appshot. */
function givenHome(env: NodeJS.ProcessEnv): string {
  if (env.APPSHOT_HOME) return resolve(env.APPSHOT_HOME);
  const state = env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state');
  return join(state, 'appshot');
}

/**
 * Where the tables live, checked: its real path where it exists (and the
 * path as given where it does not yet; ensureHome makes it).
 */
export function resolveHome(env: NodeJS.ProcessEnv = process.env): string {
  const home = givenHome(env);
  try {
    statSync(home);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return home;
    throw unreachable(home, err);
  }
  return checkHome(home);
}

/** mkdir -p, one level at a time: Node's recursive mkdirSync spins forever
 * on some paths under /proc. */
function makeDirs(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) makeDirs(parent);
  try {
    mkdirSync(dir, { mode: OWNER_ONLY });
  } catch (err) {
    // Another command made it meanwhile (two started at once on a new
    // home): checkHome judges what is there.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** Makes sure home exists, creating it 0700, and is a directory of the
 * caller's that they can write; returns its real path. */
export function ensureHome(home: string): string {
  try {
    makeDirs(home);
  } catch (err) {
    throw new AppshotError(
      `cannot create APPSHOT_HOME ${home}: ${errnoText(err)}; set APPSHOT_HOME to a directory you can write`,
      EXIT.home,
    );
  }
  const real = checkHome(home);
  try {
    accessSync(real, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new AppshotError(
      `APPSHOT_HOME ${real} is not writable: ${errnoText(err)}; set APPSHOT_HOME to a directory you can write`,
      EXIT.home,
    );
  }
  return real;
}

/** The home's real path, once it and its folders pass the rules; a home
 * that passes is made owner-only. */
function checkHome(given: string): string {
  let home: string;
  let st: Stats;
  try {
    home = realpathSync(given);
    st = statSync(home);
  } catch (err) {
    throw unreachable(given, err);
  }
  if (!st.isDirectory()) throw new AppshotError(`APPSHOT_HOME ${home} is not a directory; set APPSHOT_HOME to a directory you can write`, EXIT.home);
  checkOwned(home, st, 'APPSHOT_HOME');
  tighten(home, st);
  for (const sub of SUBDIRS) checkSubdir(join(home, sub));
  return home;
}

function unreachable(home: string, err: unknown): AppshotError {
  const denied = (err as NodeJS.ErrnoException).code === 'EACCES';
  return new AppshotError(
    denied
      ? `cannot reach APPSHOT_HOME ${home}: permission denied (a directory on its path is closed to you); run appshot as the user it belongs to, or set APPSHOT_HOME to a directory of your own`
      : `cannot reach APPSHOT_HOME ${home}: ${errnoText(err)}; set APPSHOT_HOME to a directory of your own`,
    EXIT.home,
  );
}

function tighten(path: string, st: Stats): void {
  if ((st.mode & 0o777) === OWNER_ONLY) return;
  try {
    chmodSync(path, OWNER_ONLY);
  } catch (err) {
    // On a read-only filesystem no one can plant anything either.
    if ((err as NodeJS.ErrnoException).code === 'EROFS') return;
    throw new AppshotError(`cannot make ${path} owner-only (chmod 700): ${errnoText(err)}; set APPSHOT_HOME to a directory you can change`, EXIT.home);
  }
}

/** A folder of the home: absent, or a real directory (not a link) that
 * passes the home's rules. */
function checkSubdir(dir: string): Stats | undefined {
  let st: Stats;
  try {
    st = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AppshotError(`cannot check ${dir}: ${errnoText(err)}; set APPSHOT_HOME to a directory of your own`, EXIT.home);
  }
  if (st.isSymbolicLink()) throw planted(dir, 'a symbolic link');
  if (!st.isDirectory()) throw planted(dir, 'not a directory');
  checkOwned(dir, st, 'the folder');
  tighten(dir, st);
  return st;
}

/** A folder of the home, made owner-only if it is not there; checked. */
export function homeSubdir(home: string, sub: HomeSubdir): string {
  const dir = join(home, sub);
  try {
    mkdirSync(dir, { mode: OWNER_ONLY });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new AppshotError(`cannot create ${dir}: ${errnoText(err)}; set APPSHOT_HOME to a directory you can write`, EXIT.home);
  }
  checkSubdir(dir);
  return dir;
}

const uid = () => process.geteuid!();

/** A user's name from the password file, if it has one. */
function userName(id: number): string | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length > 2 && f[2] === String(id)) return f[0];
    }
  } catch {
    /* no password file: the number alone */
  }
  return undefined;
}

/** "name (uid N)", or "uid N". */
function user(id: number): string {
  const name = userName(id);
  return name ? `${name} (uid ${id})` : `uid ${id}`;
}

const modeText = (st: Stats) => (st.mode & 0o7777).toString(8).padStart(4, '0');

/** Refuses a directory of the home that is another user's or that others
 * can write. what: 'APPSHOT_HOME' or 'the folder'. */
function checkOwned(path: string, st: Stats, what: string): void {
  if (st.uid !== uid()) {
    const owner = user(st.uid);
    const me = user(uid());
    let denied = false;
    try {
      accessSync(path, constants.R_OK | constants.W_OK | constants.X_OK);
    } catch {
      denied = true;
    }
    throw new AppshotError(
      denied
        ? `${what} ${path}: permission denied: it belongs to ${owner}, mode ${modeText(st)}, not to you, ${me}; run appshot as ${userName(st.uid) ?? owner}, or set APPSHOT_HOME to a directory of your own`
        : `${what} ${path} belongs to ${owner}, not to you, ${me}: its owner could plant links there that make appshot write where they choose; set APPSHOT_HOME to a directory of your own (or, if it should be yours, check what it holds and run 'chown -R ${userName(uid()) ?? uid()} ${path}')`,
      EXIT.home,
    );
  }
  if (st.mode & OTHERS_WRITE)
    throw new AppshotError(
      `${what} ${path} (mode ${modeText(st)}) can be written by other users, who could plant links there that make appshot write where they choose; check what it holds and run 'chmod 700 ${path}', or set APPSHOT_HOME elsewhere`,
      EXIT.home,
    );
}

function planted(path: string, what: string): AppshotError {
  return new AppshotError(
    `${path} is ${what}; appshot follows no links in its home, where only it writes (someone may have planted it): remove it and run again`,
    EXIT.home,
  );
}

/**
 * The files of the home, before the tables are opened: each absent, or a
 * regular file of the caller's. LMDB opens tables.mdb and its lock file
 * itself, following links; the others are opened with O_NOFOLLOW too, but
 * this says why they are refused.
 */
export function checkHomeFiles(home: string): void {
  for (const name of [S.TABLES_FILE, `${S.TABLES_FILE}-lock`, S.INFLIGHT_FILE, S.OPEN_LOCK_FILE]) checkHomeFile(join(home, name));
}

/** One file of the home: absent, or a regular file of the caller's. */
export function checkHomeFile(path: string): void {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new AppshotError(`cannot check ${path}: ${errnoText(err)}; check that APPSHOT_HOME is yours`, EXIT.home);
  }
  if (st.isSymbolicLink()) throw planted(path, 'a symbolic link');
  if (!st.isFile()) throw planted(path, 'not a regular file');
  if (st.uid !== uid())
    throw new AppshotError(
      `${path} belongs to ${user(st.uid)}, not to you, ${user(uid())}: another user put it in your home; remove it (or set APPSHOT_HOME elsewhere)`,
      EXIT.home,
    );
}

/** Opens a file of the home without following a link in its place. */
export function openHomeFile(path: string, flags: number, mode = 0o600): number {
  try {
    return openSync(path, flags | constants.O_NOFOLLOW, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw planted(path, 'a symbolic link');
    throw err;
  }
}

/** Templates live in HOME/templates/NAME.json; each one's entry in the
 * tables (the owner of its shared segments) is template.NAME. */
export const TEMPLATE_AID_PREFIX = 'template.';

export function templatesDir(home: string): string {
  return join(home, 'templates');
}

export function templateFile(home: string, name: string): string {
  return join(templatesDir(home), `${name}.json`);
}

/** Whether a template entry of the tables still has its file: one without
 * was left by a template create that died part way. */
export function templateFileExists(home: string, aid: string): boolean {
  return aid.startsWith(TEMPLATE_AID_PREFIX) && existsSync(templateFile(home, aid.slice(TEMPLATE_AID_PREFIX.length)));
}
