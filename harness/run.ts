import { spawn } from 'node:child_process';
import { endApp } from '../ts/cleanup.js';
import { EXIT } from '../ts/errors.js';
import { ensureHome } from '../ts/home.js';
import { inTerminalForeground, waitAnyExit } from '../ts/libc.js';
import { CHECKPOINT_PATH, SHIM_PATH, SUPERVISOR_PATH } from '../ts/paths.js';
import { type Redirect, redirectPath } from '../ts/redirect.js';
import { forgetApp, registerApp } from '../ts/registry.js';
import { processesLeft } from '../ts/supervision.js';
import { type Balance, type Lifeline, type Publication, joinPool, publishSpec } from '../ts/pool.js';
import { type TableDb, healLock, openTableDb } from '../ts/tabledb.js';
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
  /** false: the shim installs no system call filter (--no-trap). */
  trap?: boolean;
}

/** How a restored application starts again: the saved environment and
 * directory, and its first process's vpid. */
export interface StartAs {
  env?: Record<string, string> | null;
  cwd?: string | null;
  firstVpid?: number | null;
  /** A whole image (absolute path) whose processes the supervisor has
   * appshot-checkpoint make again, instead of starting a command; every
   * section of it checked already (ts/restore.ts restore reads the process
   * sections whole), so the restorer is told not to read them again. */
  image?: string;
  /** Map the image's private pages copy-on-write instead of copying them
   * (appshot restore --map-pages). */
  mapPages?: boolean;
  /** A template's warm clone: the image's files at 0-2 become the clone
   * command's own, and the paths its rules redirect (kernel path in the
   * image -> the clone's) are opened at the clone's place. */
  clone?: { moves: Redirect[] };
  /** Called once the image's processes run again (the supervisor's "root"). */
  onRestored?: (root: number) => void;
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * `appshot run`: register the application, start CMD under the supervisor
 * with the shim preloaded, forward signals, and when the application's last
 * process is gone clean up and exit with CMD's status.
 */
export async function run(command: string[], given: RunOptions): Promise<number> {
  const opts = { ...given, home: ensureHome(given.home) };
  const t = openTableDb(opts.home, { create: true });
  const reg = registerApp(t, { aid: opts.aid, command, noIdentity: opts.noIdentity, publish: opts.publish, redirects: opts.redirects });
  if (reg.reclaimed) for (const line of describeCleanup(reg.reclaimed, 'reclaimed stale application')) process.stderr.write(`appshot: ${line}\n`);
  return runRegistered(t, reg.aid, command, opts);
}

/** Runs CMD as registered application aid (whose tables t holds): joins its
 * pools, supervises it, and cleans up after it. */
export async function runRegistered(t: TableDb, aid: string, command: string[], opts: RunOptions, as: StartAs = {}): Promise<number> {
  try {
    return await superviseApp(t, aid, command, opts, as);
  } finally {
    t.env.close();
  }
}

/** One application of possibly several this harness runs (a template's
 * clones): its pools joined, CMD supervised, its cleanup when CMD ends.
 * onStarted is called once its first process exists. */
export async function superviseApp(t: TableDb, aid: string, command: string[], opts: RunOptions, as: StartAs = {}, onStarted?: () => void): Promise<number> {
  const lifelines: Lifeline[] = [];
  // A whole image's restore: whether the restorer got the processes running.
  let restored = false;
  const given = as.onRestored;
  as = as.image
    ? {
        ...as,
        onRestored: (root) => {
          restored = true;
          given?.(root);
        },
      }
    : as;
  try {
    for (const p of opts.publish) lifelines.push(await joinPool(opts.home, p.public, aid, opts.balance, portHolder(t, p.public), p.host));
    const status = await supervise(command, aid, opts, as, onStarted);
    // Before the tables are read again: a program of the application may
    // have written into LMDB's lock file, on which lmdb would abort.
    healLock(t);
    await outlive(t, aid);
    return status;
  } finally {
    for (const l of lifelines) l.close();
    const report = endApp(t, aid, { keep: opts.keep });
    for (const note of report.notes) process.stderr.write(`appshot: ${note}\n`);
    // A restore that failed part way leaves nothing, its record neither.
    if (as.image && !restored) {
      forgetApp(t, aid);
      process.stderr.write(`appshot: the processes of '${aid}' could not be restored from ${as.image}; everything the restore made was removed\n`);
    }
  }
}

/** The application whose virtual port holds port as its system port, if any. */
export function portHolder(t: TableDb, port: number): string | undefined {
  const rev = t.rev.get(S.revKey(t.node, S.RT.port, S.portId(S.PORT_PROTO.tcp, port)));
  return rev ? S.decodeRevVal(rev).aid : undefined;
}

/** What the signals the harness gets go to: every supervisor it started
 * that still runs, and the processes of an application it waits for
 * without one. */
interface Signallable {
  kill(sig: NodeJS.Signals): unknown;
}
const supervised = new Set<Signallable>();

function forward(sig: (typeof FORWARDED)[number]): void {
  // The terminal sends SIGINT and SIGHUP to the whole foreground group,
  // the application included; forwarding them again would deliver twice.
  if (sig !== 'SIGTERM' && process.stdin.isTTY && inTerminalForeground()) return;
  for (const child of supervised) child.kill(sig);
}
const handlers = FORWARDED.map((sig) => [sig, () => forward(sig)] as const);

function track(child: Signallable): void {
  if (!supervised.size) for (const [sig, h] of handlers) process.on(sig, h);
  supervised.add(child);
}
function untrack(child: Signallable): void {
  supervised.delete(child);
  if (!supervised.size) for (const [sig, h] of handlers) process.off(sig, h);
}

export function supervise(command: string[], aid: string, opts: RunOptions, as: StartAs, onStarted?: () => void): Promise<number> {
  const env: NodeJS.ProcessEnv = {
    ...(as.env ?? process.env),
    ...(as.firstVpid ? { APPSHOT_FIRST_VPID: String(as.firstVpid) } : {}),
    APPSHOT_AID: aid,
    APPSHOT_HOME: opts.home,
    APPSHOT_PORT_RANGE: `${opts.portRange.lo}-${opts.portRange.hi}`,
    // A hint that lets the shim's listen() skip looking up publications.
    APPSHOT_PUBLISH: opts.publish.map(publishSpec).join(','),
  };
  if (!opts.publish.length) delete env.APPSHOT_PUBLISH;
  if (opts.trap === false) env.APPSHOT_TRAP = 'off';
  else delete env.APPSHOT_TRAP;
  // The handlers are in place before the command can run: a signal that
  // came before them would end the harness and leave the command running.
  const early: NodeJS.Signals[] = [];
  const starting: Signallable = { kill: (sig) => early.push(sig) };
  track(starting);
  const child = spawn(SUPERVISOR_PATH, ['--report-fd', String(REPORT_FD), ...supervisorArgs(command, aid, opts, as)], {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
    env,
    ...(as.cwd ? { cwd: as.cwd } : {}),
  });
  track(child);
  untrack(starting);
  for (const sig of early) child.kill(sig);
  if (onStarted) child.once('spawn', onStarted);
  // The command's status, as soon as the supervisor has reaped it.
  let reported: number | undefined;
  let report = '';
  child.stdio[REPORT_FD]?.on('data', (d: Buffer) => {
    report += d.toString('latin1');
    const m = /status (\d+)\n/.exec(report);
    if (m) reported = Number(m[1]);
    const root = /root (\d+)\n/.exec(report);
    if (root && as.onRestored) {
      as.onRestored(Number(root[1]));
      as = { ...as, onRestored: undefined };
    }
  });
  return new Promise((resolve) => {
    child.on('error', (err) => {
      untrack(child);
      process.stderr.write(`appshot: cannot start ${SUPERVISOR_PATH}: ${err.message}; run 'npm install' to build it\n`);
      resolve(EXIT.shimSetup);
    });
    // 'close', not 'exit': the report channel has been read to its end.
    child.on('close', (code, signal) => {
      untrack(child);
      if (code !== null) return resolve(code);
      // The supervisor forwards the signals it can catch: one that ended
      // it came from outside (kill -9). The application may run on.
      const known = reported !== undefined ? `its command had exited with status ${reported}` : `its command's status cannot be known (appshot exits ${EXIT.failure})`;
      process.stderr.write(`appshot: the supervisor of application '${aid}' (pid ${child.pid}) was killed by ${signal}; ${known}\n`);
      resolve(reported ?? EXIT.failure);
    });
  });
}

/** What the supervisor runs: the command under the shim, or (a whole
 * image) the restorer that makes the application's processes again. */
function supervisorArgs(command: string[], aid: string, opts: RunOptions, as: StartAs): string[] {
  if (as.image) {
    const clone = as.clone ? ['--own-stdio', ...as.clone.moves.flatMap((m) => ['--moved', `${m.from}=${m.to}`])] : [];
    return ['--restore', CHECKPOINT_PATH, 'restore', '--image', as.image, '--home', opts.home, '--aid', aid, '--checked', ...(as.mapPages ? ['--map-pages'] : []), ...clone];
  }
  // The supervisor runs outside the shim: a command named by a redirected
  // path is found where the shim would look, under its own argv[0].
  const file = redirectPath(opts.redirects, command[0]);
  const exec = file !== command[0] ? ['--exec', file] : [];
  return [...exec, SHIM_PATH, ...command];
}

/** Where the supervisor reports the command's status (--report-fd). */
const REPORT_FD = 3;

/**
 * Waits until no process of the application is left, before anything of it
 * is cleaned up. The supervisor's end means that normally: as a subreaper it
 * waits for every descendant. But a supervisor that was killed leaves its
 * orphans to init, and a process can join an application from outside
 * (APPSHOT_AID in its environment): their objects must not go under them.
 */
async function outlive(t: TableDb, aid: string): Promise<void> {
  let left = processesLeft(t, aid);
  if (!left.length) return;
  process.stderr.write(
    `appshot: application '${aid}' still has ${left.length} process(es) its command's supervisor does not wait for (${left.join(', ')}); waiting for them to exit before cleaning up\n`,
  );
  const orphans: Signallable = { kill: (sig) => left.forEach((pid) => signal(pid, sig)) };
  track(orphans);
  try {
    while (left.length) {
      await waitAnyExit(left);
      left = processesLeft(t, aid);
    }
  } finally {
    untrack(orphans);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone meanwhile */
  }
}
