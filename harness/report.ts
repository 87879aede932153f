import type { CleanupReport } from '../ts/cleanup.js';
import { IPC_NOUN, type IpcType } from '../ts/sysv/ipctype.js';

/** One line per application cleaned up, then its notes. */
export function describeCleanup(r: CleanupReport, what: string): string[] {
  const removed = Object.entries(r.removed).map(([type, n]) => `${n} ${IPC_NOUN[type as IpcType] ?? type}${n === 1 ? '' : 's'}`);
  const head = r.aid
    ? `${what} '${r.aid}': removed ${removed.length ? removed.join(', ') : 'no kernel objects'} and ${r.rows} table row${r.rows === 1 ? '' : 's'}`
    : r.notes[0];
  return r.aid ? [head, ...r.notes] : [head];
}
