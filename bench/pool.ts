/**
 * The published-port pool against the same instances reached directly:
 * three poolserver instances, each an application under appshot, loaded
 * from loopback by loadgen. Directly, the load generator spreads its
 * connections over the instances' own (system) ports; through the pool it
 * connects to the one public port, whose connections the kernel steers
 * (the default where the daemon may load BPF; left out, and said, where it
 * cannot), and then again with the daemon accepting each and handing it
 * over (APPSHOT_POOL_STEER=user). Measured with a connection per request
 * (the hand-off on every request) and with 100 requests per connection.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync, readdirSync, realpathSync } from 'node:fs';
import { loadavg } from 'node:os';
import { CLI_PATH, POOL_PATH, builtProgram } from '../ts/paths.js';
import { type PoolStatus, poolStatus } from '../ts/pool.js';
import { type Stage, sized } from './stage.js';
import type { PoolFigures } from './figures.js';

const INSTANCES = 3;
const VIRTUAL = 18181;
const PUBLIC = 18180;
const CONNS = 4;
/** Rounds each way, and seconds of load each. */
const SIZES = { default: { rounds: 2, seconds: 1 }, full: { rounds: 3, seconds: 2 } };
type Steer = PoolStatus['steer'];


interface Instance {
  child: ChildProcess;
  exited: Promise<void>;
}

/** steer kernel is the default (the variable cleared), user forces the hand-off. */
function startInstance(home: string, aid: string, publish: boolean, serverArgs: string[] = [], steer: Steer = 'kernel'): Promise<Instance> {
  const args = [CLI_PATH, 'run', '--aid', aid, ...(publish ? ['--publish', `${PUBLIC}:${VIRTUAL}`] : []), '--', builtProgram('poolserver'), String(VIRTUAL), ...serverArgs];
  const env = { ...process.env, APPSHOT_HOME: home, APPSHOT_POOL_STEER: steer === 'kernel' ? '' : 'user' };
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) resolve({ child, exited });
    });
    child.on('close', (code) => reject(new Error(`poolserver under appshot (${aid}) ended early: exit ${code}`)));
  });
}

function systemPorts(home: string): number[] {
  const r = spawnSync(process.execPath, [CLI_PATH, 'tables', '--type', 'port', '--json'], { env: { ...process.env, APPSHOT_HOME: home }, encoding: 'utf8' });
  return (JSON.parse(r.stdout) as { system: number }[]).map((row) => row.system);
}

/** Clock ticks per second of /proc/PID/stat's CPU times. */
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** CPU time, in microseconds, of the processes serving on home: its
 * poolserver instances and its pool daemon (other homes' are left out). */
function serverCpuUs(home: string): number {
  const real = realpathSync(home);
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const ours =
        (argv[0] === POOL_PATH && argv[1] !== undefined && realpathSync(argv[1]) === real) ||
        (argv[0] === builtProgram('poolserver') && readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`APPSHOT_HOME=${home}`));
      if (!ours) continue;
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); /* utime, stime */
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return (ticks * 1e6) / TICKS;
}

interface Load {
  rps: number;
  errors: number;
  /** CPU per request on every side: load generator, instances, daemon. */
  cpuUs: number;
}

function load(home: string, ports: number[], reqs: number, seconds: number): Load {
  const before = serverCpuUs(home);
  const r = spawnSync(builtProgram('loadgen'), [ports.join(','), String(CONNS), String(seconds), String(reqs)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loadgen failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { requests: number; rps: number; errors: number; cpu_us: number };
  return { rps: out.rps, errors: out.errors, cpuUs: (out.cpu_us + serverCpuUs(home) - before) / Math.max(1, out.requests) };
}

/** Runs fn with the instances up; through the pool, with who steers its
 * connections as the daemon says (fn is not run, and null given back, when
 * the kernel was asked and the daemon steers in user space). */
async function withInstances<T>(home: string, publish: boolean, steer: Steer, fn: () => T): Promise<T | null> {
  const list: Instance[] = [];
  try {
    for (let i = 0; i < INSTANCES; i++) list.push(await startInstance(home, `bench-${publish ? 'pool' : 'direct'}-${i}`, publish, [], steer));
    if (publish && steer === 'kernel' && (await poolStatus(home, PUBLIC))?.steer !== 'kernel') return null;
    return fn();
  } finally {
    for (const i of list) i.child.kill('SIGTERM');
    await Promise.all(list.map((i) => i.exited));
  }
}

/** Median requests per second each way over rounds, alternating sides, for
 * each way of steering the pool's connections (the kernel's only where the
 * daemon may load BPF). The CPU a request costs on every side, each way,
 * goes to progress: on a shared machine it holds still where requests/s
 * swing with the load. */
export async function poolThroughput(home: string, rounds: number, seconds: number, progress?: (line: string) => void): Promise<PoolFigures[]> {
  const figures: PoolFigures[] = [];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const steer of ['kernel', 'user'] as const)
    for (const reqs of [1, 100]) {
      const direct: Load[] = [];
      const pool: Load[] = [];
      for (let i = 0; i < rounds; i++) {
        direct.push((await withInstances(home, false, steer, () => load(home, systemPorts(home), reqs, seconds)))!);
        const through = await withInstances(home, true, steer, () => load(home, [PUBLIC], reqs, seconds));
        if (!through) break;
        pool.push(through);
      }
      if (!pool.length) {
        progress?.('the pool daemon cannot load BPF here (it needs root or CAP_BPF): no rows for steering in the kernel');
        break; /* to the user-space rows */
      }
      const directRps = median(direct.map((l) => l.rps));
      const poolRps = median(pool.map((l) => l.rps));
      const errors = [...direct, ...pool].reduce((n, l) => n + l.errors, 0);
      figures.push({ requestsPerConnection: reqs, steer, directRps, poolRps, ratio: poolRps / directRps, errors });
      const directCpu = median(direct.map((l) => l.cpuUs));
      const poolCpu = median(pool.map((l) => l.cpuUs));
      progress?.(
        `${reqs} request(s) per connection, steered in ${steer === 'kernel' ? 'the kernel' : 'user space'}: CPU per request, every side: direct ${directCpu.toFixed(1)} µs, pool ${poolCpu.toFixed(1)} µs ` +
          `(direct / pool ${(directCpu / poolCpu).toFixed(2)}x); req/s ${directRps} and ${poolRps}; load ${loadavg()[0].toFixed(1)}`,
      );
    }
  return figures;
}

/** Connections one after another, this far apart, to a close-delimited server. */
const CLOSE_CONNS = 40;
const CLOSE_GAP_MS = 10;

/** Milliseconds from connecting to port to the EOF after the answer. */
function untilEof(port: number): Promise<number> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.0\r\n\r\n'));
    s.on('data', () => {});
    s.on('end', () => (s.destroy(), resolve(performance.now() - start)));
    s.on('error', reject);
  });
}

/** The median time to EOF from one poolserver speaking a close-delimited
 * protocol (HTTP/1.0 with no length: it answers and closes), reached
 * through the pool or directly: the client's EOF comes with the server's
 * close only if the daemon let go of its copy of the connection first. */
async function closeDelimitedP50(home: string, publish: boolean): Promise<number> {
  const inst = await startInstance(home, `bench-close-${publish ? 'pool' : 'direct'}`, publish, ['1', 'close']);
  try {
    const port = publish ? PUBLIC : systemPorts(home)[0];
    const times: number[] = [];
    for (let i = 0; i < CLOSE_CONNS; i++) {
      times.push(await untilEof(port));
      await new Promise((r) => setTimeout(r, CLOSE_GAP_MS));
    }
    return times.sort((a, b) => a - b)[CLOSE_CONNS >> 1];
  } finally {
    inst.child.kill('SIGTERM');
    await inst.exited;
  }
}

export const poolStage: Stage = {
  name: 'pool',
  describe(full) {
    const { rounds, seconds } = sized(full, SIZES);
    return `published-port pool against the same ${INSTANCES} instances reached directly, a connection per request and 100 per connection, the kernel's steering (the default) and the daemon's hand-off (${rounds} rounds of ${seconds} s each way)`;
  },
  async run(ctx) {
    const { rounds, seconds } = sized(ctx.full, SIZES);
    const pool = await poolThroughput(ctx.home, rounds, seconds, ctx.progress);
    const direct = await closeDelimitedP50(ctx.home, false);
    const viaPool = await closeDelimitedP50(ctx.home, true);
    ctx.progress(
      `close-delimited (server answers and closes, client reads to EOF; ${CLOSE_CONNS} connections ${CLOSE_GAP_MS} ms apart): ` +
        `p50 direct ${direct.toFixed(2)} ms, pool ${viaPool.toFixed(2)} ms; load ${loadavg()[0].toFixed(1)}`,
    );
    return { pool };
  },
};
