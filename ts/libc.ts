import { readSync, writeSync } from 'node:fs';
import koffi from 'koffi';

/** The few libc calls the harness makes itself; the addon is not worth it
 * for single system calls. */
const libc = koffi.load('libc.so.6');

const tcgetpgrp_ = libc.func('int tcgetpgrp(int fd)');
const getpgrp_ = libc.func('int getpgrp()');

/** True when this process is in the foreground process group of the
 * terminal on stdin: then the terminal's SIGINT reached everyone already. */
export function inTerminalForeground(): boolean {
  const fg = tcgetpgrp_(0);
  return fg >= 0 && fg === getpgrp_();
}

const pidfdOpen_ = libc.func('int pidfd_open(int pid, unsigned int flags)');
const close_ = libc.func('int close(int fd)');
const poll_ = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');
const eventfd_ = libc.func('int eventfd(unsigned int initval, int flags)');
const POLLIN = 0x0001;
const POLLFD_SIZE = 8; // struct pollfd: int fd; short events; short revents
const ESRCH = 3;
const MAX_WATCHED = 256;
const EFD_CLOEXEC_NONBLOCK = 0o2004000;

/**
 * One poll(2) over every pidfd the harness waits on, on one of koffi's
 * worker threads (few: one blocked call each must not starve the others),
 * so the event loop (signal forwarding, pool lifelines) runs on meanwhile.
 * An eventfd wakes it when the set changes.
 */
const exitWaiters = new Map<number, () => void>();
let wakeFd = -1;
let polling = false;

function pollExits(): void {
  if (polling || !exitWaiters.size) return;
  polling = true;
  const fds = [wakeFd, ...exitWaiters.keys()];
  const set = Buffer.alloc(POLLFD_SIZE * fds.length);
  fds.forEach((fd, i) => {
    set.writeInt32LE(fd, i * POLLFD_SIZE);
    set.writeInt16LE(POLLIN, i * POLLFD_SIZE + 4);
  });
  poll_.async(set, fds.length, -1, () => {
    polling = false;
    try {
      readSync(wakeFd, Buffer.alloc(8)); // clears the wake-up, if there was one
    } catch {
      /* EAGAIN: there was none */
    }
    fds.forEach((fd, i) => {
      if (i > 0 && set.readInt16LE(i * POLLFD_SIZE + 6) !== 0) exitWaiters.get(fd)?.();
    });
    pollExits();
  });
}

/**
 * Resolves once any of pids has exited (at once if one is gone already).
 * A pidfd becomes readable when its process exits, whoever its parent is:
 * the harness can wait for processes that are not its children.
 */
export function waitAnyExit(pids: number[]): Promise<void> {
  if (wakeFd < 0) wakeFd = eventfd_(0, EFD_CLOEXEC_NONBLOCK);
  return new Promise((resolve) => {
    const fds: number[] = [];
    const done = () => {
      for (const f of fds) {
        exitWaiters.delete(f);
        close_(f);
      }
      resolve();
    };
    // Watching some is enough: the caller looks again when one has exited.
    for (const pid of pids.slice(0, MAX_WATCHED)) {
      const fd = pidfdOpen_(pid, 0);
      if (fd >= 0) {
        fds.push(fd);
        continue;
      }
      const err = koffi.errno();
      for (const f of fds) close_(f);
      if (err === ESRCH) resolve(); // gone already
      else setTimeout(resolve, 1000); // no descriptor to spare (EMFILE): look again in a while
      return;
    }
    for (const f of fds) exitWaiters.set(f, done);
    if (polling) writeSync(wakeFd, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
    else pollExits();
  });
}

const pipe2_ = libc.func('int pipe2(_Out_ int *fds, int flags)');
const O_CLOEXEC = 0o2000000;

/** A pipe whose two ends close on exec: [read end, write end]. */
export function closeOnExecPipe(): [number, number] {
  const fds = [0, 0];
  if (pipe2_(fds, O_CLOEXEC) !== 0) throw new Error(`pipe2: errno ${koffi.errno()}`);
  return [fds[0], fds[1]];
}

const syscall_ = libc.func('long syscall(long number, ...)');
const prctl_ = libc.func('int prctl(int option, ...)');

/** The number of seccomp(2) on this machine's architecture; undefined
 * where appshot does not know it. */
const SYS_SECCOMP: Partial<Record<string, number>> = { x64: 317, arm64: 277, riscv64: 277, ia32: 354, arm: 383 };
const SECCOMP_GET_ACTION_AVAIL = 2;

/**
 * Whether the kernel knows the seccomp filter return action `action`
 * (seccomp(SECCOMP_GET_ACTION_AVAIL)): 0 when it does, else the errno
 * (EOPNOTSUPP: an action it does not know; EINVAL or ENOSYS: no seccomp
 * filters at all).
 */
export function seccompActionAvailable(action: number): number {
  const nr = SYS_SECCOMP[process.arch];
  if (nr === undefined) return 38; // ENOSYS: not known here
  const value = Buffer.alloc(4);
  value.writeUInt32LE(action >>> 0);
  return syscall_(nr, 'unsigned int', SECCOMP_GET_ACTION_AVAIL, 'unsigned int', 0, 'void *', value) === 0 ? 0 : koffi.errno();
}

const PR_SET_MM = 35;
const PR_SET_MM_MAP_SIZE = 15;

/**
 * prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size): the size of struct
 * prctl_mm_map the kernel takes in PR_SET_MM_MAP, or the errno as a
 * negative number (EINVAL: a kernel built without checkpoint/restore).
 * Only asks: nothing of this process changes.
 */
export function prctlMmMapSize(): number {
  const size = Buffer.alloc(4);
  const r = prctl_(PR_SET_MM, 'unsigned long', PR_SET_MM_MAP_SIZE, 'void *', size, 'unsigned long', 0, 'unsigned long', 0);
  return r === 0 ? size.readUInt32LE(0) : -koffi.errno();
}

const sysconf_ = libc.func('long sysconf(int name)');
const _SC_PAGESIZE = 30;

/** The size of a memory page, in bytes. */
export function pageSize(): number {
  return Number(sysconf_(_SC_PAGESIZE));
}

const pidfdSendSignal_ = libc.func('int pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags)');

/**
 * Sends sig to pid only while it is still the process whose start time is
 * ticks (checkTicks reads it): a pidfd pins the process, so a PID the kernel
 * gives to a new process after the check is never signalled. False when
 * that process is gone.
 */
export function signalPinned(pid: number, sig: number, ticks: number, checkTicks: (pid: number) => number | undefined): boolean {
  const fd = pidfdOpen_(pid, 0);
  if (fd < 0) return false;
  try {
    if (checkTicks(pid) !== ticks) return false;
    return pidfdSendSignal_(fd, sig, null, 0) === 0;
  } finally {
    close_(fd);
  }
}
