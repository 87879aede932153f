import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_PATH, SHIM_PATH } from '../ts/paths.js';
import { TEST_ROOT } from './helpers.js';

/** Processes started under a test home that are still running. */
function testProcesses(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').includes(`APPSHOT_HOME=${TEST_ROOT}/`)) pids.push(Number(name));
    } catch {
      /* gone, or not ours */
    }
  }
  return pids;
}

/** Ends whatever tests left running and lets appshot gc remove what they
 * held, so the kernel holds nothing the suite made. */
function sweep(): void {
  if (!existsSync(TEST_ROOT)) return;
  for (const pid of testProcesses()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const name of readdirSync(TEST_ROOT)) {
    const home = join(TEST_ROOT, name);
    if (existsSync(join(home, 'tables.mdb')))
      spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
  }
  rmSync(TEST_ROOT, { recursive: true, force: true });
}

function semIds(): Set<number> {
  return new Set(
    readFileSync('/proc/sysvipc/sem', 'latin1')
      .split('\n')
      .slice(1)
      .filter((l) => l.trim())
      .map((l) => Number(l.trim().split(/\s+/)[1])),
  );
}

let before = new Set<number>();

export function setup(): void {
  if (!existsSync(SHIM_PATH)) throw new Error(`${SHIM_PATH} is missing: run 'npm install' to build the native code`);
  sweep();
  before = semIds();
}

/** After the sweep, a set the suite made and no table knows of is a leak
 * the tests did not catch: it is removed, and the run fails. */
export function teardown(): void {
  sweep();
  const leaked = [...semIds()].filter((id) => !before.has(id));
  if (leaked.length) {
    for (const id of leaked) spawnSync('ipcrm', ['-s', String(id)]);
    throw new Error(`the test suite leaked semaphore sets ${leaked.join(', ')} (removed now)`);
  }
}
