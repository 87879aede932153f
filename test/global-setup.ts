import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_PATH, SHIM_PATH } from '../ts/paths.js';
import { IPCRM_OPTION, IPC_TYPES, type IpcType, kernelObjects } from '../ts/sysvipc.js';
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
    const env = { ...process.env, APPSHOT_HOME: home };
    // Templates are kept until removed: a failed test may leave one.
    if (existsSync(join(home, 'templates')))
      for (const f of readdirSync(join(home, 'templates')).filter((f) => f.endsWith('.json')))
        spawnSync(process.execPath, [CLI_PATH, 'template', 'rm', '--force', f.slice(0, -5)], { env, stdio: 'ignore' });
    if (existsSync(join(home, 'tables.mdb'))) spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env, stdio: 'ignore' });
  }
  rmSync(TEST_ROOT, { recursive: true, force: true });
}

/** Every SysV IPC object on the host, as "sem 5", "shm 7", ... */
function ipcObjects(): Set<string> {
  const all = new Set<string>();
  for (const type of IPC_TYPES) for (const id of kernelObjects(type).keys()) all.add(`${type} ${id}`);
  return all;
}

let before = new Set<string>();

export function setup(): void {
  if (!existsSync(SHIM_PATH)) throw new Error(`${SHIM_PATH} is missing: run 'npm install' to build the native code`);
  sweep();
  before = ipcObjects();
}

/** After the sweep, an object the suite made and no table knows of is a
 * leak the tests did not catch: it is removed, and the run fails. */
export function teardown(): void {
  sweep();
  const leaked = [...ipcObjects()].filter((o) => !before.has(o));
  if (leaked.length) {
    for (const o of leaked) {
      const [type, id] = o.split(' ');
      spawnSync('ipcrm', [IPCRM_OPTION[type as IpcType], id]);
    }
    throw new Error(`the test suite leaked SysV IPC objects: ${leaked.join(', ')} (removed now)`);
  }
}
