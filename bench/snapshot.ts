/**
 * Snapshot and restore of an application holding 1 GiB of shared memory
 * and 10,000 semaphore sets: the time each way, and the rate of shared
 * memory both over the whole command and over its own copy, as the
 * commands themselves report them (capture or restore alone, not Node's
 * start-up). The file goes to tmpfs (what the tool itself sustains)
 * and to the disk (where fsync waits for the device).
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtProgram } from '../ts/paths.js';
import { appshot, startApp } from './app.js';
import { type Stage, sized } from './stage.js';
import type { SnapFigures } from './figures.js';

/** Shared memory and semaphore sets the application holds, and rounds per place. */
interface Size {
  mib: number;
  sets: number;
  rounds: number;
}
const SIZES: { default: Size; full: Size } = { default: { mib: 256, sets: 2_500, rounds: 2 }, full: { mib: 1024, sets: 10_000, rounds: 3 } };


async function once(home: string, dir: string, round: number, size: Size): Promise<SnapFigures> {
  const aid = `snap-bench-${round}`;
  const { ended } = await startApp(home, aid, builtProgram('snapbench'), [String(size.sets), String(size.mib)]);
  const file = join(dir, `appshot-bench-${process.pid}.snap`);
  try {
    const snap = reported(appshot(home, ['snapshot', aid, '--ipc-only', '-o', file, '--stop', '--json']).stdout);
    await ended;
    // --json's line comes first; true's output (none) after it.
    const restored = reported(appshot(home, ['restore', file, '--aid', `${aid}-restored`, '--json', '--', 'true']).stdout.split('\n')[0]);
    const bytes = size.mib * 2 ** 20;
    const rate = (seconds: number) => bytes / 1e9 / seconds;
    return {
      where: dir,
      bytes,
      sets: size.sets,
      snapshotSeconds: snap.seconds,
      restoreSeconds: restored.seconds,
      snapshotGBps: rate(snap.seconds),
      restoreGBps: rate(restored.seconds),
      snapshotCopyGBps: rate(snap.copySeconds),
      restoreCopyGBps: rate(restored.copySeconds),
    };
  } finally {
    rmSync(file, { force: true });
  }
}

/** The whole command's time and, of it, shared memory's copy, as a command's --json says them. */
function reported(json: string): { seconds: number; copySeconds: number } {
  const { seconds, copySeconds } = JSON.parse(json) as { seconds: number; copySeconds: number };
  if (!(seconds > 0 && copySeconds > 0)) throw new Error(`a snapshot or restore reported no time: ${json}`);
  return { seconds, copySeconds };
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
