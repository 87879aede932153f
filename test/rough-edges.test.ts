import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../ts/paths.js';
import { type Result, appshot, appshotAsync, makeHome, waitFor } from './helpers.js';

// Issue 17's rough edges: a fresh home, ordinary mistakes with files,
// templates and relative paths, a MULTIPLEX rule for a port not there.

const TRACE = /internal error|\n\s+at /;

/** Whether this run may mount a filesystem in a mount namespace of its own. */
function canMount(): boolean {
  return spawnSync('unshare', ['--mount', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt'], { stdio: 'ignore' }).status === 0;
}

/** appshot from the directory cwd (relative paths resolve there). */
function appshotIn(cwd: string, home: string, args: string[]): Result {
  const env = { ...process.env, APPSHOT_HOME: home };
  delete env.APPSHOT_AID;
  delete env.LD_PRELOAD;
  const r = spawnSync(process.execPath, [CLI_PATH, ...args], { cwd, env, encoding: 'utf8', timeout: 50_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** A real snapshot of a real application: ipcmk's semaphore set, kept, then
 * snapshotted with --stop (its set removed). */
function semSnapshot(home: string, name = 'k.snap'): string {
  const r = appshot(home, ['run', '--keep', '--aid', 'k', '--', 'ipcmk', '-S', '2']);
  expect(r.code, r.stderr).toBe(0);
  const file = join(home, name);
  const s = appshot(home, ['snapshot', 'k', '--ipc-only', '-o', file, '--stop']);
  expect(s.code, s.stderr).toBe(0);
  return file;
}

describe('a fresh home (nothing has run there)', () => {
  const reads: [string[], string | null][] = [
    [['tables'], null],
    [['tables', '--apps'], null],
    [['tables', '--json'], '[]'],
    [['tables', '--apps', '--json'], '[]'],
    [['tables', '--csv'], null],
    [['ps'], null],
    [['ps', '--json'], '[]'],
    [['gc'], null],
    [['gc', '--json'], '[]'],
    [['gc', '--kept'], null],
    [['template', 'list'], null],
    [['template', 'list', '--json'], '[]'],
  ];

  for (const kind of ['a home that does not exist yet', 'an empty home'] as const) {
    it(`${kind}: tables, ps, gc and template list print empty results, exit 0, and make nothing`, () => {
      const parent = makeHome();
      const home = join(parent, 'home');
      if (kind === 'an empty home') mkdirSync(home, { mode: 0o700 });
      for (const [args, json] of reads) {
        const r = appshot(home, args);
        expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
        if (json !== null) expect(JSON.parse(r.stdout)).toEqual([]);
        // No application, row or template is shown.
        expect(r.stdout).not.toMatch(/\bapp-\d|template\./);
      }
      if (kind === 'an empty home') expect(readdirSync(home)).toEqual([]);
      else expect(existsSync(home)).toBe(false);
      expect(readdirSync(parent)).toEqual(kind === 'an empty home' ? ['home'] : []);
    });

    it(`${kind}: template inspect X and template rm X say there is no template X, exit 1, and make nothing`, () => {
      const parent = makeHome();
      const home = join(parent, 'home');
      if (kind === 'an empty home') mkdirSync(home, { mode: 0o700 });
      for (const args of [['template', 'inspect', 'X'], ['template', 'rm', 'X'], ['template', 'inspect', 'X', '--json']]) {
        const r = appshot(home, args);
        expect({ args, code: r.code }).toEqual({ args, code: 1 });
        expect(r.stderr).toBe(`appshot: there is no template 'X' in ${home}; 'appshot template list' lists them\n`);
      }
      expect(kind === 'an empty home' ? readdirSync(home) : existsSync(home)).toEqual(kind === 'an empty home' ? [] : false);
    });
  }

  it('restore and template create of a file that cannot be read make no home', () => {
    const home = join(makeHome(), 'home');
    const rules = join(home, '..', 'rules');
    writeFileSync(rules, '# no rules\n');
    for (const args of [['restore', '/nonexistent'], ['template', 'create', 'T', '--from', '/nonexistent'], ['template', 'create', 'T', '--from', rules, '--rules', rules], ['template', 'create', 'T', '--from', '/nonexistent', '--rules', rules]]) {
      const r = appshot(home, args);
      expect({ args, code: r.code }).toEqual({ args, code: args[0] === 'template' && args[4] === rules ? 5 : 1 });
      expect(r.stderr).not.toMatch(TRACE);
      expect(existsSync(home)).toBe(false);
    }
  });

  it('a home where something ran afterwards works as before: the empty view was not the tables', () => {
    const home = join(makeHome(), 'home');
    expect(appshot(home, ['tables', '--json']).stdout).toBe('[]\n');
    expect(appshot(home, ['run', '--keep', '--aid', 'later', '--', 'ipcmk', '-S', '1']).code).toBe(0);
    const rows = JSON.parse(appshot(home, ['tables', '--json']).stdout);
    expect(rows.map((r: { aid: string; type: string }) => `${r.aid} ${r.type}`)).toEqual(['later sem', 'later semkey']);
    expect(appshot(home, ['gc', '--kept']).code).toBe(0);
    expect(JSON.parse(appshot(home, ['tables', '--json']).stdout)).toEqual([]);
  });
});

describe('files that cannot be used: a line naming the path, the cause and the fix, no stack trace', () => {
  it('snapshot, restore, snapshot inspect and template create, each with a missing file, a directory and a path through a file', () => {
    const home = makeHome();
    const snap = semSnapshot(home);
    const dir = join(home, 'adir');
    mkdirSync(dir);
    const cases: [string[], number, RegExp][] = [
      [['restore', dir], 1, new RegExp(`^appshot: cannot read the snapshot ${dir}: it is a directory; give the path of a snapshot file that 'appshot snapshot AID -o FILE' wrote\\n$`)],
      [['restore', '/nonexistent'], 1, /^appshot: cannot read the snapshot \/nonexistent: no such file or directory; give the path of a snapshot file/],
      [['restore', `${snap}/x`], 1, /^appshot: cannot read the snapshot .*k\.snap\/x: a part of the path before its last name is not a directory; give the path/],
      [['snapshot', 'inspect', '/nonexistent'], 1, /^appshot: cannot read the snapshot \/nonexistent: no such file or directory; give the path/],
      [['snapshot', 'inspect', dir], 1, /^appshot: cannot read the snapshot .*adir: it is a directory; give the path/],
      [['snapshot', 'inspect', '/dev/null'], 1, /^appshot: cannot read the snapshot \/dev\/null: it is not a regular file; give the path/],
      [['template', 'create', 'T', '--from', '/nonexistent'], 1, /^appshot: cannot read the snapshot \/nonexistent: no such file or directory; give --from the path of a snapshot file .*; nothing was made\n$/],
      [['template', 'create', 'T', '--from', dir], 1, /^appshot: cannot read the snapshot .*adir: it is a directory; give --from the path of a snapshot file .*; nothing was made\n$/],
      [['template', 'create', 'T', '--from', snap, '--rules', '/nonexistent'], 1, /^appshot: cannot read the rules file \/nonexistent: no such file or directory; give --rules the path of a file of rules .*; nothing was made\n$/],
      [['template', 'create', 'T', '--from', snap, '--rules', dir], 1, /^appshot: cannot read the rules file .*adir: it is a directory; give --rules the path of a file of rules/],
    ];
    for (const [args, code, re] of cases) {
      const r = appshot(home, args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(re);
      expect(r.stderr).not.toMatch(TRACE);
    }
    // Nothing was made: no template, no application.
    expect(JSON.parse(appshot(home, ['template', 'list', '--json']).stdout)).toEqual([]);
    expect(JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout).map((a: { aid: string }) => a.aid)).toEqual(['k']);
  });

  it('snapshot -o a directory, a missing directory, a path through a file or a device: refused before the application is stopped, which runs on', async () => {
    const home = makeHome();
    const dir = join(home, 'adir');
    mkdirSync(dir);
    const h = appshotAsync(home, ['run', '--aid', 'live', '--', 'sh', '-c', 'echo ready; exec sleep 60']);
    await waitFor(h.out, /ready/);
    const cases: [string, RegExp][] = [
      [dir, new RegExp(`^appshot: cannot write the snapshot to ${dir}: it is a directory; give -o a file name, ${dir}/NAME.snap say\\n$`)],
      ['/nonexistent-dir/f', /^appshot: cannot write the snapshot to \/nonexistent-dir\/f: its directory \/nonexistent-dir does not exist; make it first, or give -o a file in a directory you can write\n$/],
      ['/etc/passwd/f', /^appshot: cannot write the snapshot to \/etc\/passwd\/f: a part of the path before its last name is not a directory; give -o a file in a directory you can write\n$/],
      ['/dev/null', /^appshot: cannot write the snapshot to \/dev\/null: it is not a regular file; give -o a regular file, or a new name\n$/],
    ];
    for (const [out, re] of cases) {
      const r = appshot(home, ['snapshot', 'live', '--ipc-only', '-o', out]);
      expect({ out, code: r.code }).toEqual({ out, code: 1 });
      expect(r.stderr).toMatch(re);
    }
    expect(readdirSync(dir)).toEqual([]); // no temporary file left in it
    expect(readdirSync(home).filter((f) => f.startsWith('.'))).toEqual([]);
    // Still running, not stopped: its processes are in state S.
    const ps = JSON.parse(appshot(home, ['ps', '--json', '--aid', 'live']).stdout) as { state: string }[];
    expect(ps.length).toBeGreaterThan(0);
    for (const p of ps) expect(p.state).not.toMatch(/^T/);
    // And a good -o after all that works.
    expect(appshot(home, ['snapshot', 'live', '--ipc-only', '-o', join(dir, 'live.snap')]).code).toBe(0);
    h.child.kill('SIGTERM');
    await h.done;
  });

  it.skipIf(!canMount())('snapshot -o a full filesystem: no space, exit 1, nothing left there, the application as it was', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--keep', '--aid', 'big', '--', 'ipcmk', '-M', '1048576']).code).toBe(0);
    const full = join(home, 'full');
    mkdirSync(full);
    // A 64 KiB filesystem in a mount namespace of this script's own.
    const script = 'mount -t tmpfs -o size=64k tmpfs "$1" && "$2" "$3" snapshot big -o "$1/big.snap"; echo "code=$?"; ls -A "$1"';
    const r = spawnSync('unshare', ['--mount', 'sh', '-c', script, 'sh', full, process.execPath, CLI_PATH], { encoding: 'utf8', env: { ...process.env, APPSHOT_HOME: home } });
    expect(r.stdout).toBe('code=1\n'); // and nothing in the full filesystem
    expect(r.stderr).toBe(`appshot: cannot write the snapshot to ${full}/big.snap: no space left on its filesystem; free some space there, or give -o a file on another filesystem; no snapshot was written\n`);
    expect(JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout)).toMatchObject([{ aid: 'big', state: 'kept' }]);
    expect(appshot(home, ['gc', '--kept']).code).toBe(0);
  });

  describe('a file this user may not read', () => {
    // Root reads everything: the reader is uid 65534, where the host lets us be it.
    const NOBODY = 65534;
    const asNobody = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];
    const parent = mkdtempSync(join(tmpdir(), 'appshot-rough-edges-'));
    afterAll(() => rmSync(parent, { recursive: true, force: true }));
    const canBeNobody = () =>
      process.getuid!() === 0 && spawnSync(asNobody[0], [...asNobody.slice(1), process.execPath, CLI_PATH, '--help'], { encoding: 'utf8' }).status === 0;

    it.skipIf(!canBeNobody())('snapshot inspect, restore and template create say permission denied and what to do, exit 1', () => {
      chmodSync(parent, 0o711);
      const secret = join(parent, 'secret.snap');
      writeFileSync(secret, 'not for nobody', { mode: 0o600 });
      const nobodyHome = join(parent, 'nobody-home'); // never made: nobody cannot write parent
      for (const args of [['snapshot', 'inspect', secret], ['restore', secret], ['template', 'create', 'T', '--from', secret]]) {
        const r = spawnSync(asNobody[0], [...asNobody.slice(1), process.execPath, CLI_PATH, ...args], { encoding: 'utf8', env: { ...process.env, APPSHOT_HOME: nobodyHome } });
        // restore and template create check the file before the home (which nobody could not make here).
        expect({ args, code: r.status }).toEqual({ args, code: 1 });
        expect(r.stderr).toBe(`appshot: cannot read the snapshot ${secret}: permission denied; run appshot as a user who may read it, or make it readable\n`);
      }
    });
  });
});

describe('templates and their snapshot path', () => {
  it('a template made from a relative path clones from any directory: the path is kept absolute', () => {
    const home = makeHome();
    semSnapshot(home);
    const elsewhere = join(home, 'elsewhere');
    mkdirSync(elsewhere);
    const c = appshotIn(home, home, ['template', 'create', 'rel', '--from', 'k.snap']);
    expect(c.code, c.stderr).toBe(0);
    const tpl = JSON.parse(appshotIn(home, home, ['template', 'inspect', 'rel', '--json']).stdout);
    expect(tpl.snapshot.file).toBe(join(home, 'k.snap'));
    const r = appshotIn(elsewhere, home, ['template', 'clone', 'rel', '--', 'true']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/clone 'rel-1' of template 'rel' ready/);
    expect(appshot(home, ['template', 'rm', 'rel']).code).toBe(0);
  });

  it('a template an earlier appshot made with a relative path: a clone from elsewhere says what to do, exit 1; from its directory it works', () => {
    const home = makeHome();
    semSnapshot(home);
    const elsewhere = join(home, 'elsewhere');
    mkdirSync(elsewhere);
    expect(appshotIn(home, home, ['template', 'create', 'old', '--from', 'k.snap']).code).toBe(0);
    // As the earlier appshot wrote it: the path as given.
    const file = join(home, 'templates', 'old.json');
    const tpl = JSON.parse(readFileSync(file, 'utf8'));
    tpl.snapshot.file = 'k.snap';
    writeFileSync(file, JSON.stringify(tpl));
    const r = appshotIn(elsewhere, home, ['template', 'clone', 'old', '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `appshot: made 0 of 1 clones of template 'old'; the remaining 1 was not made: template 'old' names its snapshot by the relative path k.snap (it was made by an earlier appshot), and from ${elsewhere} that names no file; nothing was cloned. Clone from the directory the template was made in, or make it again: appshot template rm old, then appshot template create old --from /the/full/path/of/k.snap`,
    );
    expect(r.stderr).not.toMatch(TRACE);
    const here = appshotIn(home, home, ['template', 'clone', 'old', '--', 'true']);
    expect(here.code, here.stderr).toBe(0);
    expect(appshot(home, ['template', 'rm', 'old']).code).toBe(0);
  });
});

describe('MULTIPLEX of a port the snapshot does not hold', () => {
  it('is refused with its line and column, as VIRTUALIZE is, and nothing is made', () => {
    const home = makeHome();
    const snap = semSnapshot(home);
    for (const rule of ['MULTIPLEX port 8080 PUBLIC 18080', 'MULTIPLEX port 8080', 'VIRTUALIZE port 8080']) {
      const rules = join(home, 'rules');
      writeFileSync(rules, `# a comment\n  ${rule}\n`);
      const r = appshot(home, ['template', 'create', 'T', '--from', snap, '--rules', rules]);
      expect({ rule, code: r.code }).toEqual({ rule, code: 2 });
      expect(r.stderr).toBe(`appshot: ${rules}:2:3: unknown resource: the snapshot holds no port 8080; nothing was made\n`);
    }
    expect(JSON.parse(appshot(home, ['template', 'list', '--json']).stdout)).toEqual([]);
  });
});
