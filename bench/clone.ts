/**
 * Cloning a template holding 256 MiB of shared memory marked shared and 16
 * MiB marked duplicate, N = 1, 10 and 50 clones at once: how long each
 * clone takes to be ready (every object made and filled, its first process
 * started), and how much of that is copying its duplicate, as the clone
 * command itself reports them (Node's start-up left out).
 *
 * Warm clones (issue 19): a template of a whole snapshot of ckptmem (MB of
 * written memory, every page read once a tick), cloned warm: ready (its
 * processes running their next instruction) against a cold start of the
 * same program reaching the same state (its memory written, first tick);
 * N clones that only read their memory, their PSS summed against one
 * instance's RSS; clones per second of a 50 MB process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import { appshot, startApp } from './app.js';
import { type Stage, sized } from './stage.js';
import type { CloneFigures, ReportTable } from './figures.js';

const SHARED_MIB = 256;
const DUP_MIB = 16;
export const CLONE_COUNTS = [1, 10, 50];
/** Rounds of each clone count (the median round is kept). */
const ROUNDS = { default: 1, full: 3 };


const spread = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};

/** The warmed-up application, snapshotted with --stop into file. */
async function warm(home: string, file: string): Promise<void> {
  const { ended } = await startApp(home, 'template-bench', builtProgram('templatebench'), [String(SHARED_MIB), String(DUP_MIB)]);
  appshot(home, ['snapshot', 'template-bench', '--ipc-only', '-o', file, '--stop']);
  await ended;
}

/** N clones of template tb, each sleeping until the clone command is told to end. */
async function cloneOnce(home: string, n: number): Promise<CloneFigures> {
  const h = spawn(process.execPath, [CLI_PATH, 'template', 'clone', 'tb', '-n', String(n), '--', 'sleep', '600'], {
    env: { ...process.env, APPSHOT_HOME: home },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const ended = new Promise((r) => h.on('close', r));
  const total = await new Promise<number>((resolve, reject) => {
    h.stderr!.on('data', (d: Buffer) => {
      err += d;
      const m = / running, made in ([\d.]+) s/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    h.on('close', (code) => reject(new Error(`template clone ended early (${code}): ${err}`)));
  });
  h.kill('SIGTERM');
  await ended;
  const ready: number[] = [];
  const copy: number[] = [];
  for (const m of err.matchAll(/ready in ([\d.]+) ms \(copying ([\d.]+) ms of it\)/g)) {
    ready.push(Number(m[1]));
    copy.push(Number(m[2]));
  }
  if (ready.length !== n) throw new Error(`expected ${n} clones ready, saw ${ready.length}: ${err}`);
  return {
    clones: n,
    sharedMiB: SHARED_MIB,
    duplicateMiB: DUP_MIB,
    totalSeconds: total,
    readyMs: spread(ready),
    copyMs: spread(copy),
    overheadMs: spread(ready.map((r, i) => r - copy[i])),
  };
}

/** The median round (by total time) of each clone count. */
export async function cloneTimes(home: string, rounds: number): Promise<CloneFigures[]> {
  const file = join('/dev/shm', `appshot-bench-template-${process.pid}.snap`);
  try {
    await warm(home, file);
    appshot(home, ['template', 'create', 'tb', '--from', file]);
    const figures: CloneFigures[] = [];
    for (const n of CLONE_COUNTS) {
      const runs: CloneFigures[] = [];
      for (let i = 0; i < rounds; i++) runs.push(await cloneOnce(home, n));
      runs.sort((a, b) => a.totalSeconds - b.totalSeconds);
      figures.push(runs[Math.floor(runs.length / 2)]);
    }
    return figures;
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'template', 'rm', '--force', 'tb'], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
    rmSync(file, { force: true });
  }
}

/* --- warm clones ----------------------------------------------------------- */

/** The targets. */
export const WARM_TARGETS = { readyMs: 20, pssRatio: 1.5, perSecond: 100 };
const WARM_SIZES = {
  default: { readyMib: 200, rounds: 3, readers: 10, readerMib: 200, rate: 20, rateMib: 50 },
  full: { readyMib: 200, rounds: 7, readers: 50, readerMib: 200, rate: 100, rateMib: 50 },
};
type WarmSizes = (typeof WARM_SIZES)['default'];

export interface WarmFigures {
  readyMib: number;
  /** Warm: from starting to make the clone to its processes running (the clone command's own figure), median and max. */
  warmReadyMs: { p50: number; max: number };
  /** Of that, the restorer's own time (appshot-checkpoint's total), and making the clone's objects, rows and leases. */
  restorerMs: { p50: number; max: number };
  makeMs: { p50: number; max: number };
  /** Cold: the clone command's ready (first process started) plus until its first tick (memory written). */
  coldMs: { p50: number; max: number };
  readers: number;
  readerMib: number;
  /** One instance's RSS before the snapshot, and the readers' PSS summed, in MiB. */
  oneRssMib: number;
  totalPssMib: number;
  rateClones: number;
  rateMib: number;
  /** From the first clone begun to the last one running (the command's own figure). */
  rateSeconds: number;
}

const median = (xs: number[]) => spread(xs);

/** ckptmem MIB (a tick a second) run, snapshotted whole with --stop into a
 * file of its own, made template name; its RSS (kB) before the snapshot. */
async function warmTemplate(home: string, name: string, mib: number): Promise<{ rssKb: number; file: string }> {
  const file = join('/dev/shm', `appshot-bench-warm-${name}-${process.pid}.snap`);
  const app = spawn(process.execPath, [CLI_PATH, 'run', '--aid', `${name}-src`, '--', builtProgram('ckptmem'), String(mib), '1000'], {
    env: { ...process.env, APPSHOT_HOME: home },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ended = new Promise((r) => app.on('close', r));
  const pid = await new Promise<number>((resolve, reject) => {
    app.stdout!.on('data', (d: Buffer) => {
      const m = /tick (\d+) /.exec(d.toString());
      if (m) resolve(Number(m[1]));
    });
    app.on('close', (code) => reject(new Error(`ckptmem ${mib} ended early (${code})`)));
  });
  const rssKb = rollupKb(pid, 'Rss');
  appshot(home, ['snapshot', `${name}-src`, '-o', file, '--stop']);
  await ended;
  try {
    appshot(home, ['template', 'create', name, '--from', file]);
  } finally {
    rmSync(file, { force: true }); // the template keeps its own copy
  }
  return { rssKb, file };
}

function rollupKb(pid: number, field: 'Rss' | 'Pss'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** `template clone name -n n [--cold]` until every clone runs; what it
 * printed, and a way to end it. */
async function cloneRun(home: string, name: string, n: number, cold: boolean, untilTick = false) {
  const h = spawn(process.execPath, [CLI_PATH, 'template', 'clone', name, '-n', String(n), '--json', ...(cold ? ['--cold'] : [])], {
    env: { ...process.env, APPSHOT_HOME: home, APPSHOT_CKPT_TIMES: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  let runningAt = 0;
  let tickAt = 0;
  const ended = new Promise((r) => h.on('close', r));
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (!runningAt && / running, made in [\d.]+ s/.test(err)) runningAt = performance.now();
      if (runningAt && out.includes('{"template"') && out.slice(out.indexOf('{"template"')).includes('\n') && (!untilTick || tickAt)) resolve();
    };
    h.stderr!.on('data', (d: Buffer) => ((err += d), check()));
    h.stdout!.on('data', (d: Buffer) => {
      out += d;
      if (!tickAt && /^tick /m.test(out)) tickAt = performance.now();
      check();
    });
    h.on('close', (code) => reject(new Error(`template clone ${name} ended early (${code}): ${err}`)));
  });
  const summary = JSON.parse(out.split('\n').find((l) => l.startsWith('{"template"'))!) as { clones: { aid: string; readyMs: number; makeMs: number }[] };
  const readyLineAt = runningAt; // the ready lines come just before "running"
  return {
    err,
    summary,
    /** From the clone's ready (its first process started) to its first tick. */
    tickAfterMs: tickAt ? tickAt - readyLineAt : 0,
    madeSeconds: Number(/ running, made in ([\d.]+) s/.exec(err)![1]),
    restorerMs: [...err.matchAll(/restore: .* total ([\d.]+) ms/g)].map((m) => Number(m[1])),
    async end() {
      h.kill('SIGTERM');
      await ended;
    },
  };
}

/** The clones' processes (the ckptmem of each), by `appshot ps`. */
function clonePids(home: string, name: string): number[] {
  const ps = JSON.parse(appshot(home, ['ps', '--json']).stdout) as { aid: string; spid: number }[];
  return ps.filter((p) => p.aid.startsWith(`${name}-`) && !p.aid.endsWith('-src')).map((p) => p.spid);
}

export async function warmTimes(home: string, s: WarmSizes, progress?: (line: string) => void): Promise<WarmFigures> {
  try {
    progress?.(`warm: ready of a ${s.readyMib} MiB process (${s.rounds} rounds, warm and cold)`);
    await warmTemplate(home, 'wready', s.readyMib);
    const warm: number[] = [];
    const restorer: number[] = [];
    const make: number[] = [];
    const cold: number[] = [];
    for (let i = 0; i < s.rounds; i++) {
      const w = await cloneRun(home, 'wready', 1, false);
      warm.push(w.summary.clones[0].readyMs);
      make.push(w.summary.clones[0].makeMs);
      restorer.push(...w.restorerMs);
      await w.end();
      const c = await cloneRun(home, 'wready', 1, true, true);
      cold.push(c.summary.clones[0].readyMs + c.tickAfterMs);
      await c.end();
    }
    appshot(home, ['template', 'rm', 'wready']);

    progress?.(`warm: ${s.readers} clones of a ${s.readerMib} MiB process reading their memory`);
    const { rssKb } = await warmTemplate(home, 'wread', s.readerMib);
    const r = await cloneRun(home, 'wread', s.readers, false);
    await new Promise((res) => setTimeout(res, 2500)); // every clone has ticked (read every page) at least once
    const pss = clonePids(home, 'wread').reduce((n, pid) => n + rollupKb(pid, 'Pss'), 0);
    await r.end();
    appshot(home, ['template', 'rm', 'wread']);

    progress?.(`warm: ${s.rate} clones of a ${s.rateMib} MiB process, clones per second`);
    await warmTemplate(home, 'wrate', s.rateMib);
    const q = await cloneRun(home, 'wrate', s.rate, false);
    await q.end();
    appshot(home, ['template', 'rm', 'wrate']);
    return {
      readyMib: s.readyMib,
      warmReadyMs: median(warm),
      restorerMs: median(restorer),
      makeMs: median(make),
      coldMs: median(cold),
      readers: s.readers,
      readerMib: s.readerMib,
      oneRssMib: rssKb / 1024,
      totalPssMib: pss / 1024,
      rateClones: s.rate,
      rateMib: s.rateMib,
      rateSeconds: q.madeSeconds,
    };
  } finally {
    for (const n of ['wready', 'wread', 'wrate']) spawnSync(process.execPath, [CLI_PATH, 'template', 'rm', '--force', n], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
  }
}

const f1 = (x: number) => x.toFixed(1);
const verdictOf = (ok: boolean) => (ok ? 'met' : 'missed');

export function warmReportTable(w: WarmFigures): ReportTable {
  const t = WARM_TARGETS;
  const ratio = w.totalPssMib / w.oneRssMib;
  const perSecond = w.rateClones / w.rateSeconds;
  return {
    title: `Warm clones (issue 19): a template of a whole snapshot of ckptmem, each clone continuing it, memory mapped copy-on-write from the template's image; times are the clone command's own (Node's start left out); cold: the same program started again until its memory is written`,
    head: ['measure', 'warm', 'cold', 'target', ''],
    rows: [
      [`ready, ${w.readyMib} MiB resident (p50 / max)`, `${f1(w.warmReadyMs.p50)} / ${f1(w.warmReadyMs.max)} ms (make ${f1(w.makeMs.p50)} ms, restorer ${f1(w.restorerMs.p50)} ms)`, `${f1(w.coldMs.p50)} / ${f1(w.coldMs.max)} ms`, `≤ ${t.readyMs} ms`, verdictOf(w.warmReadyMs.p50 <= t.readyMs)],
      [`${w.readers} clones of ${w.readerMib} MiB reading it: total PSS / one RSS`, `${f1(w.totalPssMib)} / ${f1(w.oneRssMib)} MiB = ${ratio.toFixed(2)}x`, `${w.readers}x`, `≤ ${t.pssRatio}x`, verdictOf(ratio <= t.pssRatio)],
      [`clones per second, ${w.rateMib} MiB (${w.rateClones} made)`, `${f1(perSecond)}/s (${w.rateSeconds.toFixed(2)} s)`, '-', `≥ ${t.perSecond}/s`, verdictOf(perSecond >= t.perSecond)],
    ],
  };
}

export const cloneStage: Stage = {
  name: 'clone',
  describe(full) {
    const w = sized(full, WARM_SIZES);
    return `cloning a template of ${SHARED_MIB} MiB shared and ${DUP_MIB} MiB duplicate: ${CLONE_COUNTS.join(', ')} clones (${sized(full, ROUNDS)} round${sized(full, ROUNDS) === 1 ? '' : 's'} each); warm clones: ready at ${w.readyMib} MiB (${w.rounds} rounds, against cold), ${w.readers} clones reading ${w.readerMib} MiB (PSS), ${w.rate} clones of ${w.rateMib} MiB (clones/s)`;
  },
  async run(ctx) {
    const clone = await cloneTimes(ctx.home, sized(ctx.full, ROUNDS));
    const warm = await warmTimes(ctx.home, sized(ctx.full, WARM_SIZES), ctx.progress);
    return { clone, tables: [warmReportTable(warm)] };
  },
};

/** `node dist/bench/clone.js --warm [--full]`: the warm clones alone, printed. */
if (process.argv[1]?.endsWith('clone.js') && process.argv.includes('--warm')) {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-warm-'));
  try {
    const w = await warmTimes(home, sized(process.argv.includes('--full'), WARM_SIZES), (l) => process.stderr.write(l + '\n'));
    const t = warmReportTable(w);
    process.stdout.write(`${t.title}\n${[t.head, ...t.rows].map((r) => r.join(' | ')).join('\n')}\n${JSON.stringify(w)}\n`);
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'gc', '--kept'], { env: { ...process.env, APPSHOT_HOME: home }, stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  }
}
