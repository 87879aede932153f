/**
 * Allocation rate: 1, 8 and 64 processes creating semaphore sets at once
 * (allocbench), natively and under the shim in the same round, as total
 * allocations per second. Under the shim all the processes are one
 * application: that is where two allocators could be handed one virtual
 * ID (the table write lock is host-wide, so 64 applications would cost the
 * same and could not collide at all). The application runs --no-identity,
 * so every virtual ID comes from its shared counter rather than being the
 * kernel's own (unique) ID. After each 64-process run, with its last wave
 * of sets still alive, the tables are checked: `appshot tables --verify`,
 * and the application's rows read back with --json must be exactly the
 * sets the processes hold, each virtual and each system ID once.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import type { AllocFigures, AllocRun, ScaleAlloc } from './figures.js';
import { type Stage, sized } from './stage.js';
import { ALLOCATION } from './targets.js';

const PROCS = [1, 8, 64];
/** Rounds, and seconds each process count allocates each way. */
const SIZES = { default: { rounds: 1, seconds: 1 }, full: { rounds: 3, seconds: 2 } };
/** Sets alive at once, in all: a quarter of the kernel's default SEMMNI
 * (32000, host-wide), leaving the rest to everything else. */
const LIVE = 8192;
/** Only the 64-process run is checked: the one the issue sets the bound on. */
const CHECKED = 64;


function parse(out: string, what: string): AllocRun {
  const r: AllocRun = JSON.parse(out);
  if (r.problems.length) throw new Error(`allocbench ${what}: ${r.problems.join('; ')}`);
  return r;
}

function native(procs: number, seconds: number): AllocRun {
  const r = spawnSync(builtProgram('allocbench'), [String(procs), String(seconds), String(LIVE)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`allocbench ${procs} natively failed (${r.status}): ${r.stdout}${r.stderr}`);
  return parse(r.stdout, `${procs} natively`);
}

function appshot(home: string, args: string[]) {
  return spawnSync(process.execPath, [CLI_PATH, ...args], { env: { ...process.env, APPSHOT_HOME: home }, encoding: 'utf8', maxBuffer: 1 << 28 });
}

/** The application's semaphore rows must be exactly its live sets: as many
 * rows as sets, no virtual and no system ID twice. Throws if not. */
function checkTables(home: string, aid: string, live: number): void {
  // FOR THE INSPECTOR: `appshot tables --verify` checks forward against
  // reverse rows, and every row against the kernel; it must pass too.
  const verify = appshot(home, ['tables', '--verify']);
  if (verify.status !== 0) throw new Error(`after ${CHECKED} processes allocating at once, appshot tables --verify failed (${verify.status}):\n${verify.stdout}${verify.stderr}`);
  const r = appshot(home, ['tables', '--aid', aid, '--type', 'sem', '--json']);
  if (r.status !== 0) throw new Error(`appshot tables --json failed (${r.status}): ${r.stderr}`);
  const rows: { virtual: number; system: number }[] = JSON.parse(r.stdout);
  const vrids = new Set(rows.map((x) => x.virtual));
  const srids = new Set(rows.map((x) => x.system));
  if (rows.length !== live || vrids.size !== live || srids.size !== live)
    throw new Error(
      `after ${CHECKED} processes allocating at once, ${aid} holds ${live} sets but has ${rows.length} rows, ` +
        `${vrids.size} distinct virtual IDs and ${srids.size} distinct system IDs: two processes were handed one ID`,
    );
}

/** Under the shim; the checked run holds its last wave alive until the
 * tables have been checked. */
async function shim(home: string, procs: number, round: number, seconds: number): Promise<AllocRun> {
  const aid = `alloc-${procs}-${round}`;
  const hold = procs === CHECKED;
  const args = [CLI_PATH, 'run', '--no-identity', '--aid', aid, '--', builtProgram('allocbench'), String(procs), String(seconds), String(LIVE), ...(hold ? ['--hold'] : [])];
  const app: ChildProcess = spawn(process.execPath, args, { env: { ...process.env, APPSHOT_HOME: home }, stdio: ['pipe', 'pipe', 'inherit'] });
  const ended = new Promise<number | null>((resolve) => app.on('close', resolve));
  const lines = createInterface({ input: app.stdout! })[Symbol.asyncIterator]();
  let line: string | undefined;
  try {
    line = (await lines.next()).value;
    if (line === undefined) throw new Error(`allocbench ${procs} under the shim printed nothing (exit ${await ended})`);
    const run = parse(line, `${procs} under the shim`);
    if (hold) checkTables(home, aid, run.live);
    return run;
  } finally {
    app.stdin!.end(); // lets the last wave go
    const status = await ended;
    if (status !== 0 && line !== undefined) throw new Error(`allocbench ${procs} under the shim failed (${status})`);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Per process count, the median rate each way over the rounds, the two
 * sides alternating so that drift in the machine hits both alike. */
export async function allocationRate(rounds: number, seconds: number): Promise<AllocFigures[]> {
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-alloc-'));
  const rates = PROCS.map(() => ({ native: [] as number[], shim: [] as number[] }));
  try {
    for (let round = 0; round < rounds; round++)
      for (const [i, procs] of PROCS.entries()) {
        rates[i].native.push(native(procs, seconds).per_second);
        rates[i].shim.push((await shim(home, procs, round, seconds)).per_second);
      }
  } finally {
    appshot(home, ['gc', '--kept']);
    rmSync(home, { recursive: true, force: true });
  }
  return PROCS.map((procs, i) => {
    const nativePerSecond = median(rates[i].native);
    const shimPerSecond = median(rates[i].shim);
    return { procs, seconds, nativePerSecond, shimPerSecond, ratio: nativePerSecond / shimPerSecond, tablesChecked: procs === CHECKED };
  });
}

export const allocStage: Stage = {
  name: 'alloc',
  describe(full) {
    const { rounds, seconds } = sized(full, SIZES);
    return `allocation rate of ${PROCS.join(', ')} processes of one application at once, natively and under the shim (${rounds} round${rounds === 1 ? '' : 's'} of ${seconds} s each way; the ${CHECKED}-process run's tables checked)`;
  },
  async run(ctx) {
    const { rounds, seconds } = sized(ctx.full, SIZES);
    return { scale: { allocation: (await allocationRate(rounds, seconds)).map(bound) } };
  },
};

/** The issue bounds the allocation rate at one process count, as a share
 * of the native rate beside it. */
function bound(f: AllocFigures): ScaleAlloc {
  if (f.procs !== ALLOCATION.procs) return { ...f, targetPerSecond: null, met: null };
  const targetPerSecond = ALLOCATION.shareOfNative * f.nativePerSecond;
  return { ...f, targetPerSecond, met: f.shimPerSecond >= targetPerSecond };
}
