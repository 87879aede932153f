/**
 * `node dist/bench/trap.js`: what the system call trap costs (issue 16 §1).
 * In one run, alternating round by round: trapbench (bench/native/trapbench.c)
 * natively, under the shim with the trap (the default), and under the shim
 * with `--no-trap`; and the libc-path drivers (sembench, pidbench) under the
 * shim with and without the trap, to show that the wrappers' path did not
 * move. Medians of ROUNDS rounds (BENCH_TRAP_ROUNDS, default 7). Prints a
 * table; --json prints the figures.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { CLI_PATH, builtProgram } from '../ts/paths.js';

const ROUNDS = Number(process.env.BENCH_TRAP_ROUNDS ?? 7);
type Side = 'native' | 'trap' | 'noTrap';
const SIDES: Side[] = ['native', 'trap', 'noTrap'];
/** Keys of their own per side and round, so no side finds another's objects. */
const KEY_BASE = 0x5ec000;

const DRIVERS = [
  { program: builtProgram('trapbench'), metrics: ['raw_getpid', 'libc_getpid', 'raw_semop', 'libc_semop', 'raw_kill_self_0', 'untrapped_getuid'] },
  { program: builtProgram('sembench'), metrics: ['semop', 'semctl_getval'] },
  { program: builtProgram('pidbench'), metrics: ['getpid', 'kill_self_0'] },
];

function runSide(home: string, program: string, side: Side, key: number): Record<string, unknown> {
  const args = [`0x${key.toString(16)}`];
  const r =
    side === 'native'
      ? spawnSync(program, args, { encoding: 'utf8' })
      : spawnSync(process.execPath, [CLI_PATH, 'run', ...(side === 'noTrap' ? ['--no-trap'] : []), '--', program, ...args], {
          env: { ...process.env, APPSHOT_HOME: home },
          encoding: 'utf8',
        });
  if (r.status !== 0) throw new Error(`${basename(program)} (${side}) failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface TrapFigures {
  metric: string;
  nativeNs: number;
  trapNs: number;
  noTrapNs: number;
}

export function trapCost(home: string, rounds = ROUNDS): TrapFigures[] {
  const samples: Record<Side, Record<string, number>[]> = { native: [], trap: [], noTrap: [] };
  for (let i = 0; i < rounds; i++) {
    process.stderr.write(`trap: round ${i + 1} of ${rounds}\n`);
    const round: Record<Side, Record<string, number>> = { native: {}, trap: {}, noTrap: {} };
    DRIVERS.forEach(({ program }, d) => {
      SIDES.forEach((side, s) => Object.assign(round[side], runSide(home, program, side, KEY_BASE + (i * 16 + d * 4 + s) * 2)));
    });
    for (const side of SIDES) samples[side].push(round[side]);
  }
  return DRIVERS.flatMap(({ metrics }) =>
    metrics.map((metric) => {
      const [nativeNs, trapNs, noTrapNs] = SIDES.map((side) => median(samples[side].map((s) => s[metric])));
      return { metric, nativeNs, trapNs, noTrapNs };
    }),
  );
}

function main(): void {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-trap-'));
  let figures: TrapFigures[];
  try {
    figures = trapCost(home);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
  if (process.argv.includes('--json')) {
    process.stdout.write(JSON.stringify(figures, null, 2) + '\n');
    return;
  }
  const ns = (x: number) => `${x.toFixed(1)} ns`;
  const rows = figures.map((f) => [f.metric, ns(f.nativeNs), ns(f.trapNs), ns(f.noTrapNs), (f.trapNs / f.nativeNs).toFixed(2), (f.noTrapNs / f.nativeNs).toFixed(2)]);
  const head = ['call', 'native', 'shim, trap on', 'shim, --no-trap', 'trap on / native', '--no-trap / native'];
  const width = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  for (const r of [head, ...rows]) process.stdout.write(r.map((x, c) => x.padEnd(width[c])).join('  ') + '\n');
}

if (process.argv[1] && basename(process.argv[1]) === 'trap.js') main();
