import { once } from 'node:events';
import { AppshotError, EXIT } from '../ts/errors.js';
import { resolveHome } from '../ts/home.js';
import { checkAid } from '../ts/aid.js';
import { type TableDb, checkWhole, firstFwdRows, openTableDb } from '../ts/tabledb.js';
import {
  APP_COLUMNS,
  type AppRow,
  type Filter,
  TRANSLATION_COLUMNS,
  type TranslationRow,
  View,
  csvApp,
  csvHeader,
  csvTranslation,
  fwdTranslation,
  renderApps,
  renderTable,
  sortRows,
} from './views/inspect.js';
import type { SortField } from './views/filters.js';
import { type Format, formatOf } from './views/format.js';
import { requireApp } from './views/apps.js';
import { foldJournal } from '../ts/sysv/object.js';
import type * as S from '../tables/schema.js';

export interface TablesFlags {
  aid?: string;
  type?: string;
  state?: S.AppState;
  vrid?: string;
  srid?: string;
  apps: boolean;
  sort?: SortField;
  desc: boolean;
  limit?: string;
  page?: string;
  json: boolean;
  csv: boolean;
  format?: Format;
  watch?: string | boolean;
  verify: boolean;
  repair: boolean;
}

/** Rows a text page shows unless --limit says otherwise. */
const TEXT_PAGE = 50;

function whole(flag: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min)) throw new AppshotError(`${flag} '${text}' is not a whole number of at least ${min}`, EXIT.usage);
  return n;
}

/** Writes with backpressure: 1M rows stream out in constant memory. */
async function emit(chunk: string): Promise<void> {
  if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
}

/** Rows offset..offset+limit of a lazy sequence (and whether more follow). */
function* slice<T>(rows: Iterable<T>, offset: number, limit: number): Generator<T> {
  let i = 0;
  for (const r of rows) {
    if (i >= offset + limit) return;
    if (i++ >= offset) yield r;
  }
}

async function stream<T>(rows: Iterable<T>, json: boolean, header: string, line: (r: T) => string): Promise<void> {
  let buf = json ? '[' : header + '\n';
  let first = true;
  for (const r of rows) {
    buf += json ? (first ? '\n' : ',\n') + JSON.stringify(r) : line(r) + '\n';
    first = false;
    if (buf.length > 1 << 16) {
      await emit(buf);
      buf = '';
    }
  }
  await emit(buf + (json ? (first ? ']\n' : '\n]\n') : ''));
}

function* map<T, U>(rows: Iterable<T>, fn: (r: T) => U): Generator<U> {
  for (const r of rows) yield fn(r);
}

interface Page {
  offset: number;
  limit: number;
  /** The page asked for (from 1). */
  number: number;
}

/** A page that starts past the last row is a mistake in the command, not
 * an empty answer: say where the last page is. */
function pastEnd(page: Page, count: number): AppshotError {
  if (!Number.isFinite(page.limit)) return new AppshotError(`--page ${page.number}: without --limit every row is on page 1; give --limit N to page`, EXIT.usage);
  const last = Math.max(1, Math.ceil(count / page.limit));
  const rows = count ? `${count} row(s) at ${page.limit} a page` : 'no rows';
  return new AppshotError(`page ${page.number} is past the last page, ${last} (${rows})`, EXIT.usage);
}

function count(rows: Iterable<unknown>): number {
  let n = 0;
  for (const _ of rows) n++;
  return n;
}

/** The rows of a page that is not past the end (else a usage error): the
 * first row is read before anything is printed. */
function pageRows<T>(rows: Iterable<T>, page: Page, all: () => number): Iterable<T> {
  if (page.number === 1) return rows;
  const it = rows[Symbol.iterator]();
  const first = it.next();
  if (first.done) throw pastEnd(page, all());
  return (function* () {
    yield first.value;
    for (let r = it.next(); !r.done; r = it.next()) yield r.value;
  })();
}

/** The translations of a view, filtered, sorted if asked, paged. */
function translations(view: View, f: Filter, flags: TablesFlags, page: Page): Iterable<TranslationRow> {
  const rows = view.translations(f);
  if (!flags.sort) return slice(rows, page.offset, page.limit);
  return sortRows([...rows], flags.sort, flags.desc).slice(page.offset, page.offset + page.limit);
}

async function showTranslations(t: TableDb, f: Filter, flags: TablesFlags, page: Page, format: Format): Promise<void> {
  const view = new View(t);
  const filtered = Object.values(f).some((v) => v !== undefined);
  const all = () => (filtered ? count(view.translations(f)) : view.total());
  try {
    if (format === 'json' || format === 'csv') {
      // A published port's row carries the pool behind it.
      const { poolRows } = await import('./views/ports.js');
      const pools = format === 'json' && (!f.type || f.type === 'publish') ? await poolRows(t, { aid: f.aid }) : [];
      const withPool = (r: TranslationRow) => (r.type === 'publish' ? { ...r, pool: pools.find((p) => p.public === r.system) ?? null } : r);
      const rows = pageRows(translations(view, f, flags, page), page, all);
      await stream(map(rows, withPool), format === 'json', csvHeader(TRANSLATION_COLUMNS), csvTranslation);
      return;
    }
    // One row past the page tells whether another page follows.
    const rows = [...translations(view, f, flags, { ...page, limit: page.limit + 1 })];
    if (!rows.length && page.number > 1) throw pastEnd(page, all());
    printPage(rows, page, format, filtered ? undefined : view.total());
    if (rows.some((r) => r.type === 'publish')) {
      // The pools are read from every application's rows, not just the first ones.
      checkWhole(t);
      const { poolRows, renderPools } = await import('./views/ports.js');
      const pools = await poolRows(t, { aid: f.aid });
      if (pools.length) process.stdout.write('\nPools behind published ports:\n' + renderPools(pools, format) + '\n');
    }
  } finally {
    view.close();
  }
}

/** A text page: its rows (and the one after it, if any, which says another
 * page follows), then where it lies among the rows (of total, when known). */
function printPage(rows: TranslationRow[], page: Page, format: 'plain' | 'table', total: number | undefined): void {
  const more = rows.length > page.limit;
  const shown = more ? rows.slice(0, page.limit) : rows;
  process.stdout.write(renderTable(shown, format) + '\n');
  if (shown.length || page.offset) {
    const of = total === undefined ? '' : ` of ${total}`;
    const next = more ? `; the next page: --page ${page.offset / page.limit + 2}` : '';
    process.stdout.write(`rows ${page.offset + 1}-${page.offset + shown.length}${of}${next}\n`);
  }
}

/**
 * A text page of the translations, unfiltered, read in C: only its rows
 * (ts/tabledb.ts firstFwdRows), without loading lmdb here. False, having
 * printed nothing, when that page is not to be had that way: the tables
 * hold fewer rows than it reads (path redirections follow the
 * translations: the usual read shows them), or it shows a published port
 * (whose pools are read from every application).
 */
function quickPage(home: string, page: Page, format: Format, reads: number): boolean {
  if (format !== 'plain' && format !== 'table') return false;
  const r = firstFwdRows(home, reads, page.offset);
  if (!r || r.rows.length < reads - page.offset) return false;
  const rows = r.rows.slice(0, page.limit + 1).map(([key, value]) => fwdTranslation(key, value));
  if (rows.some((row) => row.type === 'publish')) return false;
  printPage(rows, page, format, r.fwdEntries + r.pathEntries);
  return true;
}

async function showApps(t: TableDb, f: Filter, _flags: TablesFlags, page: Page, format: Format): Promise<void> {
  const view = new View(t);
  try {
    const which = { aid: f.aid, state: f.state };
    const rows: Iterable<AppRow> = pageRows(slice(view.applications(which), page.offset, page.limit), page, () => count(view.applications(which)));
    if (format === 'json' || format === 'csv') await stream(rows, format === 'json', csvHeader(APP_COLUMNS), csvApp);
    else process.stdout.write(renderApps([...rows], format) + '\n');
  } finally {
    view.close();
  }
}

/**
 * --watch: the page redrawn every interval until interrupted. On a terminal
 * it is redrawn in place, as top does. Into a pipe or a file the frames
 * follow one another, each under its title line and apart by a blank line,
 * with no terminal codes, as `top -b` writes them: a log of the tables over
 * time that `tee`, `grep` and a reader of the file can use.
 */
async function watch(t: TableDb, f: Filter, flags: TablesFlags, page: Page, seconds: number, format: Format): Promise<void> {
  const stop = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  const terminal = process.stdout.isTTY === true;
  if (terminal) process.stdout.write('\x1b[?25l'); // hide the cursor
  try {
    for (let frame = 0; ; frame++) {
      if (terminal) process.stdout.write('\x1b[H\x1b[2J'); // home, clear
      else if (frame) process.stdout.write('\n');
      process.stdout.write(`appshot tables, every ${seconds} s (Ctrl-C ends) — ${new Date().toISOString()}\n`);
      await (flags.apps ? showApps : showTranslations)(t, f, flags, page, format);
      const tick = new Promise<'tick'>((r) => setTimeout(() => r('tick'), seconds * 1000));
      if ((await Promise.race([tick, stop.then(() => 'stop' as const)])) === 'stop') return;
    }
  } finally {
    if (terminal) process.stdout.write('\x1b[?25h\n');
  }
}

/**
 * How many rows the command reads, when it reads only the first rows of the
 * tables in key order: a page of the translations, unfiltered and unsorted,
 * as text or CSV. Then only the pages holding them are checked before
 * they are read (ts/tabledb.ts), and the first page costs the same at a
 * thousand mappings as at a million. The page's rows, the one after them
 * that says whether another page follows, and the one the slice reads
 * before it stops. Anything else may read rows anywhere (a filter jumps to
 * an application's rows, --apps counts each one's processes, a sort or
 * --verify reads all, --json adds the pools from every application,
 * --watch reads newer rows each frame): undefined, every page is checked.
 */
function firstRowsRead(f: Filter, flags: TablesFlags, page: Page, format: Format, watching: boolean): number | undefined {
  const filtered = Object.values(f).some((v) => v !== undefined);
  if (filtered || flags.apps || flags.sort || flags.verify || flags.repair || watching || format === 'json' || !Number.isFinite(page.limit)) return undefined;
  return page.offset + page.limit + 2;
}

/** `appshot tables`: returns the exit status. */
export async function tablesCommand(flags: TablesFlags): Promise<number> {
  if (flags.aid !== undefined) checkAid(flags.aid);
  // Combinations commander's conflicts() cannot say (they hang on a value).
  const format = formatOf(flags);
  const checking = flags.verify || flags.repair;
  if (flags.desc && !flags.sort) throw new AppshotError('--desc reverses the order of --sort: give --sort FIELD too', EXIT.usage);
  if (checking && (format === 'table' || format === 'csv') && flags.format)
    throw new AppshotError(`--${flags.verify ? 'verify' : 'repair'} prints its findings one a line, or as JSON: it does not go with --format ${flags.format}`, EXIT.usage);
  const watching = flags.watch !== undefined && flags.watch !== false;
  if (watching && (format === 'json' || format === 'csv')) throw new AppshotError(`--watch redraws a table: it does not go with --format ${format}`, EXIT.usage);
  const f: Filter = {
    aid: flags.aid,
    type: flags.type,
    state: flags.state,
    vrid: whole('--vrid', flags.vrid, 0),
    srid: whole('--srid', flags.srid, 0),
  };
  const text = format === 'plain' || format === 'table';
  const limit = whole('--limit', flags.limit, 1) ?? (text ? TEXT_PAGE : Infinity);
  const pageNo = whole('--page', flags.page, 1) ?? 1;
  const page = { offset: Number.isFinite(limit) ? (pageNo - 1) * limit : 0, limit, number: pageNo };
  if (!Number.isFinite(limit) && pageNo > 1) throw pastEnd(page, 0);
  const seconds = flags.watch === true ? 1 : Number(flags.watch);
  if (watching && !(seconds > 0)) throw new AppshotError(`--watch '${flags.watch}' is not a number of seconds`, EXIT.usage);
  const firstRows = firstRowsRead(f, flags, page, format, watching);
  if (firstRows !== undefined && quickPage(resolveHome(), page, format, firstRows)) return EXIT.ok;
  const t = openTableDb(resolveHome(), { firstRows });
  foldJournal(t);
  if (checking) {
    const { describeFindings, verify } = await import('../ts/verify.js');
    const findings = verify(t, { repair: flags.repair });
    if (format === 'json') process.stdout.write(JSON.stringify(findings, null, 2) + '\n');
    else for (const line of describeFindings(findings)) process.stdout.write(line + '\n');
    return findings.every((x) => x.repaired) ? EXIT.ok : EXIT.inconsistent;
  }
  if (f.aid !== undefined) requireApp(t, f.aid);
  if (watching) {
    await watch(t, f, flags, page, seconds, format);
    return EXIT.ok;
  }
  await (flags.apps ? showApps : showTranslations)(t, f, flags, page, format);
  return EXIT.ok;
}
