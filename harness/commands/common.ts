import { Option } from '../commander.js';
import { EXIT } from '../../ts/errors.js';
import { FORMATS, type Format } from '../views/format.js';

/** The exit code the command line ends with: a command that has one to
 * give (the application's status, a check's verdict) sets it. */
export const outcome = { exitCode: EXIT.ok as number };

/** commander's way of taking a repeatable option. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** The rate shared memory was copied at, to or from a snapshot, when there
 * was enough of it to time: ", shared memory at X GB/s", or nothing. */
export const copyRate = (bytes: number, seconds: number) =>
  bytes >= 2 ** 20 && seconds > 0 ? `, shared memory at ${(bytes / 1e9 / seconds).toFixed(2)} GB/s` : '';

/** --format on a command that prints a table; --json (and --csv) are its
 * old spellings, refused beside it. */
export function formatOption(formats: readonly Format[] = FORMATS): Option {
  const what: Record<Format, string> = {
    plain: 'plain (aligned columns, the default when stdout is not a terminal)',
    table: 'table (boxed, the default on a terminal)',
    json: 'json (as --json)',
    csv: 'csv (as --csv)',
  };
  return new Option('--format <format>', `how to print: ${formats.map((f) => what[f]).join(', ')}`).choices(formats).conflicts(['json', 'csv']);
}

/** --json on a command that reports a result: the result as JSON on stdout. */
export const JSON_HELP = 'print the result as JSON on stdout, for scripts';
