import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import { CLI_PATH } from '../ts/paths.js';
import { IPCRM_OPTION, IPC_TYPES, type IpcType } from '../ts/sysv/ipctype.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { appRows, fwdRows, openTableDb, prefixRange } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';

// What the suite leaves behind and how it is found: used once per test file
// (test/setup-each.ts) and once at the end of the run (test/global-setup.ts).

/** Whether this run has IPC and network namespaces of its own
 * (scripts/test.sh): then every object in the kernel is the suite's. */
export const privateNamespaces = () => process.env.APPSHOT_TEST_NS === 'private';

const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWNET = 0x40000000;

/**
 * Moves this test file's process into IPC and network namespaces of its own,
 * inside the run's: the file's programs, keys, ports and its before/after
 * looks at the kernel meet no other file's, so files run side by side.
 * Only the calling (main) thread moves; node spawns children and reads
 * /proc/sysvipc synchronously from it, so both see the file's namespace.
 */
export function enterOwnNamespaces(): void {
  const unshare = koffi.load('libc.so.6').func('int unshare(int flags)');
  if (unshare(CLONE_NEWIPC | CLONE_NEWNET) !== 0) throw new Error(`unshare of the test file's IPC and network namespaces failed: errno ${koffi.errno()}`);
  // A new network namespace starts with its loopback down.
  const up = spawnSync('ip', ['link', 'set', 'lo', 'up'], { encoding: 'utf8' });
  if (up.status !== 0) throw new Error(`ip link set lo up in the test file's network namespace failed: ${up.stderr || up.error}`);
}

/** Every SysV IPC object this process can see, as "sem 5", "shm 7", ... */
export function ipcObjects(): Set<string> {
  const all = new Set<string>();
  for (const type of IPC_TYPES) for (const id of kernelObjects(type).keys()) all.add(`${type} ${id}`);
  return all;
}

/** Removes objects ("sem 5", ...) with ipcrm. */
export function removeObjects(objects: string[]): void {
  for (const o of objects) {
    const [type, id] = o.split(' ');
    spawnSync('ipcrm', [IPCRM_OPTION[type as IpcType], id]);
  }
}

/** Running processes (not this one) whose APPSHOT_HOME is one of dirs or
 * under one, or, with ipcNs, that live in that IPC namespace. */
export function processesOf(dirs: string[], ipcNs?: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (ipcNs && readlinkSync(`/proc/${name}/ns/ipc`) === ipcNs) {
        pids.push(Number(name));
        continue;
      }
      const environ = '\0' + readFileSync(`/proc/${name}/environ`, 'latin1');
      if (dirs.some((d) => environ.includes(`\0APPSHOT_HOME=${d}/`) || environ.includes(`\0APPSHOT_HOME=${d}\0`))) pids.push(Number(name));
    } catch {
      /* gone, or not ours */
    }
  }
  return pids;
}

export function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Runs appshot with args under home; resolves when it has ended. */
function appshotIn(home: string, args: string[]): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
    child.on('close', () => resolve());
    child.on('error', () => resolve());
  });
}

/** Whether gc has anything to do in home: an application not ended, a
 * translation row left, a snapshot's stop record or a clone's seeded folder.
 * Most homes of a finished suite hold none, and a gc each took most of the
 * sweep's time. */
function gcHasWork(home: string): boolean {
  if (!existsSync(join(home, S.TABLES_FILE))) return false;
  if (existsSync(join(home, 'stops')) && readdirSync(join(home, 'stops')).length) return true;
  const t = openTableDb(home);
  try {
    for (const { app } of appRows(t)) if (app.state !== S.APP_STATE.ended) return true;
    if (!fwdRows(t).next().done) return true;
    return t.meta.getKeysCount(prefixRange(Buffer.from('seeded/', 'latin1'))) > 0;
  } finally {
    t.env.close();
  }
}

/** What a failed test may have left in one home: its templates (kept
 * until removed), then whatever gc removes. */
async function sweepHome(home: string): Promise<void> {
  if (existsSync(join(home, 'templates')))
    for (const f of readdirSync(join(home, 'templates')).filter((f) => f.endsWith('.json'))) await appshotIn(home, ['template', 'rm', '--force', f.slice(0, -5)]);
  let work = false;
  try {
    work = gcHasWork(home);
  } catch {
    // Tables a test damaged on purpose: gc cannot open them either. What
    // such a home held in the kernel, the leak check after the sweep finds.
  }
  if (work) await appshotIn(home, ['gc', '--kept']);
}

/** Sweeps homes a few at a time: one after another, hundreds of them took
 * minutes. */
export async function sweepHomes(homes: string[]): Promise<void> {
  const left = [...homes];
  const worker = async () => {
    for (let home = left.pop(); home; home = left.pop()) await sweepHome(home);
  };
  await Promise.all(Array.from({ length: 6 }, worker));
}
