/**
 * Whole-process snapshot and restore (issue 18) of a program holding 10 MB
 * and 100 MB of written private memory (1 GB too with --full), against a
 * cold start of the same program building the same state, natively and
 * under `appshot run`, in the same run:
 *
 *   - the pause the program sees while `appshot snapshot` runs (it wakes
 *     every millisecond and logs any gap over 5 ms: bench/native/ckptbench.c);
 *   - the snapshot's time (the command's own figure when it prints one with
 *     --json, and the command's wall time) and the rate it writes memory at,
 *     the image on /dev/shm;
 *   - restore to running: from starting `appshot restore` to the restored
 *     program's first wake-up (its first log line after the restore), which
 *     includes Node's start-up of the command; and the command's own
 *     figure from its --json line;
 *   - cold start: from starting the program to its "ready", natively and
 *     under `appshot run`, with the time it spent building the state.
 *
 * Needs the whole-process engine (build/Release/appshot-checkpoint): without
 * it, says so and measures the cold starts alone.
 *
 * A stage of `npm run bench` (10 and 100 MB, 2 rounds; --full adds 1 GB
 * and takes 3 rounds), or alone:
 *   node dist/bench/checkpoint.js [--full]     (BENCH_ROUNDS rounds, default 3)
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI_PATH, ROOT, builtProgram } from '../ts/paths.js';
import type { CheckpointFigures, ReportTable } from './figures.js';
import { type Stage, sized } from './stage.js';

const MIB = 2 ** 20;
/** The targets, at 100 MB. */
export const CHECKPOINT_TARGETS = { pauseMs: 150, restoreMs: 50, writeGBps: 1.5 };


export const ENGINE_PATH = builtProgram('appshot-checkpoint');

export function engineBuilt(): boolean {
  return existsSync(ENGINE_PATH);
}

const env = (home: string) => ({ ...process.env, APPSHOT_HOME: home });

function appshot(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI_PATH, ...args], { env: env(home), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`appshot ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r;
}

/** The gap lines of a ckptbench log, in ms. */
function gaps(log: string): number[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('gap '))
    .map((l) => Number(l.slice(4)));
}

/** Starts argv and resolves, with the ms it took, once it printed "ready MS". */
function startReady(argv: string[], home: string | null): Promise<{ child: ChildProcess; ms: number; buildMs: number }> {
  const t0 = performance.now();
  const child = spawn(argv[0], argv.slice(1), { env: home ? env(home) : process.env, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /ready ([\d.]+)/.exec(out);
      if (m) resolve({ child, ms: performance.now() - t0, buildMs: Number(m[1]) });
    });
    child.on('close', (code) => reject(new Error(`${argv.join(' ')} ended before it was ready (${code})`)));
  });
}

function ended(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.on('close', () => resolve())));
}

/** Resolves with the ms since t0 once the log holds more than `lines` gap lines. */
async function nextGap(log: string, lines: number, t0: number, timeoutMs = 60_000): Promise<number> {
  for (;;) {
    if (gaps(log).length > lines) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`the restored program did not run within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function coldNative(mib: number, dir: string): Promise<{ ms: number; buildMs: number }> {
  const { child, ms, buildMs } = await startReady([builtProgram('ckptbench'), String(mib), join(dir, 'native.log')], null);
  child.kill('SIGKILL');
  await ended(child);
  return { ms, buildMs };
}

/** `appshot restore` of image (with --map-pages or not): from its start to
 * the program's first wake-up, and the command's own figure (its JSON line:
 * the image checked and the IPC state made, before the processes). */
async function restoreOnce(home: string, image: string, aid: string, log: string, mapPages: boolean): Promise<{ toRunningMs: number | null; ms: number | null }> {
  const seen = gaps(log).length;
  const r0 = performance.now();
  const args = [CLI_PATH, 'restore', image, '--aid', aid, '--json', ...(mapPages ? ['--map-pages'] : [])];
  const restored = spawn(process.execPath, args, { env: env(home), stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  restored.stdout!.on('data', (d: Buffer) => (out += d));
  try {
    const toRunningMs = await nextGap(log, seen, r0);
    for (let i = 0; i < 200 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 10));
    const first = out.split('\n')[0];
    const seconds = first.startsWith('{') ? Number(JSON.parse(first).seconds) : NaN;
    return { toRunningMs, ms: Number.isFinite(seconds) ? seconds * 1000 : null };
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'stop', aid, '-t', '5'], { env: env(home), stdio: 'ignore' });
    await ended(restored);
  }
}

/** One round at one size: cold starts, then (with the engine) snapshot of
 * the running program, its end, and a restore of the image. */
async function once(home: string, dir: string, mib: number, round: number): Promise<CheckpointFigures> {
  const native = await coldNative(mib, dir);
  const aid = `ckpt-bench-${mib}-${round}`;
  const log = join(dir, `${aid}.log`);
  const app = await startReady([process.execPath, CLI_PATH, 'run', '--aid', aid, '--', builtProgram('ckptbench'), String(mib), log], home);
  const figures: CheckpointFigures = {
    mib,
    coldNativeMs: native.ms,
    coldShimMs: app.ms,
    buildMs: app.buildMs,
    pauseMs: null,
    snapshotMs: null,
    snapshotWallMs: null,
    imageBytes: null,
    writeGBps: null,
    restoreToRunningMs: null,
    restoreMs: null,
    mappedToRunningMs: null,
    mappedMs: null,
  };
  if (!engineBuilt()) {
    appshot(home, ['stop', aid, '-t', '5']);
    await ended(app.child);
    return figures;
  }
  const image = join('/dev/shm', `appshot-ckpt-bench-${process.pid}-${mib}.snap`);
  try {
    await new Promise((r) => setTimeout(r, 100)); // a few quiet wake-ups first
    const before = gaps(log).length;
    const t0 = performance.now();
    const snap = appshot(home, ['snapshot', aid, '-o', image, '--json']);
    figures.snapshotWallMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50)); // the log line of the last gap
    figures.pauseMs = Math.max(0, ...gaps(log).slice(before));
    const seconds = Number(JSON.parse(snap.stdout).seconds);
    figures.snapshotMs = Number.isFinite(seconds) ? seconds * 1000 : null;
    figures.imageBytes = statSync(image).size;
    figures.writeGBps = (mib * MIB) / 1e9 / ((figures.snapshotMs ?? figures.snapshotWallMs) / 1000);
    appshot(home, ['stop', aid, '-t', '5']);
    await ended(app.child);

    const copied = await restoreOnce(home, image, `${aid}-r`, log, false);
    figures.restoreToRunningMs = copied.toRunningMs;
    figures.restoreMs = copied.ms;
    const mapped = await restoreOnce(home, image, `${aid}-m`, log, true);
    figures.mappedToRunningMs = mapped.toRunningMs;
    figures.mappedMs = mapped.ms;
  } finally {
    rmSync(image, { force: true });
  }
  return figures;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Sizes (MiB) and rounds of the default run and of --full. */
const SIZES = { default: { mibs: [10, 100], rounds: 2 }, full: { mibs: [10, 100, 1024], rounds: 3 } };

/** The median of each figure over the rounds, per size. */
export async function checkpointTimes(home: string, rounds: number, full: boolean, progress?: (line: string) => void): Promise<CheckpointFigures[]> {
  const dir = mkdtempSync(join(tmpdir(), 'appshot-ckpt-bench-'));
  try {
    const out: CheckpointFigures[] = [];
    for (const mib of sized(full, SIZES).mibs) {
      progress?.(`${mib} MiB, ${rounds} round(s)`);
      const runs: CheckpointFigures[] = [];
      for (let i = 0; i < rounds; i++) runs.push(await once(home, dir, mib, i));
      const pick = (k: keyof CheckpointFigures) => {
        const xs = runs.map((r) => r[k]).filter((x): x is number => typeof x === 'number');
        return xs.length ? median(xs) : null;
      };
      out.push({
        mib,
        coldNativeMs: pick('coldNativeMs')!,
        coldShimMs: pick('coldShimMs')!,
        buildMs: pick('buildMs')!,
        pauseMs: pick('pauseMs'),
        snapshotMs: pick('snapshotMs'),
        snapshotWallMs: pick('snapshotWallMs'),
        imageBytes: pick('imageBytes'),
        writeGBps: pick('writeGBps'),
        restoreToRunningMs: pick('restoreToRunningMs'),
        restoreMs: pick('restoreMs'),
        mappedToRunningMs: pick('mappedToRunningMs'),
        mappedMs: pick('mappedMs'),
      });
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (x: number | null, digits = 1) => (x === null ? '-' : x.toFixed(digits));

const HEAD = ['MiB', 'cold native ms', 'cold shim ms', 'build ms', 'pause ms', 'snapshot ms', 'snapshot wall ms', 'image MiB', 'GB/s', 'restore->running ms', 'restore ms', 'mapped: restore->running ms', 'mapped: restore ms'];

function rowsOf(figures: CheckpointFigures[]): string[][] {
  return figures.map((f) => [
    String(f.mib), fmt(f.coldNativeMs), fmt(f.coldShimMs), fmt(f.buildMs), fmt(f.pauseMs), fmt(f.snapshotMs), fmt(f.snapshotWallMs),
    f.imageBytes === null ? '-' : (f.imageBytes / MIB).toFixed(1), fmt(f.writeGBps, 2), fmt(f.restoreToRunningMs), fmt(f.restoreMs),
    fmt(f.mappedToRunningMs), fmt(f.mappedMs),
  ]);
}

/** The figures as a table of the bench's report (bench/report.ts). */
export function checkpointReportTable(figures: CheckpointFigures[]): ReportTable {
  const t = CHECKPOINT_TARGETS;
  return {
    title: `Whole-process snapshot and restore (targets at 100 MiB: pause <= ${t.pauseMs} ms, restore <= ${t.restoreMs} ms, >= ${t.writeGBps} GB/s to /dev/shm; restore->running includes Node's start of the command; restore ms is the command's own check of the image and its IPC state; mapped: with --map-pages)`,
    head: HEAD,
    rows: rowsOf(figures),
  };
}

export const checkpointStage: Stage = {
  name: 'checkpoint',
  describe(full) {
    const s = sized(full, SIZES);
    return `whole-process snapshot (pause, GB/s to /dev/shm) and restore to running of ${s.mibs.join(', ')} MiB of written memory against a cold start (${s.rounds} rounds each)${engineBuilt() ? '' : '; appshot-checkpoint is not built: cold starts only'}`;
  },
  async run(ctx) {
    const figures = await checkpointTimes(ctx.home, sized(ctx.full, SIZES).rounds, ctx.full, ctx.progress);
    return { checkpoint: figures, tables: [checkpointReportTable(figures)] };
  },
};

export function checkpointTable(figures: CheckpointFigures[]): string {
  const head = HEAD;
  const rows = rowsOf(figures);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  const at100 = figures.find((f) => f.mib === 100);
  const targets = at100 && at100.pauseMs !== null
    ? `\ntargets at 100 MiB: pause ${fmt(at100.pauseMs)} ms (<= ${CHECKPOINT_TARGETS.pauseMs}), restore ${fmt(at100.restoreMs)} ms by its own figure, ${fmt(at100.restoreToRunningMs)} ms to running with Node's start (<= ${CHECKPOINT_TARGETS.restoreMs}), ${fmt(at100.writeGBps, 2)} GB/s to /dev/shm (>= ${CHECKPOINT_TARGETS.writeGBps})\n`
    : '\n';
  return [line(head), ...rows.map(line)].join('\n') + targets;
}

async function main(): Promise<void> {
  const full = process.argv.includes('--full');
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  if (!engineBuilt())
    process.stderr.write(`appshot-checkpoint is not built (${ENGINE_PATH}): the whole-process snapshot engine of issue 18 is not in this tree, so only the cold starts are measured\n`);
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-ckpt-'));
  let figures: CheckpointFigures[];
  try {
    figures = await checkpointTimes(home, rounds, full);
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env: env(home), stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  }
  process.stdout.write(checkpointTable(figures));
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  // A later run of the same day gets the next name: none is overwritten.
  const day = new Date().toISOString().slice(0, 10);
  let file = join(dir, `${day}-checkpoint.json`);
  for (let n = 2; existsSync(file); n++) file = join(dir, `${day}-checkpoint-${n}.json`);
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), rounds, engine: engineBuilt(), targets: CHECKPOINT_TARGETS, figures }, null, 2) + '\n');
  process.stdout.write(`results written to ${file}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    process.stderr.write(`appshot bench: ${e instanceof Error ? e.message : e}\n`);
    process.exit(1);
  });
}
