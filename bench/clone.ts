/**
 * Cloning a template holding 256 MiB of shared memory marked shared and 16
 * MiB marked duplicate, N = 1, 10 and 50 clones at once: how long each
 * clone takes to be ready (every object made and filled, its first process
 * started), and how much of that is copying its duplicate, as the clone
 * command itself reports them (Node's start-up left out).
 */
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import { appshot, startApp } from './app.js';
import { type Stage, sized } from './stage.js';

const SHARED_MIB = 256;
const DUP_MIB = 16;
export const CLONE_COUNTS = [1, 10, 50];
/** Rounds of each clone count (the median round is kept). */
const ROUNDS = { default: 1, full: 3 };

export interface CloneFigures {
  clones: number;
  sharedMiB: number;
  duplicateMiB: number;
  /** From the first clone begun to the last one started. */
  totalSeconds: number;
  readyMs: { p50: number; max: number };
  copyMs: { p50: number; max: number };
  /** Ready less copy: what the target bounds. */
  overheadMs: { p50: number; max: number };
}

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

export const cloneStage: Stage = {
  name: 'clone',
  describe(full) {
    return `cloning a template of ${SHARED_MIB} MiB shared and ${DUP_MIB} MiB duplicate: ${CLONE_COUNTS.join(', ')} clones (${sized(full, ROUNDS)} round${sized(full, ROUNDS) === 1 ? '' : 's'} each)`;
  },
  async run(ctx) {
    return { clone: await cloneTimes(ctx.home, sized(ctx.full, ROUNDS)) };
  },
};
