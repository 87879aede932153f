import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { MSGTOOL, SEMTOOL, SHMTOOL, appshot, appshotAsync, kernelSems, makeHome, tablesJson, waitFor } from './helpers.js';

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

  it("a process of another IPC namespace attaching its own segment of the same ID is not named as holding the application's", async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'ns', '--', SHMTOOL, 'get', '0x5e3008', '4096', 'c', 'attach', '-', 'pid', 'sleep', '100000']);
    await waitFor(app.out, /^pid/m);
    const segment = tablesJson(home, ['--aid', 'ns', '--type', 'shm'])[0];
    const attach = (command: string, args: string[]) => {
      const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      const exited = new Promise((res) => child.once('exit', res));
      return { child, out: () => out, exited };
    };
    // A program outside appshot holds the segment; and in a container, say
    // (an IPC namespace of its own), the kernel gives another segment the
    // same ID, attached by a process that stays.
    const outsider = attach(SHMTOOL, ['use', String(segment.system), 'attach', '-', 'pid', 'sleep', '100000']);
    const other = attach('unshare', ['--ipc', 'sh', '-c', `echo ${segment.system} > /proc/sys/kernel/shm_next_id && exec ${SHMTOOL} private 4096 attach - pid sleep 100000`]);
    try {
      const outsiderPid = (await waitFor(outsider.out, /^pid (\d+)/m))[1];
      await waitFor(other.out, /^pid/m);
      expect(other.out()).toContain(`id ${segment.system}`);
      app.child.kill('SIGTERM');
      const r = await app.done;
      expect(r.stderr).toContain(`is still attached by a process outside the application (process ${outsiderPid}): left alone`);
    } finally {
      outsider.child.kill('SIGKILL');
      other.child.kill('SIGKILL');
      await Promise.all([outsider.exited, other.exited]);
    }
    expect(appshot(home, ['gc']).stdout).toMatch(/ended 'ns': removed 1 shared memory segment/);
  });

  it('the harness removes segments and queues too, but leaves a segment attached outside the application, and gc reports it until it is free', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'shared', '--', 'sh', '-c',
      `${MSGTOOL} get 0x5e3006 c send 1 left - >/dev/null && ${SHMTOOL} private 4096 >/dev/null && exec ${SHMTOOL} get 0x5e3007 4096 c attach - write shared pid sleep 100000`]);
    await waitFor(app.out, /^pid/m);
    const segment = tablesJson(home, ['--aid', 'shared', '--type', 'shm']).find((r) => r.key === 0x5e3007)!;
    const queue = tablesJson(home, ['--aid', 'shared', '--type', 'msg'])[0];
    const privateSegment = tablesJson(home, ['--aid', 'shared', '--type', 'shm']).find((r) => r.key === 0)!;
    // A program outside appshot attaches the segment by its system ID.
    const outsider = spawn(SHMTOOL, ['use', String(segment.system), 'attach', '-', 'read', 'pid', 'sleep', '100000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let outsiderOut = '';
    outsider.stdout!.on('data', (d) => (outsiderOut += d));
    try {
      const outsiderPid = (await waitFor(() => outsiderOut, /^pid (\d+)/m))[1];
      expect(outsiderOut).toContain('data shared');
      app.child.kill('SIGTERM');
      const r = await app.done;
      expect(r.stderr).toContain(`shared memory segment ${segment.system} (virtual ${segment.virtual}, key 0x005e3007) is still attached by a process outside the application (process ${outsiderPid}): left alone`);
      expect(kernelObjects('msg').has(queue.system)).toBe(false);
      expect(kernelObjects('shm').has(privateSegment.system)).toBe(false);
      expect(kernelObjects('shm').get(segment.system)).toMatchObject({ nattch: 1 });
      expect(tablesJson(home, ['--aid', 'shared']).map((row) => row.type).sort()).toEqual(['shm', 'shmkey']);
      const gc1 = appshot(home, ['gc']);
      expect(gc1.stdout).toContain(`shared memory segment ${segment.system} (virtual ${segment.virtual}, key 0x005e3007) is still attached`);
      expect(kernelObjects('shm').has(segment.system)).toBe(true);
      outsider.kill('SIGTERM');
      await new Promise((res) => outsider.once('exit', res));
      const gc2 = appshot(home, ['gc']);
      expect(gc2.stdout).toMatch(/ended 'shared': removed 1 shared memory segment and 4 table rows/);
      expect(kernelObjects('shm').has(segment.system)).toBe(false);
      expect(tablesJson(home, ['--aid', 'shared'])).toEqual([]);
      expect(appshot(home, ['gc']).stdout).toBe('nothing to clean up\n');
    } finally {
      outsider.kill('SIGKILL');
    }
  });

  it('gc drops the rows of a running application\'s removed segment whose last detach came at a process exit', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'exiting', '--', 'sh', '-c',
      `${SHMTOOL} private 4096 attach - rmid >/dev/null && echo gone && exec sleep 100000`]);
    await waitFor(app.out, /gone/);
    const [row] = tablesJson(home, ['--aid', 'exiting', '--type', 'shm']);
    expect(kernelObjects('shm').has(row.system)).toBe(false);
    const gc = appshot(home, ['gc']);
    expect(gc.stdout).toBe("dropped the rows of 1 removed shared memory segment(s) of running application 'exiting' whose last detach has come\n");
    expect(tablesJson(home, ['--aid', 'exiting', '--type', 'shm'])).toEqual([]);
    app.child.kill('SIGTERM');
    await app.done;
  });
});
