/**
 * The output formats, apart from the table drawing (views/table.ts) so a
 * command's options know them without loading cli-table3.
 */

export const FORMATS = ['plain', 'table', 'json', 'csv'] as const;
export type Format = (typeof FORMATS)[number];
/** The formats drawn from rows of text (json is the data, not the cells). */
export type CellFormat = Exclude<Format, 'json'>;

/** A boxed table on a terminal, plain columns everywhere else (a pipe, a file). */
export function textFormat(): 'plain' | 'table' {
  return process.stdout.isTTY ? 'table' : 'plain';
}

/** The format a command's flags choose: --json and --csv are the old
 * spellings of --format json and --format csv (commander refuses them
 * together); nothing chosen, the text format for where stdout goes. */
export function formatOf(o: { format?: Format; json?: boolean; csv?: boolean }): Format {
  if (o.json) return 'json';
  if (o.csv) return 'csv';
  return o.format ?? textFormat();
}
