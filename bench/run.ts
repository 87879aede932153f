/**
 * `npm run bench [-- --full]`: every stage in STAGES, one after another,
 * each measuring natively (or directly) and under appshot in the same run
 * and reporting ratios against the targets (bench/targets.ts). The default
 * run takes fewer rounds and smaller sizes so that it ends within 5
 * minutes on 2 cores; --full takes every size and round (about 20). Each
 * stage prints one line saying what it measures before it starts, and the
 * seconds it took after; the per-call stage a line per round.
 *
 * Results go to bench/results/<date>.json with a markdown summary and an
 * SVG chart beside it (bench/report.ts); a later run of the same day
 * writes <date>-2, -3, ... and never overwrites one (bench/results.ts).
 *
 * A new bench file joins both runs by exporting a Stage (bench/stage.ts),
 * with its own default and --full sizes, and being added to STAGES below.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH } from '../ts/paths.js';
import { IPC_TYPES, type IpcType } from '../ts/sysv/ipctype.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { allocStage } from './alloc.js';
import { callsStage } from './calls.js';
import { checkpointStage } from './checkpoint.js';
import { cloneStage } from './clone.js';
import { cowStage } from './cow.js';
import { infoStage } from './info.js';
import { inspectorStage } from './inspect.js';
import { lookupStage } from './lookup.js';
import { notifyStage } from './notify.js';
import { poolStage } from './pool.js';
import type { Results } from './figures.js';
import { chart, markdown, printTables } from './report.js';
import { RESULTS_DIR, writeResults } from './results.js';
import { serveStage } from './serve.js';
import { snapshotStage } from './snapshot.js';
import type { BenchContext, Stage, StageFigures } from './stage.js';

/** The stages, in the order they run. */
const STAGES: Stage[] = [callsStage, poolStage, snapshotStage, checkpointStage, cowStage, cloneStage, serveStage, infoStage, lookupStage, allocStage, inspectorStage, notifyStage];

const USAGE = 'usage: npm run bench [-- --full] [-- --stage NAME[,NAME...]]   (node dist/bench/run.js [--full] [--stage NAMES])';

/** `--stage a,b`: only those stages, printed and not written to the results
 * (a day's results are whole runs). */
function chosenStages(args: string[]): Stage[] | string {
  const at = args.indexOf('--stage');
  if (at < 0) return STAGES;
  const names = (args[at + 1] ?? '').split(',').filter(Boolean);
  if (!names.length) return `--stage needs the stages' names: ${STAGES.map((s) => s.name).join(', ')}`;
  const unknown = names.find((n) => !STAGES.some((s) => s.name === n));
  if (unknown) return `no stage named ${unknown}; the stages: ${STAGES.map((s) => s.name).join(', ')}`;
  return STAGES.filter((s) => names.includes(s.name));
}

const ipcIds = () => new Map(IPC_TYPES.map((t) => [t, new Set(kernelObjects(t).keys())]));

/** Kernel objects there now that were not before the bench: `ipcs -a`
 * must end as it began. */
function leftovers(before: Map<IpcType, Set<number>>): string[] {
  const now = ipcIds();
  return IPC_TYPES.flatMap((t) => [...now.get(t)!].filter((id) => !before.get(t)!.has(id)).map((id) => `${t} ${id}`));
}

/** A stage's figures into the results; scale one level down. */
function merge(into: Partial<Results>, part: StageFigures): void {
  const { scale, tables, ...rest } = part;
  Object.assign(into, rest);
  if (scale) into.scale = { ...into.scale, ...scale } as Results['scale'];
  if (tables) into.tables = [...(into.tables ?? []), ...tables];
}

const line = (s: string) => process.stderr.write(s + '\n');

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const unknown = args.filter((a, i) => a !== '--full' && a !== '--stage' && args[i - 1] !== '--stage');
  if (unknown.length) {
    line(`appshot bench: unknown argument ${unknown[0]}\n${USAGE}`);
    process.exit(2);
  }
  const stages = chosenStages(args);
  if (typeof stages === 'string') {
    line(`appshot bench: ${stages}\n${USAGE}`);
    process.exit(2);
  }
  const some = stages !== STAGES;
  const full = args.includes('--full');
  const before = ipcIds();
  const started = performance.now();
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-'));
  const results: Partial<Results> = { date: new Date().toISOString(), full, stages: [] };
  line(`appshot bench, ${full ? '--full: every size and round' : 'the default run (--full for every size and round)'}: ${stages.length} stages${some ? ' (--stage: printed, not written to the results)' : ''}`);
  try {
    for (const [i, stage] of stages.entries()) {
      const measures = stage.describe(full);
      line(`[${i + 1}/${stages.length}] ${stage.name}: ${measures}`);
      const t0 = performance.now();
      const ctx: BenchContext = { full, home, progress: (s) => line(`  ${stage.name}: ${s}`) };
      merge(results, await stage.run(ctx));
      const seconds = (performance.now() - t0) / 1000;
      results.stages!.push({ name: stage.name, measures, seconds });
      line(`  ${stage.name}: done in ${seconds.toFixed(0)} s (${((performance.now() - started) / 1000).toFixed(0)} s in all)`);
    }
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  }
  const r = results as Results;
  process.stdout.write(printTables(r));
  if (some) return void failOnLeftovers(before);
  const base = writeResults(RESULTS_DIR, r.date.slice(0, 10), (name) => ({
    json: JSON.stringify(r, null, 2) + '\n',
    md: markdown(r, `${name}.svg`),
    svg: chart(r),
  }));
  process.stdout.write(`results written to ${base}.json, .md and .svg; the bench took ${((performance.now() - started) / 60000).toFixed(1)} minutes\n`);

  failOnLeftovers(before);
}

function failOnLeftovers(before: Map<IpcType, Set<number>>): void {
  const left = leftovers(before);
  if (left.length)
    throw new Error(`the bench left kernel objects behind (or something else on the host made them meanwhile): ${left.join(', ')}`);
}

await main();
