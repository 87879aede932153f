import { createRequire } from 'node:module';
import { ADDON_PATH } from './paths.js';
import type * as S from '../tables/schema.js';
import type { IpcType } from './sysv/ipctype.js';

/** A message of a SysV queue. */
export interface QueueMessage {
  type: number;
  data: Buffer;
}

/** What ipcStat reports; fields of other families are 0. */
export interface IpcStat {
  /** Unsigned: 0 for IPC_PRIVATE. */
  key: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
  /** Permission bits, plus SHM_DEST (0o1000) and SHM_LOCKED (0o2000) for a segment. */
  mode: number;
  /** shm: bytes. */
  size: number;
  /** shm: attachments. */
  nattch: number;
  /** msg: the queue's byte limit. */
  qbytes: number;
  /** msg: messages queued. */
  qnum: number;
  /** sem: semaphores in the set. */
  nsems: number;
}

export interface IpcPerm {
  uid: number;
  gid: number;
  /** Only mode & 0o777 is used. */
  mode: number;
  /** msg only: the queue's byte limit (raising it past msgmnb needs CAP_SYS_RESOURCE). */
  qbytes?: number;
}

/** The translation core's Node face (native/addon/: addon.cc lists its parts, each registering its own exports). */
export interface Addon {
  fwdKey(aid: string, type: number, vrid: number): Buffer;
  fwdVal(v: S.FwdVal): Buffer;
  fwdValRemoved(b: Buffer): boolean;
  procKey(spid: number): Buffer;
  procVal(startTicks: number, aid: string): Buffer;
  revKey(node: number, type: number, srid: number): Buffer;
  revVal(vrid: number, aid: string): Buffer;
  allocKey(aid: string, type: number): Buffer;
  /** The fixed part of an app value (the command is TypeScript's to add). */
  appVal(v: Omit<S.AppVal, 'command'>): Buffer;
  portId(proto: number, port: number): number;
  pathKey(aid: string, index: number): Buffer;
  pathVal(from: string, to: string): Buffer;
  /** flock(2), retried on EINTR; throws with the errno. */
  flock(fd: number, operation: number): void;
  /** SO_PEERCRED of a connected Unix socket: the process at the other end. */
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  aidValid(aid: string): boolean;
  /** The SysV segments process pid has attached, one entry per attachment (a
   * mapping split by mprotect counts once), as the shim counts them; null if
   * the process is gone or its maps are not readable. */
  shmAttachments(pid: number): { shmid: number; writable: boolean }[] | null;
  /** What is damaged in the tables file at path (native/core/tablecheck.h), or null when it
   * is sound: true walks every page, false the header and root pages only, a number N the
   * pages a reader of the first N rows of each table passes through (TABLECHECK_FIRST).
   * Throws with the errno when the file cannot be read. */
  checkTables(path: string, scope: boolean | number): string | null;
  /** Forward rows skip to n - 1 in key order (raw key and value bytes; those before skip are
   * stepped over) and the entries of fwd and paths, read in C in one transaction
   * (native/addon/firstpage.cc); null when the tables cannot be opened that way. Check the
   * pages first: checkTables(path, n). */
  firstRows(home: string, n: number, skip: number): { rows: [Buffer, Buffer][]; fwdEntries: number; pathEntries: number } | null;
  /** Makes the files of new tables under home with their first blocks allocated
   * (native/core/tablespace.h); throws (code 'ENOSPC' on a full disk) having removed what it made. */
  reserveTables(home: string): void;
  /** LMDB's lock file at path checked (native/core/lockcheck.h), garbage reader slots cleared:
   * null when sound (or, without fd, unused: LMDB rebuilds it at open). Without fd only before
   * this process opens the environment; with fd, through lmdb's own descriptor of it. */
  checkLock(path: string, fd?: number): { repaired: string } | { damaged: string; inUse: boolean } | null;
  /** Removes what reserveTables made. */
  unreserveTables(home: string): void;
  /** Call inside a write transaction; returns what it removed, or null. */
  recoverInflight(home: string, isMapped: (type: number, srid: number) => boolean): string | null;
  /** How many rows and pending records the home's journal of new objects holds (native/core/journal.h); 0: nothing to fold or recover. */
  journalUsed(home: string): number;
  /** recoverInflight for the journal's pending records. Inside a write transaction. */
  recoverJournal(home: string, isMapped: (type: number, srid: number) => boolean): string | null;
  /** Calls put with each row of the journal, inside the caller's write transaction (ts/rows.ts foldJournal). */
  foldJournalBegin(home: string, put: (aid: string, type: number, vrid: number, srid: number, creator: number, createdMs: number, vkey: number, skey: number) => void): void;
  /** After that transaction: its rows leave the journal (committed) or stay. */
  foldJournalEnd(home: string, committed: boolean): void;

  /* Snapshot and restore. All IDs are the kernel's; a failed kernel call
   * throws an Error naming the call and the object, with code ('EINVAL'...)
   * and errno (positive). The calls on SysV objects (and shmAttachments,
   * recoverInflight) are the library's through ts/sysv/kernel.ts only. */

  /** CRC-32C of buf, continuing crc (default 0). */
  crc32c(buf: Uint8Array, crc?: number): number;
  /** Writes bytes [offset, offset + len) of segment shmid at fd's position; returns crc continued over them. */
  shmToFd(fd: number, shmid: number, offset: number, len: number, crc?: number): number;
  /** Reads len bytes from fd's position into segment shmid at offset; returns crc continued over
   * them. A file that ends first throws with code 'ENODATA'. */
  fdToShm(fd: number, shmid: number, offset: number, len: number, crc?: number): number;
  /** Every message in queue order, left in the queue. Where the kernel has no MSG_COPY the
   * messages are received and sent back: nobody else may use the queue meanwhile. */
  msgCopyAll(msqid: number): QueueMessage[];
  /** Sends in order without waiting: a full queue throws with code 'EAGAIN'. */
  msgSendAll(msqid: number, messages: QueueMessage[]): void;
  semGetAll(semid: number): number[];
  /** For each set in order: errno (0: read), key, uid, gid, mode, nsems,
   * then its values (none after an errno): a snapshot's sets in one call. */
  semCapture(semids: Int32Array): Uint32Array;
  /** values.length must be the set's nsems. */
  semSetAll(semid: number, values: number[]): void;
  ipcStat(type: IpcType, id: number): IpcStat;
  /** IPC_SET over the object's current IPC_STAT. */
  ipcSetPerm(type: IpcType, id: number, perm: IpcPerm): void;
  /** IPC_RMID. */
  ipcRemove(type: IpcType, id: number): void;
  /**
   * Creates an object (IPC_CREAT | IPC_EXCL | mode & 0o777; key 0 is IPC_PRIVATE; size is nsems
   * for sem, bytes for shm, ignored for msg) and returns its ID. Call inside the write
   * transaction (after recoverInflight): the home's inflight record covers the object until
   * inflightClear, called after the commit that maps it. One object at a time: a second
   * ipcCreate before inflightClear throws. 'EEXIST' when the key is taken.
   */
  ipcCreate(home: string, aid: string, type: IpcType, key: number, size: number, mode: number): number;
  inflightClear(home: string): void;
  /** lseek(fd, offset, SEEK_SET). */
  seek(fd: number, offset: number): void;
  /** Whether a socket of protocol proto (6 TCP, 17 UDP) can bind port on every address now. */
  portFree(proto: number, port: number): boolean;
}

let loaded: Addon | undefined;
export function addon(): Addon {
  loaded ??= createRequire(import.meta.url)(ADDON_PATH) as Addon;
  return loaded;
}
