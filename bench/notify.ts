/**
 * What a call of a static or Go program costs when the supervisor answers
 * it through a seccomp user notification (native/notify, issue 20), against
 * the same call natively and through the shim's in-process path.
 * bench/native/notifybench.c, in one round: linked statically and run
 * natively; linked statically under `appshot run --no-identity` (every
 * call notified); linked dynamically under the same (the shim). Medians of
 * the rounds. Then a Go HTTP server (test/fixtures/go) under load from
 * bench/native/loadgen.c, natively and in a remapped application (the
 * load generator inside it, under the shim), a new connection per request
 * and 100 requests per connection: what the notified accept and
 * getsockname of each connection cost a real server. `node
 * dist/bench/notify.js` runs it alone and prints its tables.
 */
import { spawn, spawnSync } from 'node:child_process';
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

export interface GoLoadFigures {
  perConnection: number;
  nativeRps: number;
  appshotRps: number;
}

function loadgen(prefix: string[], port: number, perConnection: number, seconds: number, env: NodeJS.ProcessEnv): number {
  const argv = [...prefix, builtProgram('loadgen'), String(port), '2', String(seconds), String(perConnection)];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`loadgen failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout).rps;
}

/** The Go server started (natively, or under appshot run --no-identity
 * as application AID), once it says it listens; its end. */
async function goServer(port: number, env: NodeJS.ProcessEnv, aid?: string): Promise<() => Promise<void>> {
  const serve = [builtProgram('go-httpd'), 'serve', 'ok', String(port)];
  const argv = aid ? [process.execPath, CLI_PATH, 'run', '--no-identity', '--aid', aid, '--', ...serve] : serve;
  const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`go-httpd ended (${code}) before it listened`)));
  });
  return () =>
    new Promise<void>((resolve) => {
      child.removeAllListeners('exit');
      child.on('close', () => resolve());
      child.kill('SIGTERM');
    });
}

export async function goLoad(home: string, seconds: number, port: number): Promise<GoLoadFigures[]> {
  const env = { ...process.env, APPSHOT_HOME: home };
  const figures: GoLoadFigures[] = [1, 100].map((perConnection) => ({ perConnection, nativeRps: 0, appshotRps: 0 }));
  let stop = await goServer(port, env);
  for (const f of figures) f.nativeRps = loadgen([], port, f.perConnection, seconds, env);
  await stop();
  stop = await goServer(port, env, 'bench-go');
  for (const f of figures) f.appshotRps = loadgen([process.execPath, CLI_PATH, 'exec', 'bench-go', '--'], port, f.perConnection, seconds, env);
  await stop();
  return figures;
}

export function goLoadTable(figures: GoLoadFigures[]): ReportTable {
  return {
    title: 'A Go HTTP server (no cgo) under load: requests per second natively and in a remapped application (2 client threads on loopback)',
    head: ['requests per connection', 'native', 'appshot', 'appshot / native'],
    rows: figures.map((f) => [String(f.perConnection), f.nativeRps.toFixed(0), f.appshotRps.toFixed(0), `${(f.appshotRps / f.nativeRps).toFixed(2)}x`]),
  };
}

export const notifyStage: Stage = {
  name: 'notify',
  describe: (full) =>
    `static program's calls answered by the supervisor, native and the shim beside them (${sized(full, { default: 2, full: 5 })} rounds); a Go HTTP server under load (${sized(full, { default: 1, full: 3 })} s per run)`,
  async run(ctx) {
    const calls = notifyTable(notifyCost(ctx.home, sized(ctx.full, { default: 2, full: 5 }), ctx.progress));
    return { tables: [calls, goLoadTable(await goLoad(ctx.home, sized(ctx.full, { default: 1, full: 3 }), PORT_BASE + 90))] };
  },
};

async function main(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-notify-'));
  try {
    const calls = notifyTable(notifyCost(home, Number(process.env.BENCH_ROUNDS ?? 5), (l) => process.stderr.write(l + '\n')));
    const load = goLoadTable(await goLoad(home, Number(process.env.BENCH_SECONDS ?? 2), PORT_BASE + 90));
    for (const t of [calls, load]) process.stdout.write([t.title, t.head.join(' | '), ...t.rows.map((r) => r.join(' | '))].join('\n') + '\n\n');
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

if (process.argv[1] && basename(process.argv[1]) === 'notify.js') void main();
