/**
 * `npm run bench`: the per-call cost of the translated SysV IPC calls
 * (semaphores, shared memory, message queues) and process-ID calls (getpid,
 * kill, fork, posix_spawn) and port calls (bind, connect), natively and
 * under the shim in the same run, reported as ratios against the targets,
 * with absolute times beside them; and a published-port pool's throughput
 * against the same instances reached directly (bench/pool.ts).
 * Results go to bench/results/<date>.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import Table from 'cli-table3';
import { CLI_PATH, ROOT, builtProgram } from '../ts/paths.js';
import { type PoolFigures, poolThroughput } from './pool.js';
import { type SnapFigures, snapshotThroughput } from './snapshot.js';

const POOL_TARGET = 0.95;
const SNAPSHOT_TARGET_GBPS = 1.5;

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** The drivers, each with its own keys natively and under the shim, so
 * that neither side ever finds the other's objects. */
const DRIVERS = [
  { program: builtProgram('sembench'), nativeKey: 0x5eb000, shimKey: 0x5eb100 },
  { program: builtProgram('ipcbench'), nativeKey: 0x5eb200, shimKey: 0x5eb300 },
  // Creates no IPC objects: takes a key like the others and ignores it.
  { program: builtProgram('pidbench'), nativeKey: 0x5eb400, shimKey: 0x5eb500 },
  // Takes its ports from the key: 41000 + (key & 0x3ff) and the next.
  { program: builtProgram('portbench'), nativeKey: 0x5eb600, shimKey: 0x5eb700 },
];

type Sample = Record<string, number | { p50: number; p99: number }>;

/** Calls compared against native, with the ratio each must stay under. */
const PAIRED: { metric: string; label: string; target: number }[] = [
  { metric: 'semop', label: 'semop (uncontended)', target: 1.15 },
  { metric: 'semctl_getval', label: 'semctl(GETVAL)', target: 1.15 },
  { metric: 'semget_existing', label: 'semget, existing key', target: Infinity },
  { metric: 'create_remove', label: 'create + remove (IPC_PRIVATE)', target: 2.5 },
  { metric: 'create_remove_keyed', label: 'create + remove (keyed)', target: 2.5 },
  { metric: 'shmat_shmdt', label: 'shmat + shmdt (one pair)', target: 1.1 },
  { metric: 'shmget_existing', label: 'shmget, existing key (no IPC_CREAT)', target: 1.1 },
  { metric: 'msg_round_trip', label: 'msgsnd + msgrcv ping-pong, 64 B, per round trip (2 sends + 2 receives)', target: 1.1 },
  { metric: 'getpid', label: 'getpid (shim: cached vpid, no system call)', target: 1.0 },
  { metric: 'kill_self_0', label: 'kill(getpid(), 0)', target: 1.15 },
  { metric: 'fork_waitpid', label: 'fork + waitpid, child _exit(0)s at once', target: 1.3 },
  { metric: 'spawn_waitpid', label: 'posix_spawn /bin/true + waitpid', target: 1.3 },
  { metric: 'bind_listen', label: 'socket + bind + listen + close', target: 1.1 },
  { metric: 'connect_accept', label: 'loopback connect + accept + close both', target: 1.1 },
];
/** Shim-only figures: absolute time, with a bound where the issue sets one. */
const ABSOLUTE: { metric: string; label: string; targetNs: number }[] = [
  { metric: 'lookup_avg', label: 'translation lookup, mean of 5M (cache hit)', targetNs: 30 },
];
const LOOKUPS = [
  { metric: 'lookup', label: 'translation lookup (cache hit)', p50Target: 30 },
  { metric: 'lookup_after_commit', label: 'translation lookup after a commit (LMDB read)', p50Target: Infinity },
];

function runOnce(home: string, program: string, shim: boolean, key: number): Sample {
  const args = [`0x${key.toString(16)}`];
  const r = shim
    ? spawnSync(process.execPath, [CLI_PATH, 'run', '--', program, ...args], { env: { ...process.env, APPSHOT_HOME: home }, encoding: 'utf8' })
    : spawnSync(program, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${basename(program)} ${shim ? 'under the shim' : 'natively'} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-'));
  const native: Sample[] = [];
  const shim: Sample[] = [];
  let pool: PoolFigures[];
  let snap: SnapFigures[];
  try {
    for (let i = 0; i < ROUNDS; i++) {
      process.stderr.write(`\rround ${i + 1}/${ROUNDS}`);
      // One sample per side per round, all drivers' metrics in it.
      const n: Sample = {};
      const s: Sample = {};
      for (const { program, nativeKey, shimKey } of DRIVERS) {
        // Alternate so that drift in the machine hits both sides alike.
        Object.assign(n, runOnce(home, program, false, nativeKey + i * 4));
        Object.assign(s, runOnce(home, program, true, shimKey + i * 4));
      }
      native.push(n);
      shim.push(s);
    }
    process.stderr.write('\npublished-port pool against direct\n');
    pool = await poolThroughput(home, Math.min(ROUNDS, 3));
    process.stderr.write('snapshot and restore of 1 GiB of shared memory and 10,000 semaphore sets\n');
    snap = await snapshotThroughput(home, Math.min(ROUNDS, 3));
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  }

  const calls = PAIRED.map(({ metric, label, target }) => {
    const n = median(native.map((s) => s[metric] as number));
    const s = median(shim.map((x) => x[metric] as number));
    const ratio = s / n;
    return { metric, label, nativeNs: n, shimNs: s, ratio, target: Number.isFinite(target) ? target : null, met: ratio <= target };
  });
  const lookups = LOOKUPS.map(({ metric, label, p50Target }) => {
    const p50 = median(shim.map((s) => (s[metric] as { p50: number }).p50));
    const p99 = median(shim.map((s) => (s[metric] as { p99: number }).p99));
    return { metric, label, p50Ns: p50, p99Ns: p99, p50Target: Number.isFinite(p50Target) ? p50Target : null, met: p50 <= p50Target };
  });

  const absolute = ABSOLUTE.map(({ metric, label, targetNs }) => {
    const ns = median(shim.map((s) => s[metric] as number));
    return { metric, label, ns, targetNs, met: ns <= targetNs };
  });

  const table = new Table({ head: ['call', 'shim / native', 'target', 'native ns', 'shim ns', ''], style: { head: [], border: [] } });
  for (const c of calls)
    table.push([c.label, c.ratio.toFixed(2) + 'x', c.target ? `≤ ${c.target}x` : '', c.nativeNs.toFixed(0), c.shimNs.toFixed(0), c.target ? (c.met ? 'met' : 'MISSED') : '']);
  for (const l of lookups)
    table.push([l.label, `p50 ${l.p50Ns.toFixed(0)} ns, p99 ${l.p99Ns.toFixed(0)} ns`, l.p50Target ? `p50 ≤ ${l.p50Target} ns` : '', '', '', l.p50Target ? (l.met ? 'met' : 'MISSED') : '']);
  for (const a of absolute) table.push([a.label, `${a.ns.toFixed(1)} ns`, `≤ ${a.targetNs} ns`, '', '', a.met ? 'met' : 'MISSED']);
  process.stdout.write(table.toString() + '\n');

  const poolTable = new Table({ head: ['3 instances, 4 clients', 'pool / direct', 'target', 'direct req/s', 'pool req/s', ''], style: { head: [], border: [] } });
  for (const p of pool)
    poolTable.push([
      p.requestsPerConnection === 1 ? 'a connection per request' : `${p.requestsPerConnection} requests per connection`,
      p.ratio.toFixed(2) + 'x',
      `≥ ${POOL_TARGET}x`,
      p.directRps.toFixed(0),
      p.poolRps.toFixed(0),
      p.ratio >= POOL_TARGET ? 'met' : 'MISSED',
    ]);
  process.stdout.write(poolTable.toString() + '\n');

  const snapTable = new Table({ head: ['1 GiB shm + 10,000 sets, file on', 'snapshot', 'restore', 'target', ''], style: { head: [], border: [] } });
  for (const f of snap) {
    const met = f.snapshotGBps >= SNAPSHOT_TARGET_GBPS && f.restoreGBps >= SNAPSHOT_TARGET_GBPS;
    snapTable.push([f.where, `${f.snapshotSeconds.toFixed(2)} s, ${f.snapshotGBps.toFixed(2)} GB/s`, `${f.restoreSeconds.toFixed(2)} s, ${f.restoreGBps.toFixed(2)} GB/s`, `≥ ${SNAPSHOT_TARGET_GBPS} GB/s each way`, met ? 'met' : 'MISSED']);
  }
  process.stdout.write(snapTable.toString() + '\n');

  const date = new Date().toISOString();
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${date.slice(0, 10)}.json`);
  writeFileSync(file, JSON.stringify({ date, rounds: ROUNDS, calls, lookups, absolute, pool, snapshot: snap, raw: { native, shim } }, null, 2) + '\n');
  process.stdout.write(`results written to ${file}\n`);
}

await main();
