/**
 * Snapshot and restore of an application holding 1 GiB of shared memory
 * and 10,000 semaphore sets: the time each way and the shared memory rate,
 * as the commands themselves report them (capture or restore alone, not
 * Node's start-up). The file goes to tmpfs (what the tool itself sustains)
 * and to the disk (where fsync waits for the device).
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtProgram } from '../ts/paths.js';
import { appshot, startApp } from './app.js';
import { type Stage, sized } from './stage.js';

/** Shared memory and semaphore sets the application holds, and rounds per place. */
interface Size {
  mib: number;
  sets: number;
  rounds: number;
}
const SIZES: { default: Size; full: Size } = { default: { mib: 256, sets: 2_500, rounds: 2 }, full: { mib: 1024, sets: 10_000, rounds: 3 } };

export interface SnapFigures {
  where: string;
  bytes: number;
  sets: number;
  snapshotSeconds: number;
  restoreSeconds: number;
  snapshotGBps: number;
  restoreGBps: number;
}

async function once(home: string, dir: string, round: number, size: Size): Promise<SnapFigures> {
  const aid = `snap-bench-${round}`;
  const { ended } = await startApp(home, aid, builtProgram('snapbench'), [String(size.sets), String(size.mib)]);
  const file = join(dir, `appshot-bench-${process.pid}.snap`);
  try {
    const snap = appshot(home, ['snapshot', aid, '--ipc-only', '-o', file, '--stop']).stdout;
    await ended;
    const restored = appshot(home, ['restore', file, '--aid', `${aid}-restored`, '--', 'true']).stderr;
    const snapshotSeconds = Number(/; ([\d.]+) s/.exec(snap)![1]);
    const restoreSeconds = Number(/ in ([\d.]+) s/.exec(restored)![1]);
    const bytes = size.mib * 2 ** 20;
    return { where: dir, bytes, sets: size.sets, snapshotSeconds, restoreSeconds, snapshotGBps: bytes / 1e9 / snapshotSeconds, restoreGBps: bytes / 1e9 / restoreSeconds };
  } finally {
    rmSync(file, { force: true });
  }
}

/** The median round of each place. */
export async function snapshotThroughput(home: string, size: Size): Promise<SnapFigures[]> {
  const figures: SnapFigures[] = [];
  for (const dir of ['/dev/shm', tmpdir()]) {
    const runs: SnapFigures[] = [];
    for (let i = 0; i < size.rounds; i++) runs.push(await once(home, dir, i, size));
    runs.sort((a, b) => a.snapshotSeconds + a.restoreSeconds - (b.snapshotSeconds + b.restoreSeconds));
    figures.push(runs[Math.floor(runs.length / 2)]);
  }
  return figures;
}

/** 1 GiB, 256 MiB. */
export const sizeText = (mib: number) => (mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`);

export const snapshotStage: Stage = {
  name: 'snapshot',
  describe(full) {
    const s = sized(full, SIZES);
    return `snapshot and restore of ${sizeText(s.mib)} of shared memory and ${s.sets.toLocaleString('en-US')} semaphore sets, file on /dev/shm and on ${tmpdir()} (${s.rounds} rounds each)`;
  },
  async run(ctx) {
    return { snapshot: await snapshotThroughput(ctx.home, sized(ctx.full, SIZES)) };
  },
};
