/**
 * The published-port pool against the same instances reached directly:
 * three poolserver instances, each an application under appshot, loaded
 * from loopback by loadgen. Directly, the load generator spreads its
 * connections over the instances' own (system) ports; through the pool it
 * connects to the one public port and the pool daemon hands each accepted
 * connection to an instance. Measured with a connection per request (the
 * hand-off on every request) and with 100 requests per connection.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import { type Stage, sized } from './stage.js';

const INSTANCES = 3;
const VIRTUAL = 18181;
const PUBLIC = 18180;
const CONNS = 4;
/** Rounds each way, and seconds of load each. */
const SIZES = { default: { rounds: 2, seconds: 1 }, full: { rounds: 3, seconds: 2 } };

export interface PoolFigures {
  requestsPerConnection: number;
  directRps: number;
  poolRps: number;
  ratio: number;
  errors: number;
}

interface Instance {
  child: ChildProcess;
  exited: Promise<void>;
}

function startInstance(home: string, aid: string, publish: boolean): Promise<Instance> {
  const args = [CLI_PATH, 'run', '--aid', aid, ...(publish ? ['--publish', `${PUBLIC}:${VIRTUAL}`] : []), '--', builtProgram('poolserver'), String(VIRTUAL)];
  const child = spawn(process.execPath, args, { env: { ...process.env, APPSHOT_HOME: home }, stdio: ['ignore', 'pipe', 'inherit'] });
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

function load(ports: number[], reqs: number, seconds: number): { rps: number; errors: number } {
  const r = spawnSync(builtProgram('loadgen'), [ports.join(','), String(CONNS), String(seconds), String(reqs)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loadgen failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function withInstances<T>(home: string, publish: boolean, fn: () => T): Promise<T> {
  const list: Instance[] = [];
  try {
    for (let i = 0; i < INSTANCES; i++) list.push(await startInstance(home, `bench-${publish ? 'pool' : 'direct'}-${i}`, publish));
    return fn();
  } finally {
    for (const i of list) i.child.kill('SIGTERM');
    await Promise.all(list.map((i) => i.exited));
  }
}

/** Median requests per second each way over rounds, alternating sides. */
export async function poolThroughput(home: string, rounds: number, seconds: number): Promise<PoolFigures[]> {
  const figures: PoolFigures[] = [];
  for (const reqs of [1, 100]) {
    const direct: number[] = [];
    const pool: number[] = [];
    let errors = 0;
    for (let i = 0; i < rounds; i++) {
      const d = await withInstances(home, false, () => load(systemPorts(home), reqs, seconds));
      const p = await withInstances(home, true, () => load([PUBLIC], reqs, seconds));
      direct.push(d.rps);
      pool.push(p.rps);
      errors += d.errors + p.errors;
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const directRps = median(direct);
    const poolRps = median(pool);
    figures.push({ requestsPerConnection: reqs, directRps, poolRps, ratio: poolRps / directRps, errors });
  }
  return figures;
}

export const poolStage: Stage = {
  name: 'pool',
  describe(full) {
    const { rounds, seconds } = sized(full, SIZES);
    return `published-port pool against the same ${INSTANCES} instances reached directly, a connection per request and 100 per connection (${rounds} rounds of ${seconds} s each way)`;
  },
  async run(ctx) {
    const { rounds, seconds } = sized(ctx.full, SIZES);
    return { pool: await poolThroughput(ctx.home, rounds, seconds) };
  },
};
