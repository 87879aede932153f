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

/** Why a path could not be used, in words a user acts on. */
export function pathCause(err: unknown): string {
  switch ((err as NodeJS.ErrnoException)?.code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EISDIR':
      return 'it is a directory';
    case 'ENOTDIR':
      return 'a part of the path before its last name is not a directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOTREG':
      return 'it is not a regular file';
    case 'ELOOP':
      return 'too many symbolic links';
    case 'ENOSPC':
      return 'no space left on its filesystem';
    case 'EROFS':
      return 'its filesystem is read-only';
    default:
      return errnoText(err);
  }
}

/**
 * A file the user named (a snapshot, a rules file) that cannot be read:
 * exit 1, the path, the cause and what to do. what: 'snapshot', 'rules file'.
 */
export function unreadable(what: string, path: string, err: unknown, fix: string): AppshotError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const tail = code === 'EACCES' || code === 'EPERM' ? 'run appshot as a user who may read it, or make it readable' : fix;
  return new AppshotError(`cannot read the ${what} ${path}: ${pathCause(err)}; ${tail}`, EXIT.failure);
}

/** An EISDIR-like error for a path that names a directory (or another
 * non-regular file) where a file was wanted; fs calls that do not fail on
 * one (open of a directory for reading) are checked with this. */
export function notAFile(isDirectory: boolean): NodeJS.ErrnoException {
  const e = new Error(isDirectory ? 'illegal operation on a directory' : 'not a regular file') as NodeJS.ErrnoException;
  e.code = isDirectory ? 'EISDIR' : 'ENOTREG';
  return e;
}
