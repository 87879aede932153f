import { readFileSync, readdirSync } from 'node:fs';
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

/** The processes that have shared memory segment shmid attached: in their
 * maps a SysV segment's inode is its ID. */
export function shmAttachers(shmid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let maps: string;
    try {
      maps = readFileSync(`/proc/${name}/maps`, 'latin1');
    } catch {
      continue; // gone, or not ours to read
    }
    const attached = maps.split('\n').some((l) => {
      const f = l.split(/\s+/);
      return f.length >= 6 && f[5].startsWith('/SYSV') && Number(f[4]) === shmid;
    });
    if (attached) pids.push(Number(name));
  }
  return pids;
}

/** How the given processes have SysV segments attached, by segment ID:
 * the maps line of an attachment says rw-s or r--s. */
export function shmAttachModes(pids: number[]): Map<number, { rw: number; ro: number }> {
  const modes = new Map<number, { rw: number; ro: number }>();
  for (const pid of pids) {
    let maps: string;
    try {
      maps = readFileSync(`/proc/${pid}/maps`, 'latin1');
    } catch {
      continue;
    }
    for (const l of maps.split('\n')) {
      const f = l.split(/\s+/);
      if (f.length < 6 || !f[5].startsWith('/SYSV')) continue;
      const id = Number(f[4]);
      const m = modes.get(id) ?? { rw: 0, ro: 0 };
      if (f[1][1] === 'w') m.rw++;
      else m.ro++;
      modes.set(id, m);
    }
  }
  return modes;
}
