import { AppshotError, EXIT } from './errors.js';
import { type TableDb, prefixRange } from './tabledb.js';
import * as S from '../tables/schema.js';

/**
 * Path redirection ("dynamic symbolic links"): in every process of an
 * application, a path FROM covers (FROM itself, or anything under it) is
 * rewritten to lie under TO before the real call (native/shim/path.c), so
 * clones of one program each get their own files. The redirections live
 * in the `paths` table, one row per redirection, in the order they apply:
 * the first that covers a path wins.
 */
export interface Redirect {
  /** What the program names: absolute. */
  from: string;
  /** Where the kernel finds it: absolute. */
  to: string;
}

/** How many redirections one application may have (the index is a u16). */
const MAX_REDIRECTS = 0x10000;

/**
 * p without '//', '.' and trailing '/', with '..' resolved lexically (as the
 * shim compares paths: without asking the file system). Throws an
 * AppshotError (exit 2) if p is not absolute or is too long for the kernel.
 */
export function normalizePath(p: string): string {
  if (!p.startsWith('/'))
    throw new AppshotError(`path '${p}' is not absolute; give the whole path from '/'`, EXIT.usage);
  if (p.includes('\0')) throw new AppshotError(`path '${p.replace(/\0/g, '\\0')}' holds a NUL byte; no file can have that name`, EXIT.usage);
  const parts: string[] = [];
  for (const c of p.split('/')) {
    if (c === '..') parts.pop();
    else if (c !== '' && c !== '.') parts.push(c);
  }
  const out = '/' + parts.join('/');
  if (Buffer.byteLength(out, 'utf8') >= S.PATH_MAX)
    throw new AppshotError(`path '${p.slice(0, 60)}...' is ${Buffer.byteLength(out, 'utf8')} bytes long, and the kernel takes paths shorter than ${S.PATH_MAX}; choose a shorter one`, EXIT.usage);
  return out;
}

/** Where the rest of path p begins (after dir's components) when p is dir
 * or lies under it, comparing as the shim does: '//' and '/./' in p are
 * skipped, nothing else is resolved. undefined when dir does not cover p. */
function coveredRest(p: string, dir: string): string | undefined {
  let i = 0;
  for (const want of dir.split('/').slice(1)) {
    for (;;) {
      while (p[i] === '/') i++;
      if (p[i] === '.' && (p[i + 1] === '/' || i + 1 === p.length)) i++;
      else break;
    }
    let end = p.indexOf('/', i);
    if (end < 0) end = p.length;
    if (p.slice(i, end) !== want) return undefined;
    i = end;
  }
  return p.slice(i);
}

/** The path the kernel gets for absolute path p under these redirections
 * (p itself when none covers it), as the shim computes it. */
export function redirectPath(list: Redirect[], p: string): string {
  if (!p.startsWith('/')) return p;
  for (const r of list) {
    const rest = coveredRest(p, r.from);
    if (rest !== undefined) return r.to + rest;
  }
  return p;
}

/**
 * The list checked and normalized: FROM and TO absolute and short enough,
 * FROM not '/' (that would redirect every path), not equal to TO, each FROM
 * once, and (given home) no FROM covering APPSHOT_HOME, where the shim
 * reads its own tables. Throws an AppshotError (exit 2) naming the first
 * problem.
 */
export function checkRedirects(list: Redirect[], home?: string): Redirect[] {
  if (list.length > MAX_REDIRECTS)
    throw new AppshotError(`${list.length} path redirections given; an application may have at most ${MAX_REDIRECTS}`, EXIT.usage);
  const seen = new Map<string, Redirect>();
  return list.map((given) => {
    const what = `redirection ${given.from} -> ${given.to}`;
    const r = { from: normalizePath(given.from), to: normalizePath(given.to) };
    if (r.from === '/') throw new AppshotError(`${what}: FROM is '/', which would redirect every path; redirect the directories the program uses instead`, EXIT.usage);
    if (r.from === r.to) throw new AppshotError(`${what}: FROM and TO are the same path; leave it out, or give another TO`, EXIT.usage);
    const before = seen.get(r.from);
    if (before)
      throw new AppshotError(`FROM ${r.from} is given twice (-> ${before.to} and -> ${r.to}); give each FROM once`, EXIT.usage);
    seen.set(r.from, r);
    if (home !== undefined && coveredRest(home, r.from) !== undefined)
      throw new AppshotError(`${what}: FROM covers APPSHOT_HOME (${home}), where appshot keeps the tables its shim reads; redirect a directory that does not hold it, or set APPSHOT_HOME elsewhere`, EXIT.usage);
    return r;
  });
}

/** One --redir FROM=TO value (split at its first '='), checked alone;
 * checkRedirects then checks the list. */
export function parseRedirect(spec: string): Redirect {
  const eq = spec.indexOf('=');
  if (eq < 0)
    throw new AppshotError(`--redir '${spec}' is not FROM=TO; give two absolute paths joined by '=', as --redir /srv/app/config=/srv/app/web-1/config`, EXIT.usage);
  const r = { from: spec.slice(0, eq), to: spec.slice(eq + 1) };
  try {
    return checkRedirects([r])[0];
  } catch (err) {
    if (err instanceof AppshotError) throw new AppshotError(`--redir '${spec}': ${err.message}`, err.exitCode);
    throw err;
  }
}

/** Inside writeTxn(t, ...): the application's redirections replaced by
 * list (checked here too), in its order. */
export function putRedirects(t: TableDb, aid: string, list: Redirect[]): void {
  const checked = checkRedirects(list, t.home);
  for (const key of [...t.paths.getKeys(prefixRange(S.fwdPrefix(aid)))]) t.paths.removeSync(key);
  checked.forEach((r, i) => t.paths.putSync(S.pathKey(aid, i), S.pathVal(r.from, r.to)));
}

/** The application's redirections, in the order they apply. */
export function redirectsOf(t: TableDb, aid: string): Redirect[] {
  return [...t.paths.getRange(prefixRange(S.fwdPrefix(aid)))].map(({ value }) => S.decodePathVal(value));
}
