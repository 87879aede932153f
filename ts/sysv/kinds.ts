import type { IpcType } from './ipctype.js';
import { MSG } from './msg.js';
import type { Kind } from './object.js';
import { SEM } from './sem.js';
import { SHM } from './shm.js';

/** The three kinds of SysV object, each with its capture, re-creation,
 * removal and check (object.ts's Kind). A snapshot writes them in
 * IPC_TYPES order: sem, shm, msg. */
export const KINDS: Record<IpcType, Kind> = { sem: SEM, shm: SHM, msg: MSG };
