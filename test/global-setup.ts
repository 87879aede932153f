import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SHIM_PATH } from '../ts/paths.js';
import { ipcObjects, killAll, privateNamespaces, processesOf, removeObjects, sweepHomes } from './sweep.js';

/** Ends whatever tests left running and lets appshot gc remove what they
 * held, so the kernel holds nothing the suite made. Each test file sweeps
 * its own homes when it ends (test/setup-each.ts); this finds what a file
 * that never got there (a worker that died) left. */
async function sweep(root: string): Promise<void> {
  if (!existsSync(root)) return;
  killAll(processesOf([root]));
  await sweepHomes(readdirSync(root).map((name) => join(root, name)));
  rmSync(root, { recursive: true, force: true });
}

let before = new Set<string>();
let root = '';

export function setup(): void {
  if (!existsSync(SHIM_PATH)) throw new Error(`${SHIM_PATH} is missing: run 'npm install' to build the native code`);
  // Set before the test workers start, which inherit it.
  // Its real path: the one applications' processes carry in APPSHOT_HOME.
  root = process.env.APPSHOT_TEST_ROOT = realpathSync(mkdtempSync(join(tmpdir(), 'appshot-tests-')));
  pythonWithoutWrapper(root);
  certificatesAside();
  before = ipcObjects();
}

/** As bin/appshot, the command users run, does for the appshot command's Node: the certificates NODE_EXTRA_CA_CERTS
 * names are parsed by every Node that starts with it set (60 ms here, of each of the suite's hundreds of commands),
 * and bin/appshot.cjs puts the variable back for the programs it starts. */
function certificatesAside(): void {
  if (process.env.NODE_EXTRA_CA_CERTS === undefined) return;
  process.env.APPSHOT_NODE_EXTRA_CA_CERTS = process.env.NODE_EXTRA_CA_CERTS;
  delete process.env.NODE_EXTRA_CA_CERTS;
}

/** Where python3 on PATH is a version manager's wrapper script (pyenv's shim: a shell and a few programs more on
 * every start, 0.7 s of CPU here against 0.1 s, and under the shim in most tests), the tests reach the interpreter
 * it runs straight: a link to it first on PATH, for the workers and every program they start. */
function pythonWithoutWrapper(root: string): void {
  let found = '';
  for (const dir of (process.env.PATH ?? '').split(':')) if (!found && dir && existsSync(join(dir, 'python3'))) found = join(dir, 'python3');
  if (!found || readFileSync(found).subarray(0, 4).toString('latin1') === '\x7fELF') return;
  const real = execFileSync(found, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
  if (!real || real === found) return;
  const bin = join(root, 'bin');
  mkdirSync(bin);
  symlinkSync(real, join(bin, 'python3'));
  process.env.PATH = `${bin}:${process.env.PATH}`;
}

/**
 * After the sweep, an object that was not there before is one the suite
 * leaked. In the run's own IPC namespace it can only be the suite's: it is
 * removed, and the run fails. On a shared host it may be another
 * program's, made while the suite ran: it is named, never touched.
 * (With namespaces of their own, test files check their own: setup-each.ts.)
 */
export async function teardown(): Promise<void> {
  await sweep(root);
  const appeared = [...ipcObjects()].filter((o) => !before.has(o));
  if (!appeared.length) return;
  if (!privateNamespaces()) {
    process.stderr.write(`appshot tests: SysV IPC objects appeared on this shared host during the run (the suite's leaks or other programs'; left alone): ${appeared.join(', ')}\n`);
    return;
  }
  removeObjects(appeared);
  throw new Error(`the test suite leaked SysV IPC objects: ${appeared.join(', ')} (removed now)`);
}
