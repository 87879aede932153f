import { readdirSync, readFileSync } from 'node:fs';

/** The start time of a process in clock ticks since boot (field 22 of
 * /proc/PID/stat), which tells a live process from a reused PID. */
export function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

export function processAlive(pid: number, ticks: number): boolean {
  return pid > 0 && startTicks(pid) === ticks;
}

/** Processes whose environment names this application under this home:
 * what is left of an application whose harness is gone. */
export function processesOf(aid: string, home: string): number[] {
  const wantAid = `APPSHOT_AID=${aid}`;
  const wantHome = `APPSHOT_HOME=${home}`;
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let vars: string[];
    try {
      vars = readFileSync(`/proc/${name}/environ`, 'latin1').split('\0');
    } catch {
      continue;
    }
    if (vars.includes(wantAid) && vars.includes(wantHome) && startTicks(Number(name)) !== undefined) found.push(Number(name));
  }
  return found;
}
