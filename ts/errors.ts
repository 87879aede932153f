/** Exit codes of the appshot command; README.md lists them for users. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  conflict: 3,
  home: 4,
  inconsistent: 5,
  shimSetup: 125,
  notExecutable: 126,
  notFound: 127,
} as const;

/** An error meant for the user: the message names the thing, the cause and
 * what to do; the code is the exit status. */
export class AppshotError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
    this.name = 'AppshotError';
  }
}

export function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e && e.code) return `${e.code} (${e.message.replace(/^[A-Z]+: /, '').replace(/,.*$/, '')})`;
  return String(err);
}
