/**
 * Translation lookup at scale: lookupbench runs under appshot in an
 * application holding 1,000 semaphore mappings of its own (vrid 1..1000,
 * written by tablefill), and measures at 1k mappings in the tables, then
 * again after tablefill added other applications' rows up to 100k and 1M.
 * Each figure is absolute (a lookup has no native counterpart): p50 and
 * p99 of a hot lookup (a working set in the per-thread cache) and of a
 * cold one (right after a commit: an LMDB read). Every round starts from
 * fresh tables in a home of its own.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import type { ScaleLookup } from './report.js';
import { type Stage, sized } from './stage.js';
import { LOOKUP_AT_SCALE } from './targets.js';

const OWN = 1000;
/** Rounds, each from fresh tables filled to every size. */
const ROUNDS = { default: 1, full: 3 };
const ROWS_PER_APP = 1000;
/** Each size, as the number of other applications filled beside our own. */
const SIZES = [
  { mappings: 1_000, label: '1k', others: 0 },
  { mappings: 100_000, label: '100k', others: 99 },
  { mappings: 1_000_000, label: '1M', others: 999 },
];

export interface Percentiles {
  p50: number;
  p99: number;
}
export interface LookupFigures {
  mappings: number;
  label: string;
  hot: Percentiles & { mean: number };
  cold: Percentiles;
  /** The seconds tablefill took to write the rows added for this size. */
  fillSeconds: number;
  /** The resolution of a single timing: percentiles are multiples of it. */
  timerStepNs: number;
}

function tablefill(args: string[]): number {
  const r = spawnSync(builtProgram('tablefill'), args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tablefill ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout).seconds;
}

async function oneRound(round: number): Promise<LookupFigures[]> {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-lookup-'));
  const aid = `lookup-${round}`;
  const env = { ...process.env, APPSHOT_HOME: home };
  const app = spawn(process.execPath, [CLI_PATH, 'run', '--aid', aid, '--', builtProgram('lookupbench')], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const ended = new Promise<number | null>((resolve) => app.on('close', resolve));
  const lines = createInterface({ input: app.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`lookupbench under appshot ended early (exit ${await ended})`);
    return value;
  };
  const figures: LookupFigures[] = [];
  try {
    if ((await next()) !== 'ready') throw new Error('lookupbench did not start');
    let fillSeconds = tablefill([home, '--aid', aid, String(OWN)]);
    let others = 0;
    for (const size of SIZES) {
      if (size.others > others) fillSeconds += tablefill([home, String(size.others - others), String(ROWS_PER_APP), `fill${size.label}`]);
      others = size.others;
      app.stdin!.write(size.label + '\n');
      const r = JSON.parse(await next());
      figures.push({ mappings: size.mappings, label: size.label, hot: r.hot, cold: r.cold, fillSeconds, timerStepNs: r.timer_step });
      fillSeconds = 0;
    }
  } finally {
    app.stdin!.end();
    await ended;
    rmSync(home, { recursive: true, force: true });
  }
  return figures;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Per size, the median of each figure over the rounds. */
export async function lookupAtScale(rounds: number): Promise<LookupFigures[]> {
  const runs: LookupFigures[][] = [];
  for (let i = 0; i < rounds; i++) runs.push(await oneRound(i));
  return SIZES.map((size, s) => {
    const of = (pick: (f: LookupFigures) => number) => median(runs.map((r) => pick(r[s])));
    return {
      mappings: size.mappings,
      label: size.label,
      hot: { p50: of((f) => f.hot.p50), p99: of((f) => f.hot.p99), mean: of((f) => f.hot.mean) },
      cold: { p50: of((f) => f.cold.p50), p99: of((f) => f.cold.p99) },
      fillSeconds: of((f) => f.fillSeconds),
      timerStepNs: of((f) => f.timerStepNs),
    };
  });
}

export const lookupStage: Stage = {
  name: 'lookup',
  describe(full) {
    return `translation lookup, hot and cold, with ${SIZES.map((s) => s.label).join(', ')} mappings in the tables (${sized(full, ROUNDS)} round${sized(full, ROUNDS) === 1 ? '' : 's'}, tables of its own)`;
  },
  async run(ctx) {
    return { scale: { lookups: (await lookupAtScale(sized(ctx.full, ROUNDS))).map(bound) } };
  },
};

/** The issue bounds the lookup at one size. */
function bound(f: LookupFigures): ScaleLookup {
  if (f.mappings !== LOOKUP_AT_SCALE.mappings) return { ...f, target: null, met: null };
  const target = { p50Ns: LOOKUP_AT_SCALE.p50Ns, p99Ns: LOOKUP_AT_SCALE.p99Ns };
  return { ...f, target, met: f.hot.p50 <= target.p50Ns && f.hot.p99 <= target.p99Ns };
}
