import koffi from 'koffi';

/** The few libc calls the harness makes itself; the addon is not worth it
 * for single system calls. */
const libc = koffi.load('libc.so.6');

const semctl_ = libc.func('int semctl(int semid, int semnum, int cmd, ...)');
const shmctl_ = libc.func('int shmctl(int shmid, int cmd, void *buf)');
const msgctl_ = libc.func('int msgctl(int msqid, int cmd, void *buf)');
const tcgetpgrp_ = libc.func('int tcgetpgrp(int fd)');
const getpgrp_ = libc.func('int getpgrp()');

export const IPC_RMID = 0;

/** Removes a SysV IPC object (IPC_RMID); returns 0 or the errno. */
export function ipcRemove(type: 'sem' | 'shm' | 'msg', id: number): number {
  const r = type === 'sem' ? semctl_(id, 0, IPC_RMID) : type === 'shm' ? shmctl_(id, IPC_RMID, null) : msgctl_(id, IPC_RMID, null);
  return r === 0 ? 0 : koffi.errno();
}

/** True when this process is in the foreground process group of the
 * terminal on stdin: then the terminal's SIGINT reached everyone already. */
export function inTerminalForeground(): boolean {
  const fg = tcgetpgrp_(0);
  return fg >= 0 && fg === getpgrp_();
}
