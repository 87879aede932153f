import { readFileSync, readdirSync } from 'node:fs';
import { addon } from './addon.js';
import * as S from '../tables/schema.js';

/** The three SysV IPC families, as resource types. */
export const IPC_TYPES = ['sem', 'shm', 'msg'] as const;
export type IpcType = (typeof IPC_TYPES)[number];

export const IPC_NOUN: Record<IpcType, string> = {
  sem: 'semaphore set',
  shm: 'shared memory segment',
  msg: 'message queue',
};

/** ipcrm's option for each family, for the messages that tell a person what to run. */
export const IPCRM_OPTION: Record<IpcType, string> = { sem: '-s', shm: '-m', msg: '-q' };

export function isIpcType(type: S.ResourceType): type is IpcType {
  return (IPC_TYPES as readonly string[]).includes(type);
}

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

/** The processes that have shared memory segment shmid attached. */
export function shmAttachers(shmid: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => addon().shmAttachments(pid)?.some((a) => a.shmid === shmid));
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
