import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_PATH, SHIM_PATH } from '../ts/paths.js';
import { procStat } from '../ts/procinfo.js';
import { SEMTOOL, appshot, appshotAsync, kernelSems, makeHome, tablesJson, testRoot, waitFor } from './helpers.js';

/** Another local user: the one every Linux system has. */
const NOBODY = 65534;

/** Root of the host (not of a user namespace that maps only the caller). */
function hostRoot(): boolean {
  const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
  return process.getuid!() === 0 && map[0] === '0' && map[1] === '0' && Number(map[2]) > NOBODY;
}

/** Whether files can be given to another user here: as root, yes; in a user
 * namespace that maps only the caller, chown to 65534 fails. */
function canChown(): boolean {
  const probe = mkdtempSync(join(testRoot(), 'chown-'));
  try {
    chownSync(probe, NOBODY, NOBODY);
    return true;
  } catch (err) {
    if (hostRoot()) throw err; // as root it must work
    process.stderr.write(`home-security: cannot chown to uid ${NOBODY} here (${(err as Error).message}): the tests that need another user are skipped\n`);
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
const otherUser = canChown();

const asNobody = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];

/** Whether uid 65534 can run this appshot (read node, the build, the CLI). */
function nobodyCanRun(): boolean {
  if (!otherUser) return false;
  const r = spawnSync(asNobody[0], [...asNobody.slice(1), process.execPath, CLI_PATH, '--help'], { encoding: 'utf8' });
  if (r.status === 0) return true;
  process.stderr.write(`home-security: uid ${NOBODY} cannot run ${CLI_PATH} here (${(r.stderr || r.error?.message || '').trim()}): the test run as another user is skipped\n`);
  return false;
}

const mode = (path: string) => statSync(path).mode & 0o7777;

/** Applications' processes a test started and must end. */
async function endProcess(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitFor(() => (existsSync(`/proc/${pid}`) && procStat(pid)?.state !== 'Z' ? '' : 'gone'), /gone/);
}

/**
 * Starts an application holding semaphore set key whose process carries
 * APPSHOT_HOME as programHome spells it, then kills its harness and its
 * supervisor: only that process says the application is alive.
 */
async function orphanedApp(runHome: string, programHome: string, aid: string, key: string): Promise<number> {
  const app = appshotAsync(runHome, ['run', '--aid', aid, '--', 'env', `APPSHOT_HOME=${programHome}`, SEMTOOL, 'get', key, '1', 'c', 'pid', 'sleep', '100000']);
  const pid = Number((await waitFor(app.out, /pid (\d+)/))[1]);
  const supervisor = procStat(pid)!.ppid;
  // 'exit', not 'close': the application still holds the harness's pipes.
  const harnessGone = new Promise((resolve) => app.child.once('exit', resolve));
  app.child.kill('SIGKILL');
  await harnessGone;
  await endProcess(supervisor);
  return pid;
}

const semKept = (key: number) => kernelSems().some((s) => s.key === key);

describe('a home is one directory, however it is spelled (issue 14, 2)', () => {
  /** An application started under home as `startedAs` spells it, its
   * harness and supervisor killed: gc under every other spelling leaves it
   * alone, and once its process ends gc cleans it up. */
  async function gcLeavesAlone(startedAs: 'link' | 'real', aid: string, key: number): Promise<void> {
    const home = makeHome();
    const link = join(testRoot(), `link-${basename(home)}`);
    symlinkSync(home, link);
    const start = startedAs === 'link' ? link : home;
    const spellings =
      startedAs === 'link'
        ? [home, `${home}/`, `${home}/../${basename(home)}`, `${home}/.`]
        : [link, `${link}/`, `${home}/../${basename(link)}`];
    const pid = await orphanedApp(start, start, aid, '0x' + key.toString(16));
    try {
      for (const spelling of spellings) {
        const gc = appshot(spelling, ['gc']);
        expect({ spelling, code: gc.code, out: gc.stdout, err: gc.stderr }).toEqual({ spelling, code: 0, out: 'nothing to clean up\n', err: '' });
        expect(semKept(key)).toBe(true);
      }
      expect(tablesJson(home, ['--aid', aid, '--type', 'sem']).length).toBe(1);
    } finally {
      await endProcess(pid);
    }
    expect(appshot(spellings[0], ['gc']).stdout).toMatch(new RegExp(`ended '${aid}': removed 1 semaphore set`));
    expect(semKept(key)).toBe(false);
  }

  it('gc naming the home by its real path, with a trailing slash or through .. leaves alone an application started through a symbolic link', () =>
    gcLeavesAlone('link', 'linked', 0x5e4001));

  it('and the reverse: gc through a link, a trailing slash or .. leaves alone an application started under the real path', () =>
    gcLeavesAlone('real', 'direct', 0x5e4002));

  it("the application's processes get the home's real path", async () => {
    const home = makeHome();
    const link = join(testRoot(), `link-${basename(home)}`);
    symlinkSync(home, link);
    const r = appshot(`${link}/`, ['run', '--', 'sh', '-c', 'echo "home=$APPSHOT_HOME"']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`home=${home}\n`);
  });
});

describe('a home another user owns or can write is refused (issue 14, 5)', () => {
  it.skipIf(!otherUser)('a home owned by another user: exit 4 naming the home, its owner and the fix; nothing is made in it', () => {
    const home = makeHome();
    chownSync(home, NOBODY, NOBODY);
    const r = appshot(home, ['run', '--', 'true']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(new RegExp(`^appshot: APPSHOT_HOME ${home} belongs to nobody \\(uid ${NOBODY}\\), not to you, .*set APPSHOT_HOME to a directory of your own`));
    expect(existsSync(join(home, 'tables.mdb'))).toBe(false);
  });

  it("a home of the caller's that others can write (0777): exit 4, left as it is", () => {
    const home = makeHome();
    chmodSync(home, 0o777);
    const r = appshot(home, ['run', '--', 'true']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`appshot: APPSHOT_HOME ${home} (mode 0777) can be written by other users`);
    expect(r.stderr).toContain(`run 'chmod 700 ${home}'`);
    expect(mode(home)).toBe(0o777);
    expect(existsSync(join(home, 'tables.mdb'))).toBe(false);
    expect(appshot(home, ['gc']).code).toBe(4);
    chmodSync(home, 0o700);
  });

  it('pools/ writable by others, or templates/ owned by another user: exit 4 naming the folder', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
    mkdirSync(join(home, 'pools'));
    chmodSync(join(home, 'pools'), 0o777);
    const pools = appshot(home, ['run', '--', 'true']);
    expect(pools.code).toBe(4);
    expect(pools.stderr).toContain(`appshot: the folder ${join(home, 'pools')} (mode 0777) can be written by other users`);
    chmodSync(join(home, 'pools'), 0o700);
    if (!otherUser) return;
    mkdirSync(join(home, 'templates'), { mode: 0o700 });
    chownSync(join(home, 'templates'), NOBODY, NOBODY);
    const templates = appshot(home, ['template', 'list']);
    expect(templates.code).toBe(4);
    expect(templates.stderr).toContain(`appshot: the folder ${join(home, 'templates')} belongs to nobody (uid ${NOBODY})`);
  });

  it("an existing home (and folder) of the caller's with mode 0755 becomes 0700", () => {
    const home = makeHome();
    chmodSync(home, 0o755);
    mkdirSync(join(home, 'templates'), { mode: 0o755 });
    chmodSync(join(home, 'templates'), 0o755);
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
    expect(mode(home)).toBe(0o700);
    expect(mode(join(home, 'templates'))).toBe(0o700);
  });

  it("a program of the application inherits no descriptor of the home's files but the shim's own (the harness's LMDB leaked one)", () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--', 'sh', '-c', 'ls -l /proc/$$/fd']);
    expect(r.code).toBe(0);
    const inHome = r.stdout.split('\n').filter((l) => l.includes(` -> ${home}/`));
    // The shim keeps the home's files open high, for processes that change user (issue 16, 3).
    expect(inHome.length).toBeGreaterThan(0);
    for (const line of inHome) expect(Number(/ (\d+) -> /.exec(line)?.[1]), line).toBeGreaterThanOrEqual(900);
  });

  it('a new home is made 0700', () => {
    const home = join(makeHome(), 'new', 'home');
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
    expect(mode(home)).toBe(0o700);
  });

  it('six commands started at once on a new home all run (each may find the folders the others just made)', async () => {
    const home = join(makeHome(), 'new', 'home');
    const runs = Array.from({ length: 6 }, (_, i) => appshotAsync(home, ['run', '--aid', `at-once-${i}`, '--', 'true']));
    const results = await Promise.all(runs.map((r) => r.done));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect(mode(home)).toBe(0o700);
  });
});

describe('appshot follows no link planted in its home (issue 14, 5)', () => {
  /** A file outside the home that a planted link points at. */
  function victim(): string {
    const file = join(mkdtempSync(join(testRoot(), 'victim-')), 'file');
    writeFileSync(file, 'untouched\n');
    return file;
  }

  for (const name of ['inflight', 'open.lock', 'tables.mdb-lock', 'tables.mdb']) {
    it(`a symbolic link at HOME/${name}: exit 4 naming it, its target untouched`, () => {
      const home = makeHome();
      expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
      const target = victim();
      rmSync(join(home, name), { force: true });
      symlinkSync(target, join(home, name));
      for (const args of [['run', '--', 'true'], ['gc'], ['tables']]) {
        const r = appshot(home, args);
        expect(r.code).toBe(4);
        expect(r.stderr).toContain(`appshot: ${join(home, name)} is a symbolic link; appshot follows no links in its home`);
      }
      expect(readFileSync(target, 'utf8')).toBe('untouched\n');
      expect(statSync(target).size).toBe(10);
    });
  }

  it("a symbolic link planted at a pool's log or lock: run --publish refuses it, its target untouched", () => {
    const home = makeHome();
    mkdirSync(join(home, 'pools'), { mode: 0o700 });
    for (const ext of ['log', 'lock']) {
      const target = victim();
      const planted = join(home, 'pools', `18131.${ext}`);
      symlinkSync(target, planted);
      const r = appshot(home, ['run', '--publish', '18131:8080', '--', 'true']);
      expect(r.code).toBe(4);
      expect(r.stderr).toContain(`appshot: ${planted} is a symbolic link`);
      expect(readFileSync(target, 'utf8')).toBe('untouched\n');
      rmSync(planted);
    }
  });

  it.skipIf(!otherUser)('tables.mdb owned by another user: exit 4 naming the owner', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
    chownSync(join(home, 'tables.mdb'), NOBODY, NOBODY);
    const r = appshot(home, ['tables']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`appshot: ${join(home, 'tables.mdb')} belongs to nobody (uid ${NOBODY}), not to you`);
  });

  it('a symbolic link planted at a template file is not read', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
    mkdirSync(join(home, 'templates'), { mode: 0o700 });
    const target = victim();
    symlinkSync(target, join(home, 'templates', 'web.json'));
    const r = appshot(home, ['template', 'inspect', 'web']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`appshot: ${join(home, 'templates', 'web.json')} is a symbolic link`);
  });
});

describe('the shim checks the home too (issue 14, 5)', () => {
  it("a process started after the home became writable by others stops with exit 125 and the shim's message", () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--', 'sh', '-c', `chmod 777 "$APPSHOT_HOME"; ${SEMTOOL} get 0x5e4003 1 c; echo "status $?"`]);
    chmodSync(home, 0o700);
    expect(r.stderr).toContain(`appshot: APPSHOT_HOME ${home} (mode 0777) can be written by other users`);
    expect(r.stderr).toContain('the program cannot run untranslated, so it stops');
    expect(r.stdout).toContain('status 125');
    expect(semKept(0x5e4003)).toBe(false);
  });

  it.skipIf(!otherUser)('a program joining an application whose home another user owns stops with exit 125', () => {
    const home = makeHome();
    const app = appshot(home, ['run', '--aid', 'owned', '--keep', '--', 'true']);
    expect(app.code).toBe(0);
    chownSync(home, NOBODY, NOBODY);
    const r = spawnSync(SEMTOOL, ['get', '0x5e4004', '1', 'c'], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: SHIM_PATH, APPSHOT_AID: 'owned', APPSHOT_HOME: home } });
    chownSync(home, 0, 0);
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(new RegExp(`^appshot: APPSHOT_HOME ${home} belongs to uid ${NOBODY}, not to this process's user \\(uid 0\\)`));
    expect(semKept(0x5e4004)).toBe(false);
  });
});

describe("another user's owner-only home (issue 14, 14)", () => {
  // A folder uid 65534 can pass through but not list, holding root's home.
  const parent = mkdtempSync(join(tmpdir(), 'appshot-home-security-'));
  afterAll(() => rmSync(parent, { recursive: true, force: true }));

  it.skipIf(!hostRoot() || !nobodyCanRun())('is reported as permission denied, exit 4, not as "nothing has run"', () => {
    chmodSync(parent, 0o711);
    const home = join(parent, 'home');
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
    expect(mode(home)).toBe(0o700);
    for (const args of [['tables'], ['ps'], ['gc'], ['run', '--', 'true']]) {
      const r = spawnSync(asNobody[0], [...asNobody.slice(1), process.execPath, CLI_PATH, ...args], { encoding: 'utf8', env: { ...process.env, APPSHOT_HOME: home } });
      expect({ args, code: r.status }).toEqual({ args, code: 4 });
      expect(r.stderr).toContain(`appshot: APPSHOT_HOME ${home}: permission denied: it belongs to root (uid 0)`);
      expect(r.stderr).not.toContain('nothing has run');
    }
    expect(lstatSync(join(home, 'tables.mdb')).uid).toBe(0);
  });
});
