/**
 * `node dist/bench/cow.js`: what giving memory back costs in a process
 * restored with its pages mapped from the image (`appshot restore
 * --map-pages`, warm clones), where the shim traps madvise and answers as
 * over anonymous memory (native/shim/memory.c). In one run, alternating
 * round by round: cowbench (bench/native/cowbench.c) natively, under the
 * shim (not restored: it must pay nothing new), restored with copied memory
 * (no filter added) and restored with mapped memory. Medians of ROUNDS
 * rounds (BENCH_COW_ROUNDS, default 5). Prints a table; --json the figures.
 * Also a stage of `npm run bench` (cowStage: 3 rounds, 5 with --full).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { appshot, cliEnv } from './app.js';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import type { ReportTable } from './figures.js';
import { type Stage, sized } from './stage.js';

const ROUNDS = Number(process.env.BENCH_COW_ROUNDS ?? 5);
const COWBENCH = builtProgram('cowbench');
const MB = '32';
type Side = 'native' | 'shim' | 'copied' | 'mapped';
const SIDES: Side[] = ['native', 'shim', 'copied', 'mapped'];
const METRICS = ['dontneed_first', 'dontneed_again', 'dontneed_fresh', 'willneed'] as const;
type Sample = Record<(typeof METRICS)[number], number>;

const cli = (home: string, args: string[]): string => appshot(home, args).stdout;

function figures(out: string, what: string): Sample {
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`cowbench (${what}) printed no figures: ${out.slice(-400)}`);
  return JSON.parse(line);
}

/** An appshot command started: resolves with its stdout once it ends. */
function started(home: string, args: string[]): { out: () => string; done: Promise<string> } {
  const c = spawn(process.execPath, [CLI_PATH, ...args], { env: cliEnv(home), stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  return { out: () => out, done: new Promise((resolve) => c.on('close', () => resolve(out))) };
}

async function until(read: () => string, re: RegExp): Promise<void> {
  const end = Date.now() + 30_000;
  while (!re.test(read())) {
    if (Date.now() > end) throw new Error(`cowbench: timed out waiting for ${re}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One round: each side once. The restored sides from one snapshot. */
async function round(home: string, i: number): Promise<Record<Side, Sample>> {
  const made = join(home, `made-${i}`);
  writeFileSync(made, '');
  const native = spawnSync(COWBENCH, [made, MB], { encoding: 'utf8' });
  const shim = cli(home, ['run', '--aid', `cow-shim-${i}`, '--', COWBENCH, made, MB]);
  const later = join(home, `later-${i}`);
  const orig = started(home, ['run', '--aid', `cow-${i}`, '--', COWBENCH, later, MB]);
  await until(orig.out, /^tick 3$/m);
  const file = join(home, `cow-${i}.snap`);
  cli(home, ['snapshot', `cow-${i}`, '-o', file, '--stop']);
  await orig.done;
  writeFileSync(later, ''); // the restored measure at once
  const copied = await started(home, ['restore', file, '--aid', `cow-${i}-c`]).done;
  const mapped = await started(home, ['restore', file, '--aid', `cow-${i}-m`, '--map-pages']).done;
  rmSync(file);
  return {
    native: figures(native.stdout, 'native'),
    shim: figures(shim, 'shim'),
    copied: figures(copied, 'restored, copied'),
    mapped: figures(mapped, 'restored, mapped'),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export type CowFigures = { metric: string } & Record<Side, number>;

export async function cowCost(home: string, rounds = ROUNDS): Promise<CowFigures[]> {
  const samples: Record<Side, Sample>[] = [];
  for (let i = 0; i < rounds; i++) {
    process.stderr.write(`cow: round ${i + 1} of ${rounds}\n`);
    samples.push(await round(home, i));
  }
  return METRICS.map((metric) => ({
    metric,
    ...(Object.fromEntries(SIDES.map((s) => [s, median(samples.map((r) => r[s][metric]))])) as Record<Side, number>),
  }));
}

const HEAD = ['madvise, one page', 'native', 'shim, not restored', 'restored, copied', 'restored, mapped', 'mapped / native'];

function rowsOf(rows: CowFigures[]): string[][] {
  const ns = (x: number) => `${x.toFixed(0)} ns`;
  return rows.map((f) => [f.metric, ns(f.native), ns(f.shim), ns(f.copied), ns(f.mapped), (f.mapped / f.native).toFixed(2)]);
}

export function cowReportTable(rows: CowFigures[]): ReportTable {
  return {
    title: `Giving memory back in a restored process (${MB} MiB, one page a call): mapped from the image, the shim traps madvise and answers as anonymous memory; the other sides pay nothing new`,
    head: HEAD,
    rows: rowsOf(rows),
  };
}

export const cowStage: Stage = {
  name: 'cow',
  describe(full) {
    return `madvise(MADV_DONTNEED) per page natively, under the shim, restored copied and restored with --map-pages (${sized(full, { default: 3, full: 5 })} rounds)`;
  },
  async run(ctx) {
    return { tables: [cowReportTable(await cowCost(ctx.home, sized(ctx.full, { default: 3, full: 5 })))] };
  },
};

async function main(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-cow-'));
  let rows: CowFigures[];
  try {
    rows = await cowCost(home);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
  if (process.argv.includes('--json')) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return;
  }
  const head = HEAD;
  const table = rowsOf(rows);
  const width = head.map((h, c) => Math.max(h.length, ...table.map((r) => r[c].length)));
  for (const r of [head, ...table]) process.stdout.write(r.map((x, c) => x.padEnd(width[c])).join('  ') + '\n');
}

if (process.argv[1] && basename(process.argv[1]) === 'cow.js') await main();
