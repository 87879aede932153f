import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_PATH, SHIM_PATH } from '../ts/paths.js';
import { TEST_ROOT } from './helpers.js';

export function setup(): void {
  if (!existsSync(SHIM_PATH)) throw new Error(`${SHIM_PATH} is missing: run 'npm install' to build the native code`);
  rmSync(TEST_ROOT, { recursive: true, force: true });
}

/** Whatever a failed test left in the kernel goes, through appshot gc. */
export function teardown(): void {
  if (!existsSync(TEST_ROOT)) return;
  for (const name of readdirSync(TEST_ROOT)) {
    const home = join(TEST_ROOT, name);
    if (existsSync(join(home, 'tables.mdb')))
      spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
  }
  rmSync(TEST_ROOT, { recursive: true, force: true });
}
