import { spawnSync } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addon } from '../ts/addon.js';
import { builtProgram } from '../ts/paths.js';
import * as S from '../tables/schema.js';
import { appshotAsync, makeHome, waitFor } from './helpers.js';

/** A fork child's first IPC call opens the tables in the child: that must
 * not make the call wait for other processes (issue 16, section 5). Twenty
 * children attach one segment and pause; the parent waits until each sleeps
 * (state S in /proc/<pid>/stat), reads shm_nattch, then wakes them with a
 * signal and reaps them. A child that slept inside shmat (waiting for the
 * tables) would be counted early, and the signal would reach it there
 * instead of in pause(), leaving it asleep and the parent hung.
 *
 * Meanwhile the test holds the tables' open lock shared, as any process
 * writing to the tables does (another application's semget, fork, bind):
 * the children must start as if no one were writing. */

const PRIVTOOL = builtProgram('privtool');
const LOCK_SH = 1;
const LOCK_UN = 8;

function plainEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['APPSHOT_AID', 'APPSHOT_HOME', 'APPSHOT_HOME_FDS', 'LD_PRELOAD']) delete env[name];
  return env;
}

describe('fork children opening the tables', () => {
  it('natively: 20 children attached, none left behind', () => {
    const r = spawnSync(PRIVTOOL, ['fork-shm', '20'], { encoding: 'utf8', env: plainEnv() });
    expect(r.stdout).toBe('stat 0\nnattch 20\nchildren failed 0\nrmid 0\n');
  });

  it.each([
    ['identity', [] as string[]],
    ['remapped', ['--no-identity']],
  ])('%s: the same while another process writes to the tables', async (_m, flags) => {
    const home = makeHome();
    const go = join(home, 'go');
    const app = appshotAsync(home, ['run', ...flags, '--', PRIVTOOL, 'fork-shm', '20', go]);
    await waitFor(app.out, /ready/);
    const fd = openSync(join(home, S.OPEN_LOCK_FILE), 'r+');
    try {
      addon().flock(fd, LOCK_SH);
      writeFileSync(go, '');
      await waitFor(app.out, /children failed|hung/);
    } finally {
      addon().flock(fd, LOCK_UN);
      closeSync(fd);
    }
    const r = await app.done;
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('ready\nstat 0\nnattch 20\nchildren failed 0\nrmid 0\n');
    expect(r.code).toBe(0);
  });
});
