import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH, SHIM_PATH } from '../ts/paths.js';
import { IPCRM_OPTION, IPC_TYPES, type IpcType } from '../ts/sysv/ipctype.js';
import { appRows, fwdRows, openTableDb, prefixRange } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { kernelObjects } from '../ts/sysv/kernel.js';

/** Whether this run has IPC and network namespaces of its own
 * (scripts/test.sh): then every object in the kernel is the suite's. */
const privateNamespaces = () => process.env.APPSHOT_TEST_NS === 'private';

/** Processes started under one of this run's test homes that are still
 * running. Another run's homes are under another root. */
function testProcesses(root: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const environ = '\0' + readFileSync(`/proc/${name}/environ`, 'latin1');
      if (environ.includes(`\0APPSHOT_HOME=${root}/`)) pids.push(Number(name));
    } catch {
      /* gone, or not ours */
    }
  }
  return pids;
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

/** Ends whatever tests left running and lets appshot gc remove what they
 * held, so the kernel holds nothing the suite made. The homes are swept a
 * few at a time: one after another, hundreds of them took minutes. */
async function sweep(root: string): Promise<void> {
  if (!existsSync(root)) return;
  for (const pid of testProcesses(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const homes = readdirSync(root).map((name) => join(root, name));
  const worker = async () => {
    for (let home = homes.pop(); home; home = homes.pop()) await sweepHome(home);
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  rmSync(root, { recursive: true, force: true });
}

/** Every SysV IPC object this process can see, as "sem 5", "shm 7", ... */
function ipcObjects(): Set<string> {
  const all = new Set<string>();
  for (const type of IPC_TYPES) for (const id of kernelObjects(type).keys()) all.add(`${type} ${id}`);
  return all;
}

let before = new Set<string>();
let root = '';

export function setup(): void {
  if (!existsSync(SHIM_PATH)) throw new Error(`${SHIM_PATH} is missing: run 'npm install' to build the native code`);
  // Set before the test workers start, which inherit it.
  // Its real path: the one applications' processes carry in APPSHOT_HOME.
  root = process.env.APPSHOT_TEST_ROOT = realpathSync(mkdtempSync(join(tmpdir(), 'appshot-tests-')));
  before = ipcObjects();
}

/**
 * After the sweep, an object that was not there before is one the suite
 * leaked. In the run's own IPC namespace it can only be the suite's: it is
 * removed, and the run fails. On a shared host it may be another
 * program's, made while the suite ran: it is named, never touched.
 */
export async function teardown(): Promise<void> {
  await sweep(root);
  const appeared = [...ipcObjects()].filter((o) => !before.has(o));
  if (!appeared.length) return;
  if (!privateNamespaces()) {
    process.stderr.write(`appshot tests: SysV IPC objects appeared on this shared host during the run (the suite's leaks or other programs'; left alone): ${appeared.join(', ')}\n`);
    return;
  }
  for (const o of appeared) {
    const [type, id] = o.split(' ');
    spawnSync('ipcrm', [IPCRM_OPTION[type as IpcType], id]);
  }
  throw new Error(`the test suite leaked SysV IPC objects: ${appeared.join(', ')} (removed now)`);
}
