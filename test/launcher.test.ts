import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_PATH, COMMAND_PATH, ROOT } from '../ts/paths.js';
import { makeHome, testRoot } from './helpers.js';

// bin/appshot, the command npm puts on PATH, starts appshot's Node without
// NODE_EXTRA_CA_CERTS (Node parses those certificates as it starts); the
// programs it runs must still get the environment they were given.
const SHOW = 'echo "[${NODE_EXTRA_CA_CERTS-unset}] [${APPSHOT_NODE_EXTRA_CA_CERTS-unset}]"';

function launch(home: string, env: Record<string, string | undefined>, via = COMMAND_PATH) {
  const full: NodeJS.ProcessEnv = { ...process.env, APPSHOT_HOME: home, ...env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete full[k];
  delete full.LD_PRELOAD;
  delete full.APPSHOT_AID;
  return spawnSync(via, ['run', '--', 'sh', '-c', SHOW], { env: full, encoding: 'utf8', timeout: 30_000 });
}

describe('the appshot command hands NODE_EXTRA_CA_CERTS on to the program unchanged', () => {
  const home = makeHome();
  it.each([
    ['set', '/etc/ssl/certs/ca-certificates.crt', '[/etc/ssl/certs/ca-certificates.crt] [unset]'],
    ['set and empty', '', '[] [unset]'],
    ['unset', undefined, '[unset] [unset]'],
  ])('%s', (_what, value, seen) => {
    const r = launch(home, { NODE_EXTRA_CA_CERTS: value, APPSHOT_NODE_EXTRA_CA_CERTS: undefined });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(seen);
  });

  it('through a symbolic link, as npm link installs it', () => {
    const link = join(mkdtempSync(join(testRoot(), 'bin-')), 'appshot');
    symlinkSync(COMMAND_PATH, link);
    const r = launch(home, { NODE_EXTRA_CA_CERTS: '/x.pem' }, link);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('[/x.pem] [unset]');
  });
});

// bin/appshot.cjs runs the bundle scripts/bundle.mjs makes (dist/appshot.cjs)
// with a V8 code cache made at build time. A cache is an optimisation only:
// the command must run the bundle's own code whatever cache lies beside it.
describe('the appshot command runs its bundle, with the code cache made for it', () => {
  const env = (home: string): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, APPSHOT_HOME: home };
    delete e.NODE_OPTIONS; // flags of vitest's would make V8 refuse any cache
    return e;
  };
  /** A copy of the command's files (bin/appshot.cjs, the bundle, its cache)
   * in a folder of its own, the package's other files linked. */
  function copyOfCommand(): string {
    const root = mkdtempSync(join(testRoot(), 'command-'));
    for (const dir of ['bin', 'dist']) mkdirSync(join(root, dir));
    for (const file of ['bin/appshot.cjs', 'bin/appshot.js', 'dist/appshot.cjs', 'dist/appshot.cjs.cache', 'package.json']) copyFileSync(join(ROOT, file), join(root, file));
    for (const dir of ['node_modules', 'build']) symlinkSync(join(ROOT, dir), join(root, dir));
    return root;
  }
  const cacheUsed = (root: string, home: string) =>
    spawnSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(join(root, 'bin', 'appshot.cjs'))}).compile().cacheUsed))`], { env: env(home), encoding: 'utf8' });

  it('the built cache is accepted, and the command answers through it', () => {
    const home = makeHome();
    const used = cacheUsed(ROOT, home);
    expect(used.status, used.stderr).toBe(0);
    expect(used.stdout).toBe('true');
    const r = spawnSync(process.execPath, [CLI_PATH, 'tables', '--json'], { env: env(home), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });

  it('a cache made for another bundle of the same length is not used: the new code runs', () => {
    const home = makeHome();
    const root = copyOfCommand();
    const bundle = join(root, 'dist', 'appshot.cjs');
    // A rebuild that changes one text and not the length: as scripts/bundle.mjs
    // would, the bundle ends with a new ID; the old cache stays beside it.
    const old = readFileSync(bundle, 'utf8');
    const rebuilt = old.replace('print the version of appshot', 'PRINT THE VERSION OF APPSHOT').replace(/[0-9a-f]\n$/, (c) => `${c[0] === '0' ? '1' : '0'}\n`);
    expect(rebuilt.length).toBe(old.length);
    expect(rebuilt).not.toBe(old);
    writeFileSync(bundle, rebuilt);
    expect(cacheUsed(root, home).stdout).toBe('false');
    const r = spawnSync(process.execPath, [join(root, 'bin', 'appshot.cjs'), '--help'], { env: env(home), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('PRINT THE VERSION OF APPSHOT');
  });

  it('a damaged cache is refused by V8 and the command runs all the same', () => {
    const home = makeHome();
    const root = copyOfCommand();
    const cache = join(root, 'dist', 'appshot.cjs.cache');
    const data = readFileSync(cache);
    data.fill(0x5a, data.indexOf('\n') + 1); // the ID kept, V8's part garbage
    writeFileSync(cache, data);
    expect(cacheUsed(root, home).stdout).toBe('false');
    const r = spawnSync(process.execPath, [join(root, 'bin', 'appshot.cjs'), '--version'], { env: env(home), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });

  it('bin/appshot.js, the earlier entry, runs the same command', () => {
    const home = makeHome();
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'appshot.js'), 'tables', '--json'], { env: env(home), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });

  it('without its bundle: what is missing and how to build it, exit 1', () => {
    const home = makeHome();
    const root = copyOfCommand();
    rmSync(join(root, 'dist', 'appshot.cjs'));
    const r = spawnSync(process.execPath, [join(root, 'bin', 'appshot.cjs'), 'tables'], { env: env(home), encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`appshot: ${join(root, 'dist', 'appshot.cjs')} cannot be read (ENOENT): build appshot with npm run build (npm install does it)\n`);
  });
});
