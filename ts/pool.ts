import { spawn } from 'node:child_process';
import { closeSync, constants } from 'node:fs';
import { type Socket, createConnection, isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { AppshotError, EXIT } from './errors.js';
import { addon } from './addon.js';
import { checkHomeFile, homeSubdir, openHomeFile } from './home.js';
import { POOL_PATH } from './paths.js';

const LOCK_EX = 2;
const LOCK_NB = 4;

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
  /** The address the public port is bound to, when --publish names one;
   * else the address the program binds. */
  host?: string;
}

function portNumber(text: string, what: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new AppshotError(`${what} '${text}' is not a port number (1-65535)`, EXIT.usage);
  return n;
}

const PUBLISH_FORMS = 'PUBLIC:VIRTUAL, IP:PUBLIC:VIRTUAL or [IPv6]:PUBLIC:VIRTUAL (for example 8080:80 or 127.0.0.1:8080:80)';

/**
 * --publish as docker -p reads it: PUBLIC:VIRTUAL, IP:PUBLIC:VIRTUAL,
 * [IPv6]:PUBLIC:VIRTUAL, each with /tcp after it or not; PORT alone is
 * PORT:PORT. Not taken: /udp (only TCP ports are published), port ranges
 * and an empty public port (docker's "pick one").
 */
export function parsePublish(spec: string): Publication {
  let rest = spec;
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const proto = rest.slice(slash + 1);
    if (proto !== 'tcp') throw new AppshotError(`--publish '${spec}': only TCP ports are published, not '${proto}'`, EXIT.usage);
    rest = rest.slice(0, slash);
  }
  let host: string | undefined;
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(rest);
  const parts = rest.split(':');
  if (bracketed) [host, rest] = [bracketed[1], bracketed[2]];
  else if (parts.length === 3) [host, rest] = [parts[0], parts.slice(1).join(':')];
  if (host !== undefined && (bracketed ? isIPv6(host) : isIPv4(host)) === false)
    throw new AppshotError(`--publish '${spec}' is not ${PUBLISH_FORMS}: '${host}' is not an ${bracketed ? 'IPv6' : 'IPv4'} address`, EXIT.usage);
  const m = /^([^:]+)(?::([^:]+))?$/.exec(rest);
  if (!m) throw new AppshotError(`--publish '${spec}' is not ${PUBLISH_FORMS}`, EXIT.usage);
  const pub = portNumber(m[1], `--publish '${spec}': public port`);
  const virtual = m[2] === undefined ? pub : portNumber(m[2], `--publish '${spec}': virtual port`);
  return host === undefined ? { public: pub, virtual } : { public: pub, virtual, host };
}

/** A publication as APPSHOT_PUBLISH and parsePublish write it. */
export function publishSpec(p: Publication): string {
  const host = p.host === undefined ? '' : isIPv6(p.host) ? `[${p.host}]:` : `${p.host}:`;
  return `${host}${p.public}:${p.virtual}`;
}

/** APPSHOT_POOL_STEER as asked of a published port's daemon: unset,
 * kernel or user; any other value is refused before anything runs (the
 * daemon would take it for user). */
export function checkPoolSteer(value = process.env.APPSHOT_POOL_STEER): void {
  if (value === undefined || value === '' || value === 'kernel' || value === 'user') return;
  throw new AppshotError(
    `APPSHOT_POOL_STEER is '${value}': set it to kernel (the default: the kernel steers a published port's connections where the pool daemon can load eBPF, as root) or user (the daemon hands each connection over), or unset it`,
    EXIT.usage,
  );
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

/** How long a daemon has to answer: it answers in microseconds when it
 * runs, so one that takes this long is stopped or stuck. */
const POOL_ANSWER_MS = 5000;

/** A daemon past its deadline: its pid (when known), its log, what to do. */
function notAnswering(home: string, pub: number, pid: number | undefined, what: string): AppshotError {
  const who = pid ? `the pool daemon of port ${pub} (pid ${pid})` : `the pool daemon of port ${pub}`;
  const act = pid
    ? `if it is stopped (state T in ps), 'kill -CONT ${pid}'; if it hangs, 'kill ${pid}': the harnesses of the applications publishing the port start a new one`
    : 'it is stopped or stuck';
  return new AppshotError(`${who} ${what} within ${POOL_ANSWER_MS / 1000} s; see its log ${poolFile(home, pub, 'log')}; ${act}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** A daemon's connection: the socket and the daemon's pid. */
interface Ctl {
  s: Socket;
  pid: number;
}

/** The daemon's control socket must be served by our own user: anyone who
 * can put a socket there would learn our applications and answer for the
 * daemon. */
function checkPeer(home: string, pub: number, s: Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const cred = typeof fd === 'number' && fd >= 0 ? addon().peerCred(fd) : null;
  const me = process.geteuid!();
  if (!cred || cred.uid !== me) {
    s.destroy();
    throw new AppshotError(
      `${poolFile(home, pub, 'ctl')} is served by ${cred ? `pid ${cred.pid} of uid ${cred.uid}` : 'a process appshot cannot identify'}, not by a pool daemon of yours (uid ${me}): another user can put sockets in ${join(home, 'pools')}; make the home and its folders yours alone (chmod 700)`,
      EXIT.home,
    );
  }
  return cred.pid;
}

function connectCtl(home: string, pub: number): Promise<Ctl | null> {
  return new Promise((resolve, reject) => {
    const s = createConnection(poolFile(home, pub, 'ctl'));
    const timer = setTimeout(() => {
      s.destroy();
      reject(notAnswering(home, pub, undefined, `does not take a connection at ${poolFile(home, pub, 'ctl')}`));
    }, POOL_ANSWER_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      try {
        resolve({ s, pid: checkPeer(home, pub, s) });
      } catch (err) {
        reject(err);
      }
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(null);
      else reject(err);
    });
  });
}

/** One line from the daemon, within POOL_ANSWER_MS. */
function readLine(home: string, pub: number, c: Ctl): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err: Error | null, line = '') => {
      clearTimeout(timer);
      c.s.off('data', onData);
      c.s.off('end', onEnd);
      c.s.off('error', onEnd);
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) done(null, buf.slice(0, i));
    };
    const onEnd = () => done(new AppshotError(`the pool daemon of port ${pub} (pid ${c.pid}) closed the connection without answering; see its log ${poolFile(home, pub, 'log')}`));
    const timer = setTimeout(() => done(notAnswering(home, pub, c.pid, 'does not answer')), POOL_ANSWER_MS);
    c.s.on('data', onData);
    c.s.once('end', onEnd);
    c.s.once('error', onEnd);
  });
}

/** Starts the daemon for pub; the caller holds the pool's lock. steer
 * overrides APPSHOT_POOL_STEER for it. */
function startDaemon(home: string, pub: number, balance: Balance, holder: string | undefined, host?: string, steer?: 'user'): Promise<void> {
  return new Promise((resolve, reject) => {
    const env = steer === undefined ? process.env : { ...process.env, APPSHOT_POOL_STEER: steer };
    const child = spawn(POOL_PATH, [home, String(pub), balance, ...(host === undefined ? [] : [host])], { detached: true, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(notAnswering(home, pub, child.pid, 'did not start'));
    }, POOL_ANSWER_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) {
        clearTimeout(timer);
        child.stdout.destroy();
        child.stderr.destroy();
        child.unref();
        resolve();
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new AppshotError(`cannot start ${POOL_PATH}: ${e.message}; run 'npm install' to build it`, EXIT.shimSetup));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (out.includes('ready\n')) return;
      if (code === 3) {
        const who = holder ? `application '${holder}'` : 'a program outside appshot';
        reject(new AppshotError(`cannot publish port ${pub}: it is in use by ${who}; stop it or choose another public port`, EXIT.conflict));
      } else reject(new AppshotError(`the pool daemon for port ${pub} failed: ${err.trim() || `exit ${code}`}`, EXIT.failure));
    });
  });
}

/** The pool's lock, waited for at most POOL_ANSWER_MS: its holder is a
 * harness finding or starting the daemon, itself bounded by that deadline. */
async function lockPool(home: string, pub: number): Promise<number> {
  const path = poolFile(home, pub, 'lock');
  const fd = openHomeFile(path, constants.O_RDWR | constants.O_CREAT);
  for (const end = Date.now() + 2 * POOL_ANSWER_MS; ; ) {
    try {
      addon().flock(fd, LOCK_EX | LOCK_NB);
      return fd;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EWOULDBLOCK' && (err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        closeSync(fd);
        throw err;
      }
      if (Date.now() > end) {
        closeSync(fd);
        throw new AppshotError(`${path} stays locked: another appshot command is stuck starting the pool daemon of port ${pub}; see ${poolFile(home, pub, 'log')}`);
      }
      await sleep(20);
    }
  }
}

/** Connects to the daemon of pub (starting it if none runs) and asks it to
 * count aid among its lifelines: the connection, kept open, is one. */
function publish(home: string, pub: number, aid: string, balance: Balance, holder?: string, host?: string): Promise<Ctl> {
  return lifeline(home, pub, `publish ${aid} ${balance}`, `application '${aid}'`, balance, holder, host);
}

/** Connects to the daemon of pub (starting it if none runs, steering as
 * steer says or APPSHOT_POOL_STEER) and makes the connection a lifeline by
 * request (publish or scale; core/pool.h). */
async function lifeline(home: string, pub: number, request: string, who: string, balance: Balance, holder?: string, host?: string, steer?: 'user'): Promise<Ctl> {
  homeSubdir(home, 'pools');
  checkHomeFile(poolFile(home, pub, 'log')); // the daemon opens it, refusing a link, after it said ready
  const lockFd = await lockPool(home, pub); // one harness finds or starts the daemon at a time
  let c: Ctl | null;
  try {
    c = await connectCtl(home, pub);
    if (!c) {
      await startDaemon(home, pub, balance, holder, host, steer);
      c = await connectCtl(home, pub);
      if (!c) throw new AppshotError(`the pool daemon for port ${pub} started but does not answer at ${poolFile(home, pub, 'ctl')}`);
    }
  } finally {
    closeSync(lockFd);
  }
  c.s.write(`${request}\n`);
  const answer = await readLine(home, pub, c).catch((err) => {
    c!.s.destroy();
    throw err;
  });
  const [verdict, policy, where] = answer.split(' ');
  if (verdict === 'serving') {
    c.s.destroy();
    throw new AppshotError(`port ${pub} is already served by 'appshot template serve ${policy}' (its pool has one serving command); stop that one or choose another public port`, EXIT.conflict);
  }
  if (verdict !== 'ok') {
    c.s.destroy();
    throw new AppshotError(`the pool daemon for port ${pub} refused ${who}: ${answer}`);
  }
  if (policy !== balance) {
    c.s.destroy();
    throw new AppshotError(
      `port ${pub} is already published with ${BALANCE_NAMES[policy as Balance] ?? policy} balancing, not ${BALANCE_NAMES[balance]}; use --balance ${policy} to join that pool`,
      EXIT.conflict,
    );
  }
  if (host !== undefined && where !== undefined && where !== host) {
    c.s.destroy();
    const on = where === '*' ? 'on the address its first program bound' : `on ${where}`;
    throw new AppshotError(
      `port ${pub} is already published ${on}, not on ${host}; publish it ${where === '*' ? 'without an address' : `as ${where}:${pub}:VIRTUAL`} to join that pool, or choose another public port`,
      EXIT.conflict,
    );
  }
  c.s.unref();
  return c;
}

export interface Lifeline {
  close(): void;
}

/**
 * Joins the pool of a public port for application aid, starting its daemon
 * if none runs. holder names the application whose virtual port holds the
 * public port as its system port, if one does, for the error message.
 *
 * Should the daemon die, the lifeline ends: the harness then starts a new
 * daemon (or joins the one another harness started), which takes over the
 * instances the old one served (core/pool.h).
 */
export async function joinPool(home: string, pub: number, aid: string, balance: Balance, holder?: string, host?: string): Promise<Lifeline> {
  let current = (await publish(home, pub, aid, balance, holder, host)).s;
  let closed = false;
  const rejoin = async () => {
    for (let attempt = 0; !closed; attempt++) {
      try {
        const next = (await publish(home, pub, aid, balance, undefined, host)).s;
        if (closed) next.destroy();
        else watch((current = next));
        return;
      } catch (err) {
        if (attempt === 0) process.stderr.write(`appshot: the pool daemon of port ${pub} ended and no new one answers yet: ${(err as Error).message}; trying again each second\n`);
        await sleep(1000);
      }
    }
  };
  const watch = (s: Socket) => {
    s.on('error', () => {}); // 'close' follows
    s.resume(); // nothing comes but the end, which must be read to be seen
    s.once('close', () => void (closed || rejoin()));
  };
  watch(current);
  return {
    close: () => {
      closed = true;
      current.destroy();
    },
  };
}

export interface PoolInstance {
  aid: string;
  vport: number;
  sport: number;
  spid: number;
  unacked: number;
  active: number;
  handed: number;
  /** How long it has had no connection open (0 while it has one). */
  idle_ms: number;
  /** Its serving command is retiring it: it is given nothing more. */
  draining: boolean;
}
export interface PoolStatus {
  public: number;
  policy: Balance;
  /** Who picks each connection's instance: an eBPF program in the kernel
   * (the default where the daemon may load BPF) or the daemon, which
   * accepts it and hands it over (APPSHOT_POOL_STEER=user, a daemon that
   * may not load BPF, or a pool of template serve). */
  steer: 'kernel' | 'user';
  pid: number;
  held: number;
  /** How long the connection that has waited longest has waited. */
  oldest_ms: number;
  /** The scaler's limit of open connections per instance (0: none). */
  conns: number;
  /** The template its serving command serves, if one is connected. */
  scaler: string | null;
  lifelines: string[];
  instances: PoolInstance[];
}

/** What the daemon tells its scaler (core/pool.h). */
export type ScaleEvent =
  | { kind: 'need'; held: number; oldestMs: number }
  | { kind: 'joined'; aid: string }
  | { kind: 'gone'; aid: string }
  /** The daemon ended and a new one took the pool over: events may have been lost. */
  | { kind: 'rejoined' };

export interface Scaler {
  drain(aid: string): void;
  undrain(aid: string): void;
  close(): void;
}

function scaleEvent(line: string): ScaleEvent | null {
  const [kind, a, b] = line.split(' ');
  if (kind === 'need') {
    const held = Number(/^held=(\d+)$/.exec(a ?? '')?.[1]);
    const oldestMs = Number(/^oldest=(\d+)$/.exec(b ?? '')?.[1]);
    return Number.isFinite(held) && Number.isFinite(oldestMs) ? { kind, held, oldestMs } : null;
  }
  if ((kind === 'joined' || kind === 'gone') && a) return { kind, aid: a };
  return null;
}

/**
 * The serving command's connection to the daemon of a public port (its
 * scaler; core/pool.h), starting the daemon if none runs, which then holds
 * the port and listens at once. A lifeline too: the daemon lives while it
 * is open. Events go to onEvent; should the daemon die, the scaler joins
 * the one that takes its place and says so ('rejoined').
 */
export async function scalePool(
  home: string,
  pub: number,
  opts: { name: string; balance: Balance; conns: number; holder?: string; host?: string },
  onEvent: (e: ScaleEvent) => void,
): Promise<Scaler> {
  const request = `scale ${opts.name} ${opts.conns}`;
  const who = `the serving command of template '${opts.name}'`;
  // Held connections, --conns and the need events are the hand-off's: a
  // daemon the serving command starts hands connections over in user space.
  let current = (await lifeline(home, pub, request, who, opts.balance, opts.holder, opts.host, 'user')).s;
  let closed = false;
  const rejoin = async () => {
    for (let attempt = 0; !closed; attempt++) {
      try {
        const next = (await lifeline(home, pub, request, who, opts.balance, undefined, opts.host, 'user')).s;
        if (closed) next.destroy();
        else {
          watch((current = next));
          onEvent({ kind: 'rejoined' });
        }
        return;
      } catch (err) {
        if (attempt === 0) process.stderr.write(`appshot: the pool daemon of port ${pub} ended and no new one answers yet: ${(err as Error).message}; trying again each second\n`);
        await sleep(1000);
      }
    }
  };
  const watch = (s: Socket) => {
    let buf = '';
    s.on('error', () => {}); // 'close' follows
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const e = scaleEvent(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (e) onEvent(e);
      }
    });
    s.once('close', () => void (closed || rejoin()));
  };
  watch(current);
  const send = (line: string) => {
    if (!current.destroyed) current.write(line);
  };
  return {
    drain: (aid) => send(`drain ${aid}\n`),
    undrain: (aid) => send(`undrain ${aid}\n`),
    close: () => {
      closed = true;
      current.destroy();
    },
  };
}

/** What the daemon of a public port says about its pool, or null when no
 * daemon runs for it; an error naming its pid and log when it does not
 * answer within POOL_ANSWER_MS. */
export async function poolStatus(home: string, pub: number): Promise<PoolStatus | null> {
  const c = await connectCtl(home, pub).catch((err) => {
    if (err instanceof AppshotError) throw err;
    return null; // no daemon this user can reach
  });
  if (!c) return null;
  try {
    c.s.write('status\n');
    const line = await readLine(home, pub, c);
    try {
      return JSON.parse(line) as PoolStatus;
    } catch {
      throw new AppshotError(`the pool daemon of port ${pub} (pid ${c.pid}) answered '${line.slice(0, 80)}', not its status; see its log ${poolFile(home, pub, 'log')}`);
    }
  } finally {
    c.s.destroy();
  }
}
