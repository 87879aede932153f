/**
 * The per-call cost of the translated SysV IPC calls (semaphores, shared
 * memory, message queues), process-ID calls (getpid, kill, fork,
 * posix_spawn), port calls (bind, connect), raw system calls the shim's
 * filter traps, and the path calls on a redirected path and without
 * redirections: each driver natively and under the shim in the same round,
 * reported as ratios against the targets (bench/targets.ts), absolute
 * times beside them. The default run makes 3 rounds with a tenth of the
 * iterations per timing loop (BENCH_ITER_SCALE=0.1, bench/native/bench.h);
 * --full, 5 rounds of every iteration. BENCH_ROUNDS sets the rounds either way.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import type { CallFigure, LookupFigure, AbsoluteFigure } from './report.js';
import { type BenchContext, type Stage, sized } from './stage.js';
import { ABSOLUTE, LOOKUPS, PAIRED } from './targets.js';

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

const SIZES = { default: { rounds: 3, iterScale: 0.1 }, full: { rounds: 5, iterScale: 1 } };

function sizes(full: boolean): { rounds: number; iterScale: number } {
  const s = sized(full, SIZES);
  const rounds = Number(process.env.BENCH_ROUNDS) || s.rounds;
  const iterScale = Number(process.env.BENCH_ITER_SCALE) || s.iterScale;
  return { rounds, iterScale };
}

/** One run of a driver: natively, or under the shim with runFlags given
 * to `appshot run`; the timing loops scaled by iterScale. */
function runDriver(home: string, program: string, args: string[], runFlags: string[] | null, iterScale: number): Sample {
  const env = { ...process.env, APPSHOT_HOME: home, BENCH_ITER_SCALE: String(iterScale) };
  const r = runFlags
    ? spawnSync(process.execPath, [CLI_PATH, 'run', ...runFlags, '--', program, ...args], { env, encoding: 'utf8' })
    : spawnSync(program, args, { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${basename(program)} ${runFlags ? 'under the shim' : 'natively'} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * Path redirection (bench/native/pathbench.c): open + close and stat on a
 * redirected path under the shim against the same calls natively on the
 * real path it leads to, the covering redirection second of two; and
 * open + close under the shim of an application without redirections.
 */
function pathRound(home: string, iterScale: number): { native: Sample; shim: Sample } {
  const program = builtProgram('pathbench');
  const virt = join(home, 'app', 'config');
  const real = join(home, 'instances', 'web-1', 'config');
  mkdirSync(real, { recursive: true });
  const redirs = ['--redir', `${join(home, 'app', 'cache')}=${join(home, 'instances', 'web-1', 'cache')}`, '--redir', `${virt}=${real}`];
  const run = (dir: string, suffix: string, flags: string[] | null) => runDriver(home, program, [dir, suffix], flags, iterScale);
  return {
    native: { ...run(real, 'redirected', null), ...run(real, 'no_redirect', null) },
    shim: { ...run(virt, 'redirected', redirs), ...run(real, 'no_redirect', []) },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Every round of the per-call drivers, one sample per side per round. */
function perCall(ctx: BenchContext): { native: Sample[]; shim: Sample[] } {
  const { rounds, iterScale } = sizes(ctx.full);
  const native: Sample[] = [];
  const shim: Sample[] = [];
  for (let i = 0; i < rounds; i++) {
    ctx.progress(`round ${i + 1} of ${rounds}`);
    const n: Sample = {};
    const s: Sample = {};
    for (const { program, nativeKey, shimKey } of DRIVERS) {
      const key = (k: number) => [`0x${(k + i * 4).toString(16)}`];
      // Alternate so that drift in the machine hits both sides alike.
      Object.assign(n, runDriver(ctx.home, program, key(nativeKey), null, iterScale));
      Object.assign(s, runDriver(ctx.home, program, key(shimKey), [], iterScale));
    }
    const paths = pathRound(ctx.home, iterScale);
    Object.assign(n, paths.native);
    Object.assign(s, paths.shim);
    native.push(n);
    shim.push(s);
  }
  return { native, shim };
}

/** Medians over the rounds: paired calls as ratios, the lookups absolute. */
function figures(native: Sample[], shim: Sample[]): { calls: CallFigure[]; lookups: LookupFigure[]; absolute: AbsoluteFigure[] } {
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
  return { calls, lookups, absolute };
}

export const callsStage: Stage = {
  name: 'calls',
  describe(full) {
    const { rounds, iterScale } = sizes(full);
    const iters = iterScale === 1 ? 'every iteration' : `${iterScale}x the iterations`;
    return `per call, natively and under the shim: SysV IPC, pid, port, trapped raw and path calls (${DRIVERS.length + 1} drivers, ${rounds} round${rounds === 1 ? '' : 's'}, ${iters})`;
  },
  async run(ctx) {
    const { native, shim } = perCall(ctx);
    return { ...figures(native, shim), rounds: native.length, raw: { native, shim } };
  },
};
