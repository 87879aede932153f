/**
 * The three SysV IPC families as resource types, and the words a person
 * reads for them. The bottom of ts/sysv/: it imports nothing, so the addon's
 * binding (ts/addon.ts) and every kind can name a family without a cycle.
 */

export const IPC_TYPES = ['sem', 'shm', 'msg'] as const;
export type IpcType = (typeof IPC_TYPES)[number];

export const IPC_NOUN: Record<IpcType, string> = {
  sem: 'semaphore set',
  shm: 'shared memory segment',
  msg: 'message queue',
};

/** ipcrm's option for each family, for the messages that tell a person what to run. */
export const IPCRM_OPTION: Record<IpcType, string> = { sem: '-s', shm: '-m', msg: '-q' };

/** Whether a resource type (or a snapshot section's kind) is one of the three families. */
export function isIpcType(type: string): type is IpcType {
  return (IPC_TYPES as readonly string[]).includes(type);
}

/** A key (or any u32) as ipcs shows keys: 0x and eight hex digits. */
export const keyText = (n: number): string => '0x' + (n >>> 0).toString(16).padStart(8, '0');
