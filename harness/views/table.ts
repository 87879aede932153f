import { createRequire } from 'node:module';
import type TableType from 'cli-table3';
import type { CellFormat } from './format.js';

/**
 * The one place a table is drawn. Every view hands its header and rows
 * here with the format asked for:
 * - table: boxed (cli-table3), a line under the header only, for a terminal;
 * - plain: aligned columns under a header line, two spaces apart, no box
 *   drawing and no colour: what a pipe, grep, awk or cut reads;
 * - csv:   the header in lower case, then one line per row.
 * No format draws colour: cli-table3's default red header and grey border
 * are turned off, so NO_COLOR and a pipe have nothing to take away.
 */

export { type CellFormat, FORMATS, type Format, formatOf, textFormat } from './format.js';

export interface TableOptions {
  /** Column widths for the boxed table, null for as wide as it needs; a
   * set width wraps its cells (and each row is then ruled off). */
  widths?: (number | null)[];
}

/** A cell on one line: a command line or path with a newline in it must
 * not break a plain row or a CSV record in two. */
function oneLine(s: string): string {
  return s.replace(/[\r\n\t]/g, (c) => (c === '\t' ? ' ' : c === '\n' ? '\\n' : '\\r'));
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvHeader(head: string[]): string {
  return head.map((c) => csvField(c.toLowerCase())).join(',');
}

export function csvLine(cells: string[]): string {
  return cells.map(csvField).join(',');
}

/** Aligned columns; the last column is not padded (no trailing blanks). */
function plain(head: string[], rows: string[][]): string {
  const all = [head, ...rows].map((r) => r.map(oneLine));
  const widths = head.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? '')].length)));
  return all
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i] - [...c].length)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** cli-table3 and the dozen modules under it, loaded only to draw a box:
 * plain output (a pipe, a script) starts that much sooner. */
const loadTable = (): typeof TableType => createRequire(import.meta.url)('cli-table3');

function boxed(head: string[], rows: string[][], opts: TableOptions): string {
  const Table = loadTable();
  const wrap = opts.widths?.some((w) => w !== null);
  const table = new Table({
    head,
    style: { head: [], border: [], compact: !wrap },
    ...(wrap ? { wordWrap: true, colWidths: opts.widths as number[] } : {}),
  });
  for (const r of rows) table.push(r);
  return table.toString();
}

/** The rows drawn in the format; no trailing newline. */
export function renderRows(head: string[], rows: string[][], format: CellFormat, opts: TableOptions = {}): string {
  if (format === 'csv') return [csvHeader(head), ...rows.map(csvLine)].join('\n');
  if (format === 'plain') return plain(head, rows);
  return boxed(head, rows, opts);
}
