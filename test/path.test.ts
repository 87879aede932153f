import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AppshotError } from '../ts/errors.js';
import { SHIM_PATH, builtProgram } from '../ts/paths.js';
import { normalizePath, putRedirects, redirectPath, redirectsOf } from '../ts/redirect.js';
import { registerApp } from '../ts/registry.js';
import { endApp } from '../ts/cleanup.js';
import { openTableDb, writeTxn } from '../ts/tabledb.js';
import { appshot, lines, makeHome, runNative, tablesJson, testRoot } from './helpers.js';

const PATHTOOL = builtProgram('pathtool');
const PATH_MAX = 4096;

/** A fresh place for one test: VIRT, which the program names and which
 * never exists, and REAL (and a twin of the same length for native runs),
 * where the files must end up. VIRT is shorter than REAL, so a path that
 * fits under VIRT can be too long once redirected. */
function place() {
  const base = mkdtempSync(join(testRoot(), 'path-'));
  const p = { base, virt: join(base, 'v'), real: join(base, 'real-shimmd'), native: join(base, 'real-native') };
  mkdirSync(p.real);
  mkdirSync(p.native);
  return p;
}

/** Every file and directory under dir, relative to it, sorted; the random
 * part of temporary names made uniform. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      out.push(relative(dir, join(d, e.name)).replace(/tmp-[A-Za-z0-9]{6}/, 'tmp-XXXXXX'));
      if (e.isDirectory()) walk(join(d, e.name));
    }
  };
  walk(dir);
  return out.sort();
}

function run(home: string, redirs: string[], cmd: string[]) {
  return appshot(home, ['run', ...redirs.flatMap((r) => ['--redir', r]), '--', ...cmd]);
}

describe('path redirection', () => {
  it('pathtool: every wrapped call under --redir gives what the real call gives on the real path', () => {
    const p = place();
    const native = runNative([p.native, String(PATH_MAX - p.native.length)], PATHTOOL);
    expect(native.code, native.stderr).toBe(0);
    const shim = run(makeHome(), [`${p.virt}=${p.real}`], [PATHTOOL, p.virt, String(PATH_MAX - p.real.length)]);
    expect(shim.stderr).toBe('');
    expect(shim.code).toBe(0);
    expect(shim.stdout).toBe(native.stdout);
    const out = lines(shim.stdout);
    expect(out.length).toBeGreaterThan(140);
    // The errors the kernel gives, and the one the shim gives for it.
    for (const want of [
      'mkdir(existing) err EEXIST',
      'open(missing) err ENOENT',
      'open(ENOTDIR) err ENOTDIR',
      'stat(PATH_MAX) err ENAMETOOLONG',
      'mkdir(PATH_MAX) err ENAMETOOLONG',
      'stat(PATH_MAX - 1) err ENOENT',
      'getcwd(one byte short) err ERANGE',
      'getcwd ok D/sub',
      'realpath ok D/sub/f',
      "readlinkat ok 'D/sub/f'",
    ])
      expect(out).toContain(want);
    // A fork child, a thread, and a program the application execs.
    for (const who of ['child', 'thread', 'exec']) expect(out).toContain(`${who}: open(O_CREAT) ok`);
    expect(out.filter((l) => / err /.test(l) && !/missing|existing|DIRx|RENAME_NOREPLACE|ENOTDIR|EISDIR|ENOTEMPTY|PATH_MAX|short|size 0|bad template/.test(l))).toEqual([]);
    expect(tree(p.real)).toEqual(tree(p.native));
    expect(tree(p.real)).toEqual(expect.arrayContaining(['sub/f', 'sub/from-child', 'sub/from-thread', 'sub/from-exec', 'sub/sock', 'sub/made-from-parent']));
    expect(existsSync(p.virt)).toBe(false);
  });

  it('an application without redirections: every wrapped call gives what it gives natively', () => {
    const p = place();
    const native = runNative([p.native, String(PATH_MAX - p.native.length)], PATHTOOL);
    const shim = run(makeHome(), [], [PATHTOOL, p.real, String(PATH_MAX - p.real.length)]);
    expect(shim.stderr).toBe('');
    expect(shim.stdout).toBe(native.stdout);
    expect(tree(p.real)).toEqual(tree(p.native));
  });

  it('python3: files, directories, the working directory, realpath, and a script run by its redirected path', () => {
    const p = place();
    const script = `
import os, subprocess, sys
V = sys.argv[1]
os.mkdir(V + '/py')
with open(V + '/py/a.txt', 'w') as f:
    f.write('alpha')
print('read', open(V + '/py/a.txt').read())
print('size', os.stat(V + '/py/a.txt').st_size)
os.rename(V + '/py/a.txt', V + '/py/b.txt')
print('listdir', sorted(os.listdir(V + '/py')))
os.chdir(V + '/py')
print('getcwd', os.getcwd())
print('realpath', os.path.realpath('b.txt'))
print('realpath abs', os.path.realpath(V + '/py/../py/./b.txt'))
with open(V + '/py/run.sh', 'w') as f:
    f.write('#!/bin/sh\\necho "script says $(cat ' + V + '/py/b.txt) from $(pwd)"\\n')
os.chmod(V + '/py/run.sh', 0o755)
print(subprocess.run([V + '/py/run.sh'], capture_output=True, text=True).stdout.strip())
os.remove(V + '/py/b.txt')
print('exists', os.path.exists(V + '/py/b.txt'))
`;
    const r = run(makeHome(), [`${p.virt}=${p.real}`], ['python3', '-c', script, p.virt]);
    expect(r.stderr).toBe('');
    expect(lines(r.stdout)).toEqual([
      'read alpha',
      'size 5',
      "listdir ['b.txt']",
      `getcwd ${p.virt}/py`,
      `realpath ${p.virt}/py/b.txt`,
      `realpath abs ${p.virt}/py/b.txt`,
      `script says alpha from ${p.virt}/py`,
      'exists False',
    ]);
    expect(tree(p.real)).toEqual(['py', 'py/run.sh']);
    expect(existsSync(p.virt)).toBe(false);
  });

  it('sh and coreutils: cat, ls, mkdir -p, mv, rm, cp, stat', () => {
    const p = place();
    const script = `set -e
V=$1
mkdir -p $V/sh/x/y
echo one > $V/sh/x/y/f
cat $V/sh/x/y/f
cp $V/sh/x/y/f $V/sh/x/g
mv $V/sh/x/g $V/sh/x/h
ls $V/sh/x
stat -c '%s %F' $V/sh/x/h
cp -r $V/sh/x $V/sh/z
ls $V/sh/z/y
rm $V/sh/x/h
rm -r $V/sh/z
ls $V/sh
cd $V/sh/x
/bin/pwd
`;
    const r = run(makeHome(), [`${p.virt}=${p.real}`], ['sh', '-c', script, 'sh', p.virt]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(lines(r.stdout)).toEqual(['one', 'h', 'y', '4 regular file', 'f', 'x', `${p.virt}/sh/x`]);
    expect(tree(p.real)).toEqual(['sh', 'sh/x', 'sh/x/y', 'sh/x/y/f']);
    expect(existsSync(p.virt)).toBe(false);
  });

  it('compares by components: a name that begins with FROM is not covered, // and /./ are skipped, .. is not resolved', () => {
    const p = place();
    mkdirSync(`${p.virt}x`);
    writeFileSync(`${p.virt}x/f`, 'sibling');
    writeFileSync(join(p.real, 'f'), 'real');
    const r = run(makeHome(), [`${p.virt}=${p.real}`], ['sh', '-c', 'cat "$1x/f"; echo; cat "$1//./f"; echo; cat "$1x/../v/f" 2>&1; true', 'sh', p.virt]);
    expect(lines(r.stdout)).toEqual(['sibling', 'real', `cat: ${p.virt}x/../v/f: No such file or directory`]);
  });

  it('runs a command named by a redirected path', () => {
    const p = place();
    writeFileSync(join(p.real, 'hello.sh'), '#!/bin/sh\necho "hello as $0"\n', { mode: 0o755 });
    const r = run(makeHome(), [`${p.virt}=${p.real}`], [join(p.virt, 'hello.sh')]);
    expect(r.stderr).toBe('');
    // The kernel hands a script's interpreter the path it executed: the
    // system one (a limit the README states).
    expect(r.stdout).toBe(`hello as ${p.real}/hello.sh\n`);
  });

  it('clones of one program each get their own files and their own AF_UNIX socket at the same path', () => {
    const p = place();
    const other = join(p.base, 'real-second');
    mkdirSync(other);
    const server = `
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.bind(sys.argv[1] + '/app.sock')
except OSError as e:
    sys.exit(f'bind: {e.strerror}')
s.listen()
c = socket.socket(socket.AF_UNIX)
c.connect(sys.argv[1] + '/app.sock')
open(sys.argv[1] + '/who', 'w').write(sys.argv[2])
print('bound and connected', flush=True)
`;
    const home = makeHome();
    const first = run(home, [`${p.virt}=${p.real}`], ['python3', '-c', server, p.virt, 'first']);
    expect(first.stderr).toBe('');
    // Its socket file stays: a second bind at the same system path fails...
    const again = run(home, [`${p.virt}=${p.real}`], ['python3', '-c', server, p.virt, 'again']);
    expect(again.stderr).toContain('bind: Address already in use');
    // ...while a clone redirected elsewhere binds the same virtual path.
    const second = run(home, [`${p.virt}=${other}`], ['python3', '-c', server, p.virt, 'second']);
    expect(second.stderr).toBe('');
    expect(second.stdout).toBe('bound and connected\n');
    expect(readFileSync(join(p.real, 'who'), 'utf8')).toBe('first');
    expect(readFileSync(join(other, 'who'), 'utf8')).toBe('second');
    expect(existsSync(join(p.real, 'app.sock')) && existsSync(join(other, 'app.sock'))).toBe(true);
    expect(existsSync(p.virt)).toBe(false);
  });

  it('a snapshot carries the redirections, and the restored application has them', () => {
    const p = place();
    writeFileSync(join(p.real, 'f'), 'kept data');
    const home = makeHome();
    const file = join(p.base, 'snap');
    expect(appshot(home, ['run', '--aid', 'orig', '--keep', '--redir', `${p.virt}=${p.real}`, '--', 'true']).code).toBe(0);
    expect(appshot(home, ['snapshot', 'orig', '--ipc-only', '-o', file, '--stop']).code).toBe(0);
    expect(appshot(home, ['snapshot', 'inspect', file]).stdout).toContain(`redirected paths: ${p.virt} -> ${p.real}`);
    const r = appshot(home, ['restore', file, '--aid', 'copy', '--', 'cat', join(p.virt, 'f')]);
    expect(r.stdout).toBe('kept data');
    expect(r.code).toBe(0);
  });

  describe('--redir refuses bad input with exit 2, before anything runs', () => {
    it.each([
      ['no =', ['/srv/app'], "--redir '/srv/app' is not FROM=TO"],
      ['FROM not absolute', ['srv/app=/x'], "--redir 'srv/app=/x': path 'srv/app' is not absolute"],
      ['TO not absolute', ['/srv/app=x'], "--redir '/srv/app=x': path 'x' is not absolute"],
      ['FROM empty', ['=/x'], "--redir '=/x': path '' is not absolute"],
      ['FROM /', ['/=/x'], "FROM is '/', which would redirect every path"],
      ['FROM / written otherwise', ['//./=/x'], "FROM is '/', which would redirect every path"],
      ['FROM equal to TO', ['/srv/app=/srv/./app/'], 'FROM and TO are the same path'],
      ['FROM twice', ['/srv/app=/a', '/srv//app/=/b'], 'FROM /srv/app is given twice (-> /a and -> /b); give each FROM once'],
      ['FROM too long', [`/${'a'.repeat(PATH_MAX)}=/x`], 'and the kernel takes paths shorter than 4096'],
    ])('%s', (_what, redirs, message) => {
      const home = makeHome();
      const marker = join(home, 'ran');
      const r = run(home, redirs, ['sh', '-c', `touch ${marker}`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toMatch(/^appshot: /);
      expect(existsSync(marker)).toBe(false);
      expect(existsSync(join(home, 'tables.mdb'))).toBe(false);
    });

    it('FROM covering APPSHOT_HOME', () => {
      const home = makeHome();
      const r = run(home, [`${testRoot()}=/elsewhere`], ['true']);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`FROM covers APPSHOT_HOME (${home})`);
    });
  });

  it('appshot tables --type path lists the redirections; they go when the application ends', () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--aid', 'web-1', '--keep', '--redir', '/srv/app/config=/srv/app/web-1/config', '--redir', '/srv/app/data/=/srv/data//web-1', '--', 'true']);
    expect(r.code).toBe(0);
    const rows = tablesJson(home, ['--type', 'path']);
    expect(rows.map(({ aid, type, virtual, system, key, creator }) => ({ aid, type, virtual, system, key, creator }))).toEqual([
      { aid: 'web-1', type: 'path', virtual: '/srv/app/config', system: '/srv/app/web-1/config', key: null, creator: null },
      { aid: 'web-1', type: 'path', virtual: '/srv/app/data', system: '/srv/data/web-1', key: null, creator: null },
    ]);
    expect(tablesJson(home).filter((x) => x.type === 'path')).toHaveLength(2);
    expect(appshot(home, ['tables', '--type', 'path']).stdout).toMatch(/web-1 +path +\/srv\/app\/config +\/srv\/app\/web-1\/config/);
    expect(appshot(home, ['gc', '--kept']).code).toBe(0);
    expect(tablesJson(home, ['--type', 'path'])).toEqual([]);
    // Not kept: gone at the end.
    expect(appshot(home, ['run', '--redir', '/srv/x=/srv/y', '--', 'true']).code).toBe(0);
    expect(tablesJson(home, ['--type', 'path'])).toEqual([]);
  });

  it('tables written before the paths database existed: the shim runs the program with no redirections', () => {
    const home = makeHome();
    const p = place();
    const t = openTableDb(home, { create: true });
    registerApp(t, { aid: 'old-tables', command: ['pathtool'] });
    t.paths.dropSync();
    t.env.close();
    try {
      const r = spawnSync(PATHTOOL, [p.real, String(PATH_MAX - p.real.length)], {
        encoding: 'utf8',
        env: { ...process.env, LD_PRELOAD: SHIM_PATH, APPSHOT_AID: 'old-tables', APPSHOT_HOME: home },
      });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(runNative([p.native, String(PATH_MAX - p.native.length)], PATHTOOL).stdout);
    } finally {
      const again = openTableDb(home); // makes the paths database again
      endApp(again, 'old-tables', { keep: false });
      again.env.close();
    }
  });

  describe('the library', () => {
    it('normalizePath: lexical, absolute, short enough', () => {
      expect(normalizePath('/a//b/./c/../d/')).toBe('/a/b/d');
      expect(normalizePath('/../..')).toBe('/');
      expect(normalizePath('/srv/données/')).toBe('/srv/données');
      for (const bad of ['a/b', '', './x', `/${'x'.repeat(PATH_MAX)}`]) {
        expect(() => normalizePath(bad)).toThrow(AppshotError);
        try {
          normalizePath(bad);
        } catch (err) {
          expect((err as AppshotError).exitCode).toBe(2);
          expect((err as AppshotError).message).toContain(`'${bad.slice(0, 20)}`);
        }
      }
    });

    it('redirectPath matches as the shim does: skips // and /./, resolves nothing else', () => {
      const list = [
        { from: '/srv/app/config', to: '/srv/app/web-1/config' },
        { from: '/srv/app', to: '/srv/web-1' },
      ];
      expect(redirectPath(list, '/srv/app/config')).toBe('/srv/app/web-1/config');
      expect(redirectPath(list, '//srv/./app//config/x')).toBe('/srv/app/web-1/config/x');
      expect(redirectPath(list, '/srv/app/configs')).toBe('/srv/web-1/configs');
      expect(redirectPath(list, '/srv/apps')).toBe('/srv/apps');
      expect(redirectPath(list, '/srv/x/../app')).toBe('/srv/x/../app');
      expect(redirectPath(list, 'srv/app')).toBe('srv/app');
    });

    it('putRedirects replaces an application\'s rows, in order; redirectsOf reads them back', () => {
      const t = openTableDb(makeHome(), { create: true });
      try {
        writeTxn(t, () => putRedirects(t, 'a', [{ from: '/x/', to: '/y' }, { from: '/p', to: '/q' }]));
        writeTxn(t, () => putRedirects(t, 'ab', [{ from: '/z', to: '/w' }]));
        expect(redirectsOf(t, 'a')).toEqual([{ from: '/x', to: '/y' }, { from: '/p', to: '/q' }]);
        writeTxn(t, () => putRedirects(t, 'a', [{ from: '/r', to: '/s' }]));
        expect(redirectsOf(t, 'a')).toEqual([{ from: '/r', to: '/s' }]);
        expect(redirectsOf(t, 'ab')).toEqual([{ from: '/z', to: '/w' }]);
        expect(() => writeTxn(t, () => putRedirects(t, 'a', [{ from: '/', to: '/s' }]))).toThrow(/FROM is '\/'/);
        expect(() => writeTxn(t, () => putRedirects(t, 'a', [{ from: '/s', to: '/s/' }]))).toThrow(/the same path/);
        expect(redirectsOf(t, 'a')).toEqual([{ from: '/r', to: '/s' }]);
      } finally {
        t.env.close();
      }
    });
  });
});
