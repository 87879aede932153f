import { readFileSync } from 'node:fs';

/** The kernel's semaphore sets as id -> key, from /proc/sysvipc/sem. */
export function semKeysById(): Map<number, number> {
  const sets = new Map<number, number>();
  for (const line of readFileSync('/proc/sysvipc/sem', 'latin1').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 2 && f[0] !== '') sets.set(Number(f[1]), Number(f[0]) >>> 0);
  }
  return sets;
}
