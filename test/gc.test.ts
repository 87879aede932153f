import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SEMTOOL, appshot, appshotAsync, kernelSems, makeHome, tablesJson, waitFor } from './helpers.js';

describe('cleanup and appshot gc', () => {
  it('when the last process exits, the harness removes the sets the application still holds', () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--aid', 'tidy', '--', SEMTOOL, 'get', '0x5e3001', '1', 'c', 'private', '3', 'fork', 'get', '0x5e3002', '2', 'c']);
    expect(r.code).toBe(0);
    expect(kernelSems().filter((s) => [0x5e3001, 0x5e3002].includes(s.key))).toEqual([]);
    expect(tablesJson(home, ['--aid', 'tidy'])).toEqual([]);
  });

  it('waits for descendants that outlive the command before cleaning up', async () => {
    const home = makeHome();
    // The command exits at once; its background child keeps using the set.
    const r = appshot(home, ['run', '--', 'sh', '-c', `(sleep 0.5; ${SEMTOOL} get 0x5e3003 1 - getval 0) & ${SEMTOOL} get 0x5e3003 1 c setval 0 4`]);
    expect(r.stdout.trim().split('\n').slice(1)).toEqual(['ok 0', expect.stringMatching(/^id \d+$/), 'val 4']);
    expect(kernelSems().some((s) => s.key === 0x5e3003)).toBe(false);
  });

  it('--keep leaves the sets and rows; gc --kept removes them', () => {
    const home = makeHome();
    appshot(home, ['run', '--aid', 'kept', '--keep', '--', SEMTOOL, 'get', '0x5e3004', '1', 'c', 'setval', '0', '3']);
    expect(kernelSems().some((s) => s.key === 0x5e3004)).toBe(true);
    expect(tablesJson(home, ['--aid', 'kept']).length).toBe(2);
    expect(appshot(home, ['gc']).stdout).toBe('nothing to clean up\n');
    expect(kernelSems().some((s) => s.key === 0x5e3004)).toBe(true);
    // Run again under the same name: the kept state is there.
    const again = appshot(home, ['run', '--aid', 'kept', '--keep', '--', SEMTOOL, 'get', '0x5e3004', '1', '-', 'getval', '0']);
    expect(again.stdout.split('\n')[1]).toBe('val 3');
    const gc = appshot(home, ['gc', '--kept']);
    expect(gc.stdout).toMatch(/ended 'kept': removed 1 semaphore set and \d+ table rows/);
    expect(kernelSems().some((s) => s.key === 0x5e3004)).toBe(false);
  });

  it('after the harness is killed, gc leaves a live application alone and cleans it once its processes are gone', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'orphan', '--', SEMTOOL, 'get', '0x5e3005', '1', 'c', 'pid', 'sleep', '100000']);
    const pid = Number((await waitFor(app.out, /pid (\d+)/))[1]);
    const harnessGone = new Promise((r) => app.child.once('exit', r));
    app.child.kill('SIGKILL');
    await harnessGone;
    expect(appshot(home, ['gc']).stdout).toBe('nothing to clean up\n');
    expect(kernelSems().some((s) => s.key === 0x5e3005)).toBe(true);
    process.kill(pid, 'SIGTERM');
    await waitFor(() => (existsSync(`/proc/${pid}`) ? '' : 'gone'), /gone/);
    const gc = appshot(home, ['gc', '--json']);
    expect(gc.code).toBe(0);
    expect(JSON.parse(gc.stdout)).toEqual([expect.objectContaining({ aid: 'orphan', removed: { sem: 1 } })]);
    expect(kernelSems().some((s) => s.key === 0x5e3005)).toBe(false);
    expect(tablesJson(home, ['--aid', 'orphan'])).toEqual([]);
  });
});
