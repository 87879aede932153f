/**
 * What a call of a static or Go program costs when the supervisor answers
 * it through a seccomp user notification (native/notify, issue 20), against
 * the same call natively and through the shim's in-process path.
 * bench/native/notifybench.c, in one round: linked statically and run
 * natively; linked statically under `appshot run --no-identity` (every
 * call notified); linked dynamically under the same (the shim). Medians of
 * the rounds. `node dist/bench/notify.js` runs it alone and prints its
 * table.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import type { ReportTable } from './figures.js';
import { type Stage, sized } from './stage.js';

type Side = 'native' | 'notified' | 'shim';
const SIDES: Side[] = ['native', 'notified', 'shim'];
const CALLS: { metric: string; label: string }[] = [
  { metric: 'getpid', label: 'getpid (libc)' },
  { metric: 'raw_getpid', label: 'syscall(SYS_getpid)' },
  { metric: 'kill_self_0', label: 'kill(getpid(), 0)' },
  { metric: 'semctl_getval', label: 'semctl(GETVAL), remapped set' },
  { metric: 'getsockname', label: 'getsockname, remapped port' },
  { metric: 'socket_bind_close', label: 'socket + bind (leased remapped port) + close' },
];
/** Keys of their own per side and round. */
const KEY_BASE = 0x5ed000;
const PORT_BASE = 34500;

function runSide(home: string, side: Side, round: number, s: number): Record<string, number> {
  const args = [`0x${(KEY_BASE + round * 4 + s).toString(16)}`, String(PORT_BASE + round * 4 + s)];
  const program = builtProgram(side === 'shim' ? 'notifybench' : 'notifybench-static');
  const r =
    side === 'native'
      ? spawnSync(program, args, { encoding: 'utf8' })
      : spawnSync(process.execPath, [CLI_PATH, 'run', '--no-identity', '--', program, ...args], { env: { ...process.env, APPSHOT_HOME: home }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`notifybench (${side}) failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface NotifyFigures {
  metric: string;
  label: string;
  nativeNs: number;
  notifiedNs: number;
  shimNs: number;
}

export function notifyCost(home: string, rounds: number, progress: (line: string) => void = () => {}): NotifyFigures[] {
  const samples: Record<Side, Record<string, number>[]> = { native: [], notified: [], shim: [] };
  for (let i = 0; i < rounds; i++) {
    progress(`notify: round ${i + 1} of ${rounds}`);
    SIDES.forEach((side, s) => samples[side].push(runSide(home, side, i, s)));
  }
  return CALLS.map(({ metric, label }) => {
    const [nativeNs, notifiedNs, shimNs] = SIDES.map((side) => median(samples[side].map((x) => x[metric])));
    return { metric, label, nativeNs, notifiedNs, shimNs };
  });
}

const us = (ns: number) => (ns >= 1000 ? `${(ns / 1000).toFixed(1)} µs` : `${ns.toFixed(0)} ns`);

export function notifyTable(figures: NotifyFigures[]): ReportTable {
  return {
    title: 'Static and Go programs: a call answered by the supervisor (seccomp user notification) against native and the shim, remapped application',
    head: ['call', 'native', 'notified', 'notified / native', 'shim (in-process)', 'shim / native'],
    rows: figures.map((f) => [f.label, us(f.nativeNs), us(f.notifiedNs), `${(f.notifiedNs / f.nativeNs).toFixed(1)}x`, us(f.shimNs), `${(f.shimNs / f.nativeNs).toFixed(2)}x`]),
  };
}

export const notifyStage: Stage = {
  name: 'notify',
  describe: (full) => `static program's calls answered by the supervisor, native and the shim beside them (${sized(full, { default: 2, full: 5 })} rounds)`,
  async run(ctx) {
    return { tables: [notifyTable(notifyCost(ctx.home, sized(ctx.full, { default: 2, full: 5 }), ctx.progress))] };
  },
};

function main(): void {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-notify-'));
  try {
    const t = notifyTable(notifyCost(home, Number(process.env.BENCH_ROUNDS ?? 5), (l) => process.stderr.write(l + '\n')));
    process.stdout.write([t.title, t.head.join(' | '), ...t.rows.map((r) => r.join(' | '))].join('\n') + '\n');
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

if (process.argv[1] && basename(process.argv[1]) === 'notify.js') main();
