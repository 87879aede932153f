/**
 * `npm run bench`: the per-call cost of the translated SysV IPC calls
 * (semaphores, shared memory, message queues) and process-ID calls (getpid,
 * kill, fork, posix_spawn) and port calls (bind, connect), natively and
 * under the shim in the same run, reported as ratios against the targets
 * (bench/targets.ts), with absolute times beside them; the path calls on
 * a redirected path and without redirections; a published-port
 * pool's throughput against the same instances reached directly
 * (bench/pool.ts); snapshot and restore (bench/snapshot.ts); cloning a
 * template (bench/clone.ts); and at scale,
 * the translation lookup with up to 1M mappings in the tables
 * (bench/lookup.ts) and the allocation rate of 1, 8 and 64 processes at
 * once (bench/alloc.ts); and `appshot tables` over 1M mappings
 * (bench/inspect.ts). Results go to bench/results/<date>.json, with a
 * markdown summary and an SVG chart beside it (bench/report.ts).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { CLI_PATH, ROOT, builtProgram } from '../ts/paths.js';
import { IPC_TYPES, type IpcType } from '../ts/sysv/ipctype.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { type AllocFigures, allocationRate } from './alloc.js';
import { type CloneFigures, cloneTimes } from './clone.js';
import { inspectorAtScale } from './inspect.js';
import { type LookupFigures, lookupAtScale } from './lookup.js';
import { type PoolFigures, poolThroughput } from './pool.js';
import { type Results, chart, markdown, printTables } from './report.js';
import { type SnapFigures, snapshotThroughput } from './snapshot.js';
import { ABSOLUTE, ALLOCATION, LOOKUPS, LOOKUP_AT_SCALE, PAIRED } from './targets.js';

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
  // Raw system calls the shim's filter traps (bench/native/trapbench.c).
  { program: builtProgram('trapbench'), nativeKey: 0x5eb800, shimKey: 0x5eb900 },
];

type Sample = Record<string, number | { p50: number; p99: number }>;

/** One run of a driver: natively, or under the shim with runFlags given
 * to `appshot run`. */
function runDriver(home: string, program: string, args: string[], runFlags: string[] | null): Sample {
  const r = runFlags
    ? spawnSync(process.execPath, [CLI_PATH, 'run', ...runFlags, '--', program, ...args], { env: { ...process.env, APPSHOT_HOME: home }, encoding: 'utf8' })
    : spawnSync(program, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${basename(program)} ${runFlags ? 'under the shim' : 'natively'} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function runOnce(home: string, program: string, shim: boolean, key: number): Sample {
  return runDriver(home, program, [`0x${key.toString(16)}`], shim ? [] : null);
}

/**
 * Path redirection (bench/native/pathbench.c): open + close and stat on a
 * redirected path under the shim against the same calls natively on the
 * real path it leads to, the covering redirection second of two; and
 * open + close under the shim of an application without redirections.
 */
function pathRound(home: string): { native: Sample; shim: Sample } {
  const program = builtProgram('pathbench');
  const virt = join(home, 'app', 'config');
  const real = join(home, 'instances', 'web-1', 'config');
  mkdirSync(real, { recursive: true });
  const redirs = ['--redir', `${join(home, 'app', 'cache')}=${join(home, 'instances', 'web-1', 'cache')}`, '--redir', `${virt}=${real}`];
  return {
    native: { ...runDriver(home, program, [real, 'redirected'], null), ...runDriver(home, program, [real, 'no_redirect'], null) },
    shim: { ...runDriver(home, program, [virt, 'redirected'], redirs), ...runDriver(home, program, [real, 'no_redirect'], []) },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Every round of the per-call drivers, one sample per side per round. */
function perCall(home: string): { native: Sample[]; shim: Sample[] } {
  const native: Sample[] = [];
  const shim: Sample[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    process.stderr.write(`\rround ${i + 1}/${ROUNDS}`);
    const n: Sample = {};
    const s: Sample = {};
    for (const { program, nativeKey, shimKey } of DRIVERS) {
      // Alternate so that drift in the machine hits both sides alike.
      Object.assign(n, runOnce(home, program, false, nativeKey + i * 4));
      Object.assign(s, runOnce(home, program, true, shimKey + i * 4));
    }
    const paths = pathRound(home);
    Object.assign(n, paths.native);
    Object.assign(s, paths.shim);
    native.push(n);
    shim.push(s);
  }
  process.stderr.write('\n');
  return { native, shim };
}

const ipcIds = () => new Map(IPC_TYPES.map((t) => [t, new Set(kernelObjects(t).keys())]));

/** Kernel objects there now that were not before the bench: `ipcs -a`
 * must end as it began. */
function leftovers(before: Map<IpcType, Set<number>>): string[] {
  const now = ipcIds();
  return IPC_TYPES.flatMap((t) => [...now.get(t)!].filter((id) => !before.get(t)!.has(id)).map((id) => `${t} ${id}`));
}

async function main(): Promise<void> {
  const before = ipcIds();
  const rounds = Math.min(ROUNDS, 3);
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-'));
  let samples: { native: Sample[]; shim: Sample[] };
  let pool: PoolFigures[];
  let snap: SnapFigures[];
  let clone: CloneFigures[];
  try {
    samples = perCall(home);
    process.stderr.write('published-port pool against direct\n');
    pool = await poolThroughput(home, rounds);
    process.stderr.write('snapshot and restore of 1 GiB of shared memory and 10,000 semaphore sets\n');
    snap = await snapshotThroughput(home, rounds);
    process.stderr.write('cloning a template of 256 MiB shared and 16 MiB duplicate, 1, 10 and 50 clones\n');
    clone = await cloneTimes(home, rounds);
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  }
  // Each in tables of its own.
  process.stderr.write('translation lookup with 1k, 100k and 1M mappings in the tables\n');
  const lookupsAtScale = await lookupAtScale(rounds);
  process.stderr.write('allocation rate of 1, 8 and 64 processes at once\n');
  const alloc = await allocationRate(rounds);
  process.stderr.write('the table inspector over 1,000 applications x 1,000 mappings\n');
  const inspector = await inspectorScenario(rounds);
  const { native, shim } = samples;

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

  const date = new Date().toISOString();
  const results: Results = {
    date,
    rounds: ROUNDS,
    scenarioRounds: rounds,
    calls,
    lookups,
    absolute,
    scale: { lookups: lookupsAtScale.map(boundLookup), allocation: alloc.map(boundAllocation) },
    pool,
    snapshot: snap,
    clone,
    inspector,
    raw: { native, shim },
  };
  process.stdout.write(printTables(results));
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const base = join(dir, date.slice(0, 10));
  writeFileSync(`${base}.json`, JSON.stringify(results, null, 2) + '\n');
  writeFileSync(`${base}.md`, markdown(results, `${basename(base)}.svg`));
  writeFileSync(`${base}.svg`, chart(results));
  process.stdout.write(`results written to ${base}.json, .md and .svg\n`);

  const left = leftovers(before);
  if (left.length)
    throw new Error(`the bench left kernel objects behind (or something else on the host made them meanwhile): ${left.join(', ')}`);
}

/** In tables of its own, removed after. */
async function inspectorScenario(rounds: number) {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-inspect-'));
  try {
    return await inspectorAtScale(home, rounds);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** The issue bounds the lookup at one size. */
function boundLookup(f: LookupFigures) {
  if (f.mappings !== LOOKUP_AT_SCALE.mappings) return { ...f, target: null, met: null };
  const target = { p50Ns: LOOKUP_AT_SCALE.p50Ns, p99Ns: LOOKUP_AT_SCALE.p99Ns };
  return { ...f, target, met: f.hot.p50 <= target.p50Ns && f.hot.p99 <= target.p99Ns };
}

/** And the allocation rate at one process count. */
function boundAllocation(f: AllocFigures) {
  if (f.procs !== ALLOCATION.procs) return { ...f, targetPerSecond: null, met: null };
  return { ...f, targetPerSecond: ALLOCATION.perSecond, met: f.shimPerSecond >= ALLOCATION.perSecond };
}

await main();
