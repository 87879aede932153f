import { spawn } from 'node:child_process';
import { closeSync, constants } from 'node:fs';
import { type Socket, createConnection } from 'node:net';
import { join } from 'node:path';
import { AppshotError, EXIT } from './errors.js';
import { addon } from './addon.js';
import { checkHomeFile, homeSubdir, openHomeFile } from './home.js';

const LOCK_EX = 2;
import { POOL_PATH } from './paths.js';

/**
 * Published ports (native/core/pool.h): one daemon per public port holds
 * the system listener and hands each connection to one instance of the
 * applications publishing it. The harness of each such application keeps
 * a lifeline to the daemon, which ends when the last one closes.
 */

export type Balance = 'rr' | 'lc';
export const BALANCE_NAMES: Record<Balance, string> = { rr: 'round robin', lc: 'least connections' };

export interface Publication {
  /** The port outside clients reach. */
  public: number;
  /** The application's own (virtual) port behind it. */
  virtual: number;
}

function portNumber(text: string, what: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new AppshotError(`${what} '${text}' is not a port number (1-65535)`, EXIT.usage);
  return n;
}

/** --publish PUBLIC:VIRTUAL, as docker -p reads it; PORT alone is PORT:PORT. */
export function parsePublish(spec: string): Publication {
  const m = /^([^:]+)(?::([^:]+))?$/.exec(spec);
  if (!m) throw new AppshotError(`--publish '${spec}' is not PUBLIC:VIRTUAL (for example 8080:80)`, EXIT.usage);
  const pub = portNumber(m[1], `--publish '${spec}': public port`);
  return { public: pub, virtual: m[2] === undefined ? pub : portNumber(m[2], `--publish '${spec}': virtual port`) };
}

/** --port-range LO-HI: the system ports remapped virtual ports get. */
export function parsePortRange(spec: string): { lo: number; hi: number } {
  const m = /^(\d+)-(\d+)$/.exec(spec);
  const lo = m ? portNumber(m[1], '--port-range low end') : NaN;
  const hi = m ? portNumber(m[2], '--port-range high end') : NaN;
  if (!m || lo > hi) throw new AppshotError(`--port-range '${spec}' is not LO-HI with LO <= HI (for example 20000-29999)`, EXIT.usage);
  return { lo, hi };
}

export function poolFile(home: string, pub: number, ext: 'sock' | 'ctl' | 'lock' | 'log'): string {
  return join(home, 'pools', `${pub}.${ext}`);
}

function connectCtl(home: string, pub: number): Promise<Socket | null> {
  return new Promise((resolve, reject) => {
    const s = createConnection(poolFile(home, pub, 'ctl'));
    s.once('connect', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(null);
      else reject(err);
    });
  });
}

function readLine(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i < 0) return;
      s.off('data', onData);
      s.off('end', onEnd);
      resolve(buf.slice(0, i));
    };
    const onEnd = () => reject(new Error('the pool daemon closed the connection'));
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', reject);
  });
}

/** Starts the daemon for pub; the caller holds the pool's lock. */
function startDaemon(home: string, pub: number, balance: Balance, holder: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(POOL_PATH, [home, String(pub), balance], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) {
        child.stdout.destroy();
        child.stderr.destroy();
        child.unref();
        resolve();
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new AppshotError(`cannot start ${POOL_PATH}: ${e.message}; run 'npm install' to build it`, EXIT.shimSetup)));
    child.on('exit', (code) => {
      if (out.includes('ready\n')) return;
      if (code === 3) {
        const who = holder ? `application '${holder}'` : 'a program outside appshot';
        reject(new AppshotError(`cannot publish port ${pub}: it is in use by ${who}; stop it or choose another public port`, EXIT.conflict));
      } else reject(new AppshotError(`the pool daemon for port ${pub} failed: ${err.trim() || `exit ${code}`}`, EXIT.failure));
    });
  });
}

export interface Lifeline {
  close(): void;
}

/**
 * Joins the pool of a public port for application aid, starting its daemon
 * if none runs. holder names the application whose virtual port holds the
 * public port as its system port, if one does, for the error message.
 */
export async function joinPool(home: string, pub: number, aid: string, balance: Balance, holder?: string): Promise<Lifeline> {
  homeSubdir(home, 'pools');
  checkHomeFile(poolFile(home, pub, 'log')); // the daemon opens it, refusing a link, after it said ready
  const lockFd = openHomeFile(poolFile(home, pub, 'lock'), constants.O_RDWR | constants.O_CREAT);
  let s: Socket | null;
  try {
    addon().flock(lockFd, LOCK_EX); // one harness finds or starts the daemon at a time
    s = await connectCtl(home, pub);
    if (!s) {
      await startDaemon(home, pub, balance, holder);
      s = await connectCtl(home, pub);
      if (!s) throw new AppshotError(`the pool daemon for port ${pub} started but does not answer at ${poolFile(home, pub, 'ctl')}`);
    }
  } finally {
    closeSync(lockFd);
  }
  s.write(`publish ${aid} ${balance}\n`);
  const answer = (await readLine(s)).split(' ');
  if (answer[0] !== 'ok') {
    s.destroy();
    throw new AppshotError(`the pool daemon for port ${pub} refused application '${aid}': ${answer.join(' ')}`);
  }
  if (answer[1] !== balance) {
    s.destroy();
    throw new AppshotError(
      `port ${pub} is already published with ${BALANCE_NAMES[answer[1] as Balance] ?? answer[1]} balancing, not ${BALANCE_NAMES[balance]}; use --balance ${answer[1]} to join that pool`,
      EXIT.conflict,
    );
  }
  s.unref();
  return { close: () => s.destroy() };
}

export interface PoolInstance {
  aid: string;
  vport: number;
  sport: number;
  spid: number;
  unacked: number;
  active: number;
  handed: number;
}
export interface PoolStatus {
  public: number;
  policy: Balance;
  pid: number;
  held: number;
  lifelines: string[];
  instances: PoolInstance[];
}

/** What the daemon of a public port says about its pool, or null when no
 * daemon runs for it. */
export async function poolStatus(home: string, pub: number): Promise<PoolStatus | null> {
  const s = await connectCtl(home, pub).catch(() => null);
  if (!s) return null;
  try {
    s.write('status\n');
    return JSON.parse(await readLine(s)) as PoolStatus;
  } catch {
    return null;
  } finally {
    s.destroy();
  }
}
