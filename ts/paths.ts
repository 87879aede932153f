import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root: the folder holding package.json, from src or dist. */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('appshot: cannot find the package root');
    dir = up;
  }
  return dir;
}

export const ROOT = findRoot();
export const BUILD_DIR = resolve(ROOT, 'build', 'Release');
export const SHIM_PATH = join(BUILD_DIR, 'libappshot.so');
export const SUPERVISOR_PATH = join(BUILD_DIR, 'appshot-supervisor');
export const POOL_PATH = join(BUILD_DIR, 'appshot-pool');
/** The whole-process dumper and restorer (native/checkpoint). */
export const CHECKPOINT_PATH = join(BUILD_DIR, 'appshot-checkpoint');
/** A restore's semaphore sets, made in C (native/snapshot/semsets.c). */
export const SEMSETS_PATH = join(BUILD_DIR, 'appshot-semsets');
/** A snapshot's guard, which starts SNAPGUARD_PATH only if needed (native/snapshot/stopguard.c). */
export const STOPGUARD_PATH = join(BUILD_DIR, 'appshot-stopguard');
export const ADDON_PATH = join(BUILD_DIR, 'appshot.node');
/** The appshot command's Node entry (it runs the bundle, dist/appshot.cjs). */
export const CLI_PATH = join(ROOT, 'bin', 'appshot.cjs');
/** The command npm puts on PATH: a shell script that starts CLI_PATH's Node
 * without parsing NODE_EXTRA_CA_CERTS (see there). */
export const COMMAND_PATH = join(ROOT, 'bin', 'appshot');
/** What resumes the application of a snapshot whose snapshotter died (ts/snapguard.ts, built). */
export const SNAPGUARD_PATH = join(ROOT, 'dist', 'ts', 'snapguard.js');

export function builtProgram(name: string): string {
  return join(BUILD_DIR, name);
}
