import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import * as S from '../tables/schema.js';

/**
 * The one reader of /proc for processes and their sockets: what appshot
 * learns about a process (its state, command line, environment, program,
 * directory, descriptors) and which sockets are bound, read and parsed here
 * only. SysV objects are ts/sysv/kernel.ts's (it reads /proc/sysvipc).
 */

/** The PIDs /proc lists now. */
export function processIds(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

export interface ProcStat {
  /** R, S, D, Z, ... as ps shows it. */
  state: string;
  ppid: number;
  /** Clock ticks since boot: a live process told from a reused PID. */
  startTicks: number;
}

/** Fields 3, 4 and 22 of /proc/PID/stat. The command name before them may
 * hold spaces and parentheses, so fields count from its last ')'. */
export function procStat(pid: number): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], ppid: Number(fields[1]), startTicks: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

/** The start time of a process that is alive (not a zombie). */
export function startTicks(pid: number): number | undefined {
  const stat = procStat(pid);
  return stat && stat.state !== 'Z' && stat.state !== 'X' ? stat.startTicks : undefined;
}

/** The arguments of a process joined with spaces, as ps shows them; '' if
 * unreadable (gone) or empty (a zombie). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

export function processAlive(pid: number, ticks: number): boolean {
  return pid > 0 && startTicks(pid) === ticks;
}

/** Whether pid names a process (a thread group's leader) and not one of its
 * other threads: /proc/TID answers for any thread, though readdir lists
 * processes only, and a thread has a pid row once it calls gettid (Python
 * asks for every thread's native id). False if it is gone. */
export function isProcess(pid: number): boolean {
  try {
    return /^Tgid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] === String(pid);
  } catch {
    return false;
  }
}

/** A process's environment as it started, its NAME=value strings in order;
 * undefined if unreadable (gone, or another user's). */
export function environ(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
  } catch {
    return undefined;
  }
}

/** The program a process runs; undefined if unreadable (gone, or another user's). */
export function exePath(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** A process's working directory; throws (with the errno) if unreadable. */
export function workingDirectory(pid: number): string {
  return readlinkSync(`/proc/${pid}/cwd`);
}

/** What a process's open descriptors name ('socket:[inode]', a path, ...),
 * read one by one as the caller walks; none if the process is gone or not ours. */
export function* fdLinks(pid: number | 'self'): Generator<[fd: number, target: string]> {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return;
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    yield [Number(fd), target];
  }
}

/** Which process holds each socket inode. */
export function socketHolders(): Map<number, number> {
  const holders = new Map<number, number>();
  for (const pid of processIds()) {
    for (const [, target] of fdLinks(pid)) {
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) holders.set(Number(m[1]), pid);
    }
  }
  return holders;
}

/** Bound sockets by port, from /proc/net: inode, and whether TCP or UDP
 * (a TCP socket counts once it listens). */
export function boundPorts(): Map<number, { ino: number; proto: string }[]> {
  const bound = new Map<number, { ino: number; proto: string }[]>();
  for (const [file, proto] of [['tcp', 'tcp'], ['tcp6', 'tcp'], ['udp', 'udp'], ['udp6', 'udp']]) {
    let text = '';
    try {
      text = readFileSync(`/proc/net/${file}`, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const port = parseInt(f[1].split(':')[1], 16);
      const listening = proto === 'udp' || f[3] === '0A';
      const ino = Number(f[9]);
      if (listening && ino) bound.set(port, [...(bound.get(port) ?? []), { ino, proto }]);
    }
  }
  return bound;
}

/** A directory's identity, "dev:ino": one home however its path is spelled. */
function dirIdentity(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** The tables processesOf reads: the home they are in, and the record of
 * each process the shim or a restore bound to a vpid (a TableDb is one;
 * named by shape so that this module stays below the tables'). */
export interface ProcessTables {
  home: string;
  procs: { get(key: Buffer): Uint8Array | undefined };
}

/** Which application the tables bind a live process to (its procs row,
 * whose start time must be the process's: a row of a dead process whose
 * number was reused says nothing); undefined if none. */
function recordedAid(t: ProcessTables, pid: number, ticks: number): string | undefined {
  const v = t.procs.get(S.procKey(pid));
  if (!v) return undefined;
  const rec = S.decodeProcVal(v);
  return rec.startTicks === ticks ? rec.aid : undefined;
}

/**
 * The application's processes: those whose environment names it under
 * this home (what is left of an application whose harness is gone), and
 * those the tables bind to it. A restored process's /proc environment
 * still names the application it was snapshotted from: the tables' word
 * wins, so a process restored under another AID is that one's, never the
 * original's. APPSHOT_HOME is compared with the home by the directory it
 * names, not by its spelling (a link, a trailing slash, '..').
 */
export function processesOf(aid: string, t: ProcessTables): number[] {
  const home = t.home;
  const wantAid = `APPSHOT_AID=${aid}`;
  const want = dirIdentity(home);
  const identities = new Map<string, string | undefined>();
  const found: number[] = [];
  for (const pid of processIds()) {
    const vars = environ(pid);
    if (!vars) continue;
    const named = vars.includes(wantAid);
    // Only processes of appshot's have a procs row: read for those alone.
    if (!named && !vars.some((v) => v.startsWith('APPSHOT_AID='))) continue;
    const ticks = startTicks(pid);
    if (ticks === undefined) continue;
    const recorded = recordedAid(t, pid, ticks);
    if (recorded !== undefined) {
      if (recorded === aid) found.push(pid);
      continue;
    }
    if (!named) continue;
    const given = vars.find((v) => v.startsWith('APPSHOT_HOME='))?.slice('APPSHOT_HOME='.length);
    if (given === undefined) continue;
    if (!identities.has(given)) identities.set(given, given === home ? want : dirIdentity(given));
    if (identities.get(given) === want && want !== undefined) found.push(pid);
  }
  return found;
}

/** The fields of /proc/PID/status (Name, CapEff, Seccomp, ...) as read;
 * undefined if the process is gone or not ours. */
export function statusFields(pid: number | 'self'): Map<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}
