import { EXIT } from '../../ts/errors.js';

/** The exit code the command line ends with: a command that has one to
 * give (the application's status, a check's verdict) sets it. */
export const outcome = { exitCode: EXIT.ok as number };

/** commander's way of taking a repeatable option. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
