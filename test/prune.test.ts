import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { SEMTOOL, SHMTOOL, appshot, appshotAsync, kernelSems, makeHome, tablesJson, waitFor } from './helpers.js';

interface Report {
  dryRun: boolean;
  pruned: { aid: string; state: string; translations: number; removed: Record<string, number>; rows: number; notes: string[] }[];
  left: { aid: string; state: string; reason: string }[];
}

function pruneJson(home: string, args: string[] = []): Report {
  const r = appshot(home, ['prune', '--json', ...args]);
  if (r.code !== 0) throw new Error(`appshot prune failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function apps(home: string): { aid: string; state: string }[] {
  const r = appshot(home, ['tables', '--apps', '--json']);
  if (r.code !== 0) throw new Error(`appshot tables failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { aid: string; state: string }[]).map(({ aid, state }) => ({ aid, state }));
}

const KEPT_KEY = 0x4a1802;

describe('appshot prune', () => {
  it('removes the records of ended applications, leaves a running and a kept one; --kept ends and removes the kept one and its objects; --dry-run changes nothing', async () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--aid', 'done1', '--', SEMTOOL, 'get', '0x4a1801', '1', 'c']).code).toBe(0);
    expect(appshot(home, ['run', '--aid', 'done2', '--', 'true']).code).toBe(0);
    expect(appshot(home, ['run', '--aid', 'kept1', '--keep', '--', SEMTOOL, 'get', String(KEPT_KEY), '1', 'c', 'setval', '0', '7']).code).toBe(0);
    const keptSem = kernelSems().find((s) => s.key === KEPT_KEY)!;
    expect(keptSem).toBeDefined();
    const live = appshotAsync(home, ['run', '--aid', 'live', '--', SEMTOOL, 'get', '0x4a1803', '1', 'c', 'pid', 'sleep', '100000']);
    try {
      await waitFor(live.out, /^pid \d+/m);
      const before = apps(home);
      expect(before).toEqual([
        { aid: 'done1', state: 'ended' },
        { aid: 'done2', state: 'ended' },
        { aid: 'kept1', state: 'kept' },
        { aid: 'live', state: 'running' },
      ]);
      const liveRows = tablesJson(home, ['--aid', 'live']);
      const keptRows = tablesJson(home, ['--aid', 'kept1']);
      expect(keptRows.length).toBeGreaterThan(0);

      // Dry: what would go, and nothing changed.
      const dry = pruneJson(home, ['--dry-run']);
      expect(dry.dryRun).toBe(true);
      expect(dry.pruned.map((p) => [p.aid, p.state])).toEqual([
        ['done1', 'ended'],
        ['done2', 'ended'],
      ]);
      expect(dry.left).toEqual([{ aid: 'kept1', state: 'kept', reason: expect.stringContaining("'appshot prune --kept'") }]);
      const dryText = appshot(home, ['prune', '--dry-run']);
      expect(dryText.code).toBe(0);
      expect(dryText.stdout).toBe(
        "would prune application 'done1' (0 translations)\nwould prune application 'done2' (0 translations)\n" +
          "left kept application 'kept1': kept for a snapshot (run with --keep): 'appshot prune --kept' ends it and removes it\n",
      );
      expect(apps(home)).toEqual(before);

      // The ended ones go; the running and the kept one stay, with their rows and objects.
      const r = appshot(home, ['prune']);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(
        "pruned application 'done1': removed no kernel objects and 1 table row\npruned application 'done2': removed no kernel objects and 1 table row\n" +
          "left kept application 'kept1': kept for a snapshot (run with --keep): 'appshot prune --kept' ends it and removes it\n",
      );
      expect(apps(home)).toEqual([
        { aid: 'kept1', state: 'kept' },
        { aid: 'live', state: 'running' },
      ]);
      expect(tablesJson(home, ['--aid', 'live'])).toEqual(liveRows);
      expect(tablesJson(home, ['--aid', 'kept1'])).toEqual(keptRows);
      expect(kernelSems().some((s) => s.semid === keptSem.semid)).toBe(true);
      expect(appshot(home, ['inspect', 'done1']).code).toBe(1);

      // --kept, dry: the kept one would go, and stays.
      const keptDry = pruneJson(home, ['--kept', '--dry-run']);
      expect(keptDry.pruned).toEqual([{ aid: 'kept1', state: 'kept', translations: keptRows.length, removed: {}, rows: 0, notes: [] }]);
      expect(keptDry.left).toEqual([]);
      expect(apps(home)).toHaveLength(2);
      expect(kernelSems().some((s) => s.semid === keptSem.semid)).toBe(true);

      // --kept: ended first (its semaphore set removed), then its record.
      const kept = pruneJson(home, ['--kept']);
      expect(kept.pruned).toEqual([expect.objectContaining({ aid: 'kept1', state: 'kept', removed: { sem: 1 } })]);
      expect(kernelSems().some((s) => s.semid === keptSem.semid)).toBe(false);
      expect(tablesJson(home, ['--aid', 'kept1'])).toEqual([]);
      expect(apps(home)).toEqual([{ aid: 'live', state: 'running' }]);
      expect(tablesJson(home, ['--aid', 'live'])).toEqual(liveRows);

      // The running one is never touched; once it has ended, it goes too.
      expect(appshot(home, ['prune', '--kept']).stdout).toBe('nothing to prune\n');
      expect(apps(home)).toEqual([{ aid: 'live', state: 'running' }]);
      live.child.kill('SIGTERM');
      await live.done;
      expect(pruneJson(home).pruned.map((p) => p.aid)).toEqual(['live']);
      expect(apps(home)).toEqual([]);
      expect(appshot(home, ['prune']).stdout).toBe('nothing to prune\n');
    } finally {
      live.child.kill('SIGTERM');
      await live.done;
    }
  });

  it('leaves an ended application whose segment a process outside still has attached, and says why; prunes it once that detaches', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'held', '--', SHMTOOL, 'get', '0x4a1804', '4096', 'c', 'attach', '-', 'pid', 'sleep', '100000']);
    await waitFor(app.out, /^pid/m);
    const segment = tablesJson(home, ['--aid', 'held', '--type', 'shm'])[0];
    const outsider = spawn(SHMTOOL, ['use', String(segment.system), 'attach', '-', 'pid', 'sleep', '100000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let outsiderOut = '';
    outsider.stdout!.on('data', (d) => (outsiderOut += d));
    try {
      await waitFor(() => outsiderOut, /^pid \d+/m);
      app.child.kill('SIGTERM');
      await app.done;
      expect(apps(home)).toEqual([{ aid: 'held', state: 'ended' }]);

      const reason = `shared memory segment ${segment.system} (virtual ${segment.virtual}) is still attached by 1 process: its record stays until they detach (then prune or 'appshot gc' removes the segment)`;
      for (const args of [['--dry-run'], [], ['--kept']]) {
        const r = pruneJson(home, args);
        expect(r.pruned).toEqual([]);
        expect(r.left).toEqual([{ aid: 'held', state: 'ended', reason }]);
      }
      expect(appshot(home, ['prune']).stdout).toBe(`nothing to prune\nleft ended application 'held': ${reason}\n`);
      expect(apps(home)).toEqual([{ aid: 'held', state: 'ended' }]);
      expect(tablesJson(home, ['--aid', 'held']).map((row) => row.type).sort()).toEqual(['shm', 'shmkey']);
      expect(kernelObjects('shm').get(segment.system)).toMatchObject({ nattch: 1 });

      outsider.kill('SIGTERM');
      await new Promise((res) => outsider.once('exit', res));
      const r = pruneJson(home);
      expect(r.pruned).toEqual([expect.objectContaining({ aid: 'held', state: 'ended', removed: { shm: 1 } })]);
      expect(kernelObjects('shm').has(segment.system)).toBe(false);
      expect(apps(home)).toEqual([]);
      expect(tablesJson(home)).toEqual([]);
    } finally {
      outsider.kill('SIGKILL');
      app.child.kill('SIGTERM');
      await app.done;
    }
  });

  it("never touches a template's record: the template stays usable after prune --kept", () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--aid', 'base', '--keep', '--', SHMTOOL, 'get', '0x4a1805', '4096', 'c']).code).toBe(0);
    const snap = join(home, 'base.snap');
    expect(appshot(home, ['snapshot', 'base', '--ipc-only', '-o', snap]).code).toBe(0);
    expect(appshot(home, ['template', 'create', 'tpl', '--from', snap]).code).toBe(0);
    const template = apps(home).find((a) => a.state === 'template')!;
    expect(pruneJson(home, ['--kept']).pruned.map((p) => p.aid)).toEqual(['base']);
    expect(apps(home)).toEqual([template]);
    expect(pruneJson(home, ['--kept'])).toEqual({ dryRun: false, pruned: [], left: [] });
    expect(appshot(home, ['template', 'list', '--json']).stdout).toContain('"tpl"');
    const rm = appshot(home, ['rm', template.aid]);
    expect(rm.code).toBe(3);
    expect(rm.stderr).toBe(`appshot: '${template.aid}' is a template's entry: nothing was removed; remove the template with 'appshot template rm tpl'\n`);
    expect(appshot(home, ['template', 'clone', 'tpl', '--', 'true']).code).toBe(0);
    expect(appshot(home, ['template', 'rm', 'tpl']).code).toBe(0);
  });

  it('rm removes the named ended and kept applications; refuses them all when one is running, a template or unknown', async () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--aid', 'gone1', '--', 'true']).code).toBe(0);
    expect(appshot(home, ['run', '--aid', 'keep1', '--keep', '--', SEMTOOL, 'get', '0x4a1806', '1', 'c']).code).toBe(0);
    expect(appshot(home, ['run', '--aid', 'other', '--', 'true']).code).toBe(0);
    const sem = kernelSems().find((s) => s.key === 0x4a1806)!;
    expect(sem).toBeDefined();
    const live = appshotAsync(home, ['run', '--aid', 'busy', '--', SEMTOOL, 'pid', 'sleep', '100000']);
    try {
      await waitFor(live.out, /^pid \d+/m);
      const before = apps(home);

      const unknown = appshot(home, ['rm', 'gone1', 'nobody']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toBe(`appshot: no application 'nobody' in ${home}: nothing was removed; 'appshot tables --apps' lists the applications there are\n`);
      const running = appshot(home, ['rm', 'gone1', 'busy']);
      expect(running.code).toBe(3);
      expect(running.stderr).toMatch(/^appshot: application 'busy' is running \(harness pid \d+\): nothing was removed; end it first/);
      expect(appshot(home, ['rm', '../x']).code).toBe(2);
      expect(appshot(home, ['rm']).code).toBe(2);
      expect(apps(home)).toEqual(before);

      const dry = appshot(home, ['rm', 'gone1', 'keep1', '--dry-run']);
      expect(dry.stdout).toBe("would remove application 'gone1' (0 translations)\nwould remove kept application 'keep1' (2 translations)\n");
      expect(apps(home)).toEqual(before);

      const r = appshot(home, ['rm', 'gone1', 'keep1']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^removed application 'gone1': removed no kernel objects and 1 table row\nremoved kept application 'keep1': removed 1 semaphore set and \d+ table rows\n$/);
      expect(kernelSems().some((s) => s.semid === sem.semid)).toBe(false);
      expect(apps(home).map((a) => a.aid)).toEqual(['busy', 'other']);
    } finally {
      live.child.kill('SIGTERM');
      await live.done;
    }
  });

  it('a fresh home: nothing to prune, exit 0, and nothing made', () => {
    const home = makeHome();
    const r = appshot(home, ['prune', '--kept']);
    expect(r).toMatchObject({ code: 0, stdout: 'nothing to prune\n', stderr: '' });
    expect(pruneJson(home, ['--dry-run'])).toEqual({ dryRun: true, pruned: [], left: [] });
    expect(readdirSync(home)).toEqual([]);
  });
});
