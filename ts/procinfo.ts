import { readdirSync, readFileSync, statSync } from 'node:fs';

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

/** A directory's identity, "dev:ino": one home however its path is spelled. */
function dirIdentity(path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** Processes whose environment names this application under this home:
 * what is left of an application whose harness is gone. Their
 * APPSHOT_HOME is compared with home by the directory it names, not by its
 * spelling (a link, a trailing slash, '..'). */
export function processesOf(aid: string, home: string): number[] {
  const wantAid = `APPSHOT_AID=${aid}`;
  const want = dirIdentity(home);
  const identities = new Map<string, string | undefined>();
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let vars: string[];
    try {
      vars = readFileSync(`/proc/${name}/environ`, 'latin1').split('\0');
    } catch {
      continue;
    }
    if (!vars.includes(wantAid)) continue;
    const given = vars.find((v) => v.startsWith('APPSHOT_HOME='))?.slice('APPSHOT_HOME='.length);
    if (given === undefined) continue;
    if (!identities.has(given)) identities.set(given, given === home ? want : dirIdentity(given));
    if (identities.get(given) === want && want !== undefined && startTicks(Number(name)) !== undefined) found.push(Number(name));
  }
  return found;
}
