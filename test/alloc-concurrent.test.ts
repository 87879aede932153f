import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, kernelSems, makeHome, tablesJson } from './helpers.js';

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
});
