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

const SETS = 10_000;
const MIB = 1024;

export interface SnapFigures {
  where: string;
  bytes: number;
  snapshotSeconds: number;
  restoreSeconds: number;
  snapshotGBps: number;
  restoreGBps: number;
}

async function once(home: string, dir: string, round: number): Promise<SnapFigures> {
  const aid = `snap-bench-${round}`;
  const { ended } = await startApp(home, aid, builtProgram('snapbench'), [String(SETS), String(MIB)]);
  const file = join(dir, `appshot-bench-${process.pid}.snap`);
  try {
    const snap = appshot(home, ['snapshot', aid, '--ipc-only', '-o', file, '--stop']).stdout;
    await ended;
    const restored = appshot(home, ['restore', file, '--aid', `${aid}-restored`, '--', 'true']).stderr;
    const snapshotSeconds = Number(/; ([\d.]+) s/.exec(snap)![1]);
    const restoreSeconds = Number(/ in ([\d.]+) s/.exec(restored)![1]);
    const bytes = MIB * 2 ** 20;
    return { where: dir, bytes, snapshotSeconds, restoreSeconds, snapshotGBps: bytes / 1e9 / snapshotSeconds, restoreGBps: bytes / 1e9 / restoreSeconds };
  } finally {
    rmSync(file, { force: true });
  }
}

/** The median round of each place. */
export async function snapshotThroughput(home: string, rounds: number): Promise<SnapFigures[]> {
  const figures: SnapFigures[] = [];
  for (const dir of ['/dev/shm', tmpdir()]) {
    const runs: SnapFigures[] = [];
    for (let i = 0; i < rounds; i++) runs.push(await once(home, dir, i));
    runs.sort((a, b) => a.snapshotSeconds + a.restoreSeconds - (b.snapshotSeconds + b.restoreSeconds));
    figures.push(runs[Math.floor(runs.length / 2)]);
  }
  return figures;
}
