import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_PATH, SHIM_PATH, builtProgram } from '../ts/paths.js';
import { appshot, makeHome, MODES, tablesJson, testRoot } from './helpers.js';

/** Processes that change their user (setuid, setpriv, Apache's children)
 * keep translating, in the same process, in fork children and across exec,
 * while the home stays its owner's alone (issue 16, section 3). And the
 * user's own LD_PRELOAD is kept after the shim (section 7). */

const PRIVTOOL = builtProgram('privtool');
const NOBODY = 65534;

/** The environment of a program started outside appshot, plus extra. */
function plainEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['APPSHOT_AID', 'APPSHOT_HOME', 'APPSHOT_HOME_FDS', 'LD_PRELOAD']) delete env[name];
  return { ...env, ...extra };
}

function native(cmd: string[], extra: NodeJS.ProcessEnv = {}): { stdout: string; stderr: string; code: number | null } {
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', env: plainEnv(extra) });
  return { stdout: r.stdout, stderr: r.stderr, code: r.status };
}

/** Output with IPC IDs (which differ between runs and modes, and are small
 * in a test file's own IPC namespace) as N. */
const ids = (s: string) => s.replace(/(made |invalid id \(|created )\d+/g, '$1N');

/** The home's files are still owner-only, and the owner's. */
function expectOwnerOnly(home: string): void {
  for (const name of [home, ...readdirSync(home).map((n) => join(home, n))]) {
    const st = statSync(name);
    expect(st.uid, name).toBe(process.getuid!());
    expect(st.mode & 0o077, name).toBe(0);
  }
}

describe('privilege changes', () => {
  it.each(MODES)('%s: setpriv to www-data, then ipcmk and ipcrm, as natively', (_m, flags) => {
    const script = 'id=$(ipcmk -S 1 | sed "s/.*: //") && echo made $id && ipcrm -s $id && echo removed && ipcrm -s $id; echo again $?';
    const cmd = ['setpriv', '--reuid=www-data', '--regid=www-data', '--clear-groups', 'sh', '-c', script];
    const want = native(cmd);
    expect(want.stdout).toMatch(/^made \d+\nremoved\nagain 1\n$/);
    const home = makeHome();
    const r = appshot(home, ['run', ...flags, '--', ...cmd]);
    expect(ids(r.stderr)).toBe(ids(want.stderr));
    expect(r.code).toBe(0);
    expect(ids(r.stdout)).toBe(ids(want.stdout));
    expectOwnerOnly(home);
    // Removed through the shim: no row left, so nothing left on the host either.
    expect(tablesJson(home, ['--type', 'sem'])).toEqual([]);
  });

  describe.each(MODES)('%s', (_m, flags) => {
    it.each([
      ['0600: the kernel refuses (EACCES)', '0600', 'child'],
      ['0666: the child uses it', '0666', 'child'],
      ['0600, across exec: EACCES', '0600', 'exec'],
      ['0666, across exec: it is used', '0666', 'exec'],
    ])('a fork child that setuid(nobody) uses its parent\'s set, %s', (_what, mode, how) => {
      const args = ['sem-child', mode, String(NOBODY), ...(how === 'exec' ? ['exec'] : [])];
      const want = native([PRIVTOOL, ...args]);
      expect(want.code).toBe(0);
      expect(want.stdout).toContain(mode === '0600' ? 'err EACCES' : 'op 0');
      const home = makeHome();
      const r = appshot(home, ['run', ...flags, '--', PRIVTOOL, ...args]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(want.stdout);
      expectOwnerOnly(home);
    });
  });

  it('another local user cannot open the tables a dropped process uses', () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--no-identity', '--', PRIVTOOL, 'sem-child', '0666', String(NOBODY), 'exec']);
    expect(r.code).toBe(0);
    const peek = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'cat', join(home, 'tables.mdb')], { encoding: 'utf8' });
    expect(peek.status).not.toBe(0);
    expect(peek.stderr).toMatch(/Permission denied/);
  });

  describe.each(MODES)('%s', (_m, flags) => {
    it.each([
      ['closefrom(3): the shim keeps its descriptors', []],
      ['the close_range system call, past libc: the shim opens the tables again', ['raw']],
    ])('a program that closes every descriptor still translates, %s', (_what, how) => {
      const want = native([PRIVTOOL, 'fds', ...how]);
      expect(want.stdout).toMatch(/^close 0\ncreated \d+\nrmid 0\n$/);
      const r = appshot(makeHome(), ['run', ...flags, '--', PRIVTOOL, 'fds', ...how]);
      expect(r.stderr).toBe('');
      expect(ids(r.stdout)).toBe(ids(want.stdout));
    });
  });
});

describe('the user\'s LD_PRELOAD', () => {
  const dir = mkdtempSync(join(testRoot(), 'preload-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** A preload library of the user's: says which program it was loaded in. */
  const lib = join(dir, 'hello.so');
  writeFileSync(
    join(dir, 'hello.c'),
    `#include <stdio.h>
     #include <string.h>
     __attribute__((constructor)) static void hello(void) {
       char comm[64] = "";
       FILE *f = fopen("/proc/self/comm", "r");
       if (f) { if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\\n")] = 0; fclose(f); }
       fprintf(stderr, "hello from %s\\n", comm);
     }`,
  );
  execFileSync('cc', ['-shared', '-fPIC', '-o', lib, join(dir, 'hello.c')]);

  it('is kept after the shim, at appshot run and across exec inside the application', () => {
    const script = 'echo "$LD_PRELOAD"; exec env LD_PRELOAD=' + lib + ' sh -c \'echo "$LD_PRELOAD"\'';
    const want = native(['sh', '-c', script], { LD_PRELOAD: lib });
    expect(want.stderr).toBe('hello from sh\nhello from env\nhello from sh\n');
    const home = makeHome();
    const r = spawnSync(process.execPath, [CLI_PATH, 'run', '--', 'sh', '-c', script], {
      encoding: 'utf8',
      env: plainEnv({ APPSHOT_HOME: home, LD_PRELOAD: lib }),
    });
    expect(r.status).toBe(0);
    // The shim first, the user's library after it, in every program.
    expect(r.stdout).toBe(`${SHIM_PATH}:${lib}\n${SHIM_PATH}:${lib}\n`);
    // The harness itself (node) and the supervisor load it too, as any
    // program started with it would; the application's programs say so.
    expect(r.stderr.split('\n').filter((l) => /^hello from (sh|env)$/.test(l))).toEqual(['hello from sh', 'hello from env', 'hello from sh']);
  });
});
