import { once } from 'node:events';
import { AppshotError, EXIT } from '../ts/errors.js';
import { resolveHome } from '../ts/home.js';
import { checkAid } from '../ts/aid.js';
import { type TableDb, openTableDb } from '../ts/tabledb.js';
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
  renderApps,
  renderTable,
  sortRows,
} from './views/inspect.js';
import type { SortField } from './views/filters.js';
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
}

/** The translations of a view, filtered, sorted if asked, paged. */
function translations(view: View, f: Filter, flags: TablesFlags, page: Page): Iterable<TranslationRow> {
  const rows = view.translations(f);
  if (!flags.sort) return slice(rows, page.offset, page.limit);
  return sortRows([...rows], flags.sort, flags.desc).slice(page.offset, page.offset + page.limit);
}

async function showTranslations(t: TableDb, f: Filter, flags: TablesFlags, page: Page, text: boolean): Promise<void> {
  const view = new View(t);
  try {
    if (!text) {
      // A published port's row carries the pool behind it.
      const { poolRows } = await import('./views/ports.js');
      const pools = flags.json && (!f.type || f.type === 'publish') ? await poolRows(t, { aid: f.aid }) : [];
      const withPool = (r: TranslationRow) => (r.type === 'publish' ? { ...r, pool: pools.find((p) => p.public === r.system) ?? null } : r);
      await stream(map(translations(view, f, flags, page), withPool), flags.json, csvHeader(TRANSLATION_COLUMNS), csvTranslation);
      return;
    }
    // One row past the page tells whether another page follows.
    const rows = [...translations(view, f, flags, { ...page, limit: page.limit + 1 })];
    const more = rows.length > page.limit;
    if (more) rows.pop();
    process.stdout.write(renderTable(rows) + '\n');
    const filtered = Object.values(f).some((v) => v !== undefined);
    if (rows.length || page.offset) {
      const of = filtered ? '' : ` of ${view.total()}`;
      const next = more ? `; the next page: --page ${page.offset / page.limit + 2}` : '';
      process.stdout.write(`rows ${page.offset + 1}-${page.offset + rows.length}${of}${next}\n`);
    }
    if (rows.some((r) => r.type === 'publish')) {
      const { poolRows, renderPools } = await import('./views/ports.js');
      const pools = await poolRows(t, { aid: f.aid });
      if (pools.length) process.stdout.write('\nPools behind published ports:\n' + renderPools(pools) + '\n');
    }
  } finally {
    view.close();
  }
}

async function showApps(t: TableDb, f: Filter, flags: TablesFlags, page: Page, text: boolean): Promise<void> {
  const view = new View(t);
  try {
    const rows: Iterable<AppRow> = slice(view.applications({ aid: f.aid, state: f.state }), page.offset, page.limit);
    if (text) process.stdout.write(renderApps([...rows]) + '\n');
    else await stream(rows, flags.json, csvHeader(APP_COLUMNS), csvApp);
  } finally {
    view.close();
  }
}

/** --watch: the first page redrawn in place every interval, as top does,
 * until interrupted. */
async function watch(t: TableDb, f: Filter, flags: TablesFlags, page: Page, seconds: number): Promise<void> {
  const stop = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stdout.write('\x1b[?25l'); // hide the cursor
  try {
    for (;;) {
      process.stdout.write('\x1b[H\x1b[2J'); // home, clear
      process.stdout.write(`appshot tables, every ${seconds} s (Ctrl-C ends) — ${new Date().toISOString()}\n`);
      await (flags.apps ? showApps : showTranslations)(t, f, flags, page, true);
      const tick = new Promise<'tick'>((r) => setTimeout(() => r('tick'), seconds * 1000));
      if ((await Promise.race([tick, stop.then(() => 'stop' as const)])) === 'stop') return;
    }
  } finally {
    process.stdout.write('\x1b[?25h\n');
  }
}

/** `appshot tables`: returns the exit status. */
export async function tablesCommand(flags: TablesFlags): Promise<number> {
  if (flags.aid !== undefined) checkAid(flags.aid);
  if (flags.json && flags.csv) throw new AppshotError('--json and --csv: choose one', EXIT.usage);
  const f: Filter = {
    aid: flags.aid,
    type: flags.type,
    state: flags.state,
    vrid: whole('--vrid', flags.vrid, 0),
    srid: whole('--srid', flags.srid, 0),
  };
  const t = openTableDb(resolveHome());
  if (flags.verify || flags.repair) {
    const { describeFindings, verify } = await import('../ts/verify.js');
    const findings = verify(t, { repair: flags.repair });
    for (const line of describeFindings(findings)) process.stdout.write(line + '\n');
    return findings.every((x) => x.repaired) ? EXIT.ok : EXIT.inconsistent;
  }
  const text = !flags.json && !flags.csv;
  const limit = whole('--limit', flags.limit, 1) ?? (text ? TEXT_PAGE : Infinity);
  const pageNo = whole('--page', flags.page, 1) ?? 1;
  const page = { offset: Number.isFinite(limit) ? (pageNo - 1) * limit : 0, limit };
  if (flags.watch !== undefined && flags.watch !== false) {
    const seconds = flags.watch === true ? 1 : Number(flags.watch);
    if (!(seconds > 0)) throw new AppshotError(`--watch '${flags.watch}' is not a number of seconds`, EXIT.usage);
    if (!text) throw new AppshotError('--watch shows a table: it does not go with --json or --csv', EXIT.usage);
    await watch(t, f, flags, page, seconds);
    return EXIT.ok;
  }
  await (flags.apps ? showApps : showTranslations)(t, f, flags, page, text);
  return EXIT.ok;
}
