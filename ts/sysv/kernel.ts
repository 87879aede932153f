import { readFileSync } from 'node:fs';
import { type IpcPerm, type IpcStat, type QueueMessage, addon } from '../addon.js';
import { processIds } from '../procinfo.js';
import type { IpcType } from './ipctype.js';

/**
 * The one gateway from Node to the kernel's SysV objects: every call that
 * lists, creates, reads, changes or removes a semaphore set, segment or
 * queue goes through here (to the addon, native/addon/, or /proc/sysvipc,
 * read here only). The kinds (sem.ts, shm.ts, msg.ts) say what to do with
 * an object; this says how the kernel is asked. All IDs are the kernel's.
 */

export interface KernelObject {
  key: number;
  id: number;
  /** Shared memory only: how many attachments it has. */
  nattch: number;
}

/** The columns of nattch in /proc/sysvipc/shm (key, shmid, perms, size, cpid, lpid, nattch). */
const SHM_NATTCH_COLUMN = 6;

/** The kernel's objects of one family as id -> object, from /proc/sysvipc. */
export function kernelObjects(type: IpcType): Map<number, KernelObject> {
  const objects = new Map<number, KernelObject>();
  for (const line of readFileSync(`/proc/sysvipc/${type}`, 'latin1').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 2 || f[0] === '') continue;
    const id = Number(f[1]);
    objects.set(id, { key: Number(f[0]) >>> 0, id, nattch: type === 'shm' ? Number(f[SHM_NATTCH_COLUMN]) : 0 });
  }
  return objects;
}

/** The kernel's objects of each family, read once per pass (a cleanup, a
 * verify) and only for the families it asks about. */
export class Listings {
  private cache = new Map<IpcType, Map<number, KernelObject>>();
  of(type: IpcType): Map<number, KernelObject> {
    let l = this.cache.get(type);
    if (!l) this.cache.set(type, (l = kernelObjects(type)));
    return l;
  }
}

/** The processes that have shared memory segment shmid attached. */
export function shmAttachers(shmid: number): number[] {
  return processIds().filter((pid) => addon().shmAttachments(pid)?.some((a) => a.shmid === shmid));
}

/** How the given processes have SysV segments attached, by segment ID:
 * writable or read-only attachments (the shim's count, proc_shm_each). */
export function shmAttachModes(pids: number[]): Map<number, { rw: number; ro: number }> {
  const modes = new Map<number, { rw: number; ro: number }>();
  for (const pid of pids) {
    for (const a of addon().shmAttachments(pid) ?? []) {
      const m = modes.get(a.shmid) ?? { rw: 0, ro: 0 };
      if (a.writable) m.rw++;
      else m.ro++;
      modes.set(a.shmid, m);
    }
  }
  return modes;
}

/* What the addon does to one object; see ts/addon.ts for each call's contract. */

export const ipcStat = (type: IpcType, id: number): IpcStat => addon().ipcStat(type, id);
export const ipcSetPerm = (type: IpcType, id: number, perm: IpcPerm): void => addon().ipcSetPerm(type, id, perm);

/** Removes an object (IPC_RMID); returns 0 or the errno, for the caller to
 * say what it means (EINVAL, EIDRM: gone already). */
export function ipcRemove(type: IpcType, id: number): number {
  try {
    addon().ipcRemove(type, id);
    return 0;
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).errno;
    if (typeof errno !== 'number') throw err;
    return errno;
  }
}

export const ipcCreate = (home: string, aid: string, type: IpcType, key: number, size: number, mode: number): number => addon().ipcCreate(home, aid, type, key, size, mode);
export const inflightClear = (home: string): void => addon().inflightClear(home);
export const recoverInflight = (home: string, isMapped: (type: number, srid: number) => boolean): string | null => addon().recoverInflight(home, isMapped);
export const journalUsed = (home: string): number => addon().journalUsed(home);
export const recoverJournal = (home: string, isMapped: (type: number, srid: number) => boolean): string | null => addon().recoverJournal(home, isMapped);
export const foldJournalBegin: ReturnType<typeof addon>['foldJournalBegin'] = (home, put) => addon().foldJournalBegin(home, put);
export const foldJournalEnd = (home: string, committed: boolean): void => addon().foldJournalEnd(home, committed);

export const semGetAll = (semid: number): number[] => addon().semGetAll(semid);
export const semCapture = (semids: Int32Array): Uint32Array => addon().semCapture(semids);
export const semSetAll = (semid: number, values: number[]): void => addon().semSetAll(semid, values);
export const msgCopyAll = (msqid: number): QueueMessage[] => addon().msgCopyAll(msqid);
export const msgSendAll = (msqid: number, messages: QueueMessage[]): void => addon().msgSendAll(msqid, messages);
export const shmToFd = (fd: number, shmid: number, offset: number, len: number, crc?: number): number => addon().shmToFd(fd, shmid, offset, len, crc);
export const fdToShm = (fd: number, shmid: number, offset: number, len: number, crc?: number): number => addon().fdToShm(fd, shmid, offset, len, crc);
