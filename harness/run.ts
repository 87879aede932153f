import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { endApp } from '../ts/cleanup.js';
import { EXIT } from '../ts/errors.js';
import { ensureHome } from '../ts/home.js';
import { inTerminalForeground } from '../ts/libc.js';
import { SHIM_PATH, SUPERVISOR_PATH } from '../ts/paths.js';
import { type Redirect, redirectPath } from '../ts/redirect.js';
import { registerApp } from '../ts/registry.js';
import { type Balance, type Lifeline, type Publication, joinPool } from '../ts/pool.js';
import { type Tables, healLock, openTables } from '../ts/tables.js';
import * as S from '../tables/schema.js';
import { describeCleanup } from './report.js';

export interface RunOptions {
  aid?: string;
  keep: boolean;
  noIdentity: boolean;
  home: string;
  publish: Publication[];
  balance: Balance;
  portRange: { lo: number; hi: number };
  /** Path redirections, checked (ts/redirect.ts checkRedirects). */
  redirects: Redirect[];
}

/** How a restored application starts again: the saved environment and
 * directory, and its first process's vpid. */
export interface StartAs {
  env?: Record<string, string> | null;
  cwd?: string | null;
  firstVpid?: number | null;
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * `appshot run`: register the application, start CMD under the supervisor
 * with the shim preloaded, forward signals, and when the application's last
 * process is gone clean up and exit with CMD's status.
 */
export async function run(command: string[], opts: RunOptions): Promise<number> {
  ensureHome(opts.home);
  const t = openTables(opts.home, { create: true });
  const reg = registerApp(t, { aid: opts.aid, command, noIdentity: opts.noIdentity, publish: opts.publish, redirects: opts.redirects });
  if (reg.reclaimed) for (const line of describeCleanup(reg.reclaimed, 'reclaimed stale application')) process.stderr.write(`appshot: ${line}\n`);
  return runRegistered(t, reg.aid, command, opts);
}

/** Runs CMD as registered application aid (whose tables t holds): joins its
 * pools, supervises it, and cleans up after it. */
export async function runRegistered(t: Tables, aid: string, command: string[], opts: RunOptions, as: StartAs = {}): Promise<number> {
  try {
    return await superviseApp(t, aid, command, opts, as);
  } finally {
    t.env.close();
  }
}

/** One application of possibly several this harness runs (a template's
 * clones): its pools joined, CMD supervised, its cleanup when CMD ends.
 * onStarted is called once its first process exists. */
export async function superviseApp(t: Tables, aid: string, command: string[], opts: RunOptions, as: StartAs = {}, onStarted?: () => void): Promise<number> {
  const lifelines: Lifeline[] = [];
  try {
    for (const p of opts.publish) lifelines.push(await joinPool(opts.home, p.public, aid, opts.balance, portHolder(t, p.public)));
    return await supervise(command, aid, opts, as, onStarted);
  } finally {
    for (const l of lifelines) l.close();
    healLock(t);
    const report = endApp(t, aid, { keep: opts.keep });
    for (const note of report.notes) process.stderr.write(`appshot: ${note}\n`);
  }
}

/** The application whose virtual port holds port as its system port, if any. */
function portHolder(t: Tables, port: number): string | undefined {
  const rev = t.rev.get(S.revKey(t.node, S.RT.port, S.portId(S.PORT_PROTO.tcp, port)));
  return rev ? S.decodeRevVal(rev).aid : undefined;
}

/** Every supervisor this harness started and that still runs: the signals
 * the harness gets go to each of them. */
const supervised = new Set<ChildProcess>();

function forward(sig: (typeof FORWARDED)[number]): void {
  // The terminal sends SIGINT and SIGHUP to the whole foreground group,
  // the application included; forwarding them again would deliver twice.
  if (sig !== 'SIGTERM' && process.stdin.isTTY && inTerminalForeground()) return;
  for (const child of supervised) child.kill(sig);
}
const handlers = FORWARDED.map((sig) => [sig, () => forward(sig)] as const);

function track(child: ChildProcess): void {
  if (!supervised.size) for (const [sig, h] of handlers) process.on(sig, h);
  supervised.add(child);
}
function untrack(child: ChildProcess): void {
  supervised.delete(child);
  if (!supervised.size) for (const [sig, h] of handlers) process.off(sig, h);
}

function supervise(command: string[], aid: string, opts: RunOptions, as: StartAs, onStarted?: () => void): Promise<number> {
  const env: NodeJS.ProcessEnv = {
    ...(as.env ?? process.env),
    ...(as.firstVpid ? { APPSHOT_FIRST_VPID: String(as.firstVpid) } : {}),
    APPSHOT_AID: aid,
    APPSHOT_HOME: opts.home,
    APPSHOT_PORT_RANGE: `${opts.portRange.lo}-${opts.portRange.hi}`,
    // A hint that lets the shim's listen() skip looking up publications.
    APPSHOT_PUBLISH: opts.publish.map((p) => `${p.public}:${p.virtual}`).join(','),
  };
  if (!opts.publish.length) delete env.APPSHOT_PUBLISH;
  // The supervisor runs outside the shim: a command named by a redirected
  // path is found where the shim would look, under its own argv[0].
  const file = redirectPath(opts.redirects, command[0]);
  const exec = file !== command[0] ? ['--exec', file] : [];
  const child = spawn(SUPERVISOR_PATH, [...exec, SHIM_PATH, ...command], { stdio: 'inherit', env, ...(as.cwd ? { cwd: as.cwd } : {}) });
  track(child);
  if (onStarted) child.once('spawn', onStarted);
  return new Promise((resolve) => {
    child.on('error', (err) => {
      untrack(child);
      process.stderr.write(`appshot: cannot start ${SUPERVISOR_PATH}: ${err.message}; run 'npm install' to build it\n`);
      resolve(EXIT.shimSetup);
    });
    child.on('exit', (code, signal) => {
      untrack(child);
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}
