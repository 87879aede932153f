import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, kernelSems, makeHome, tablesJson, waitFor } from './helpers.js';

/** Processes of one application creating private sets at once, each set's
 * row put in the journal of new objects (core/journal.c), remapped vrids
 * from a block they share. allocbench
 * checks, with its last wave alive, that no ID was handed out twice and
 * that each process finds its own mark in each of its sets. */
const ALLOCBENCH = builtProgram('allocbench');

describe('private objects created at once by processes of one application', () => {
  it.each(MODES)('%s: 16 processes get 512 sets, each its own, and leave the tables whole and empty', (_mode, flags) => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const r = appshot(home, ['run', ...flags, '--aid', 'many', '--', ALLOCBENCH, '16', '0.3', '512']);
    expect(r.code, r.stderr).toBe(0);
    const run = JSON.parse(r.stdout);
    expect(run.problems).toEqual([]);
    expect(run.live).toBe(512);
    expect(run.allocations).toBeGreaterThanOrEqual(512);
    const verify = appshot(home, ['tables', '--verify']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(tablesJson(home, ['--aid', 'many', '--type', 'sem'])).toEqual([]);
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
  });

  // The processes take remapped vrids from one block in the journal; one of them reserves the next from LMDB's counter
  // while the others wait for the write lock and then use its block (blocks grow with the counter). A block reserved
  // and left unused, or a vrid taken twice, shows in the wave held alive: its vrids are not one dense run.
  it('remapped: 8 processes making 4,096 sets a wave, wave after wave, take dense vrids from the blocks they share', async () => {
    const home = makeHome();
    const before = new Set(kernelSems().map((s) => s.semid));
    const app = appshotAsync(home, ['run', '--no-identity', '--aid', 'dense', '--', ALLOCBENCH, '8', '0.5', '4096', '--hold'], undefined, { stdin: true });
    try {
      await waitFor(app.out, /\}\n/);
      const run = JSON.parse(app.out());
      expect(run.problems).toEqual([]);
      expect(run.waves).toBeGreaterThan(1);
      const vrids = tablesJson(home, ['--aid', 'dense', '--type', 'sem']).map((r) => r.virtual).sort((a, b) => a - b);
      expect(vrids.length).toBe(4096);
      expect(vrids[vrids.length - 1] - vrids[0] + 1).toBe(4096);
    } finally {
      app.child.stdin!.end(); // lets the held wave go
    }
    expect((await app.done).code).toBe(0);
    expect(tablesJson(home, ['--aid', 'dense', '--type', 'sem'])).toEqual([]);
    expect(kernelSems().filter((s) => !before.has(s.semid))).toEqual([]);
  });
});
