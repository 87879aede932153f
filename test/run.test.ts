import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SEMTOOL, appshot, appshotAsync, kernelSems, makeHome, waitFor } from './helpers.js';

describe('appshot run', () => {
  it('with no command prints usage on stderr and exits 2', () => {
    const r = appshot(makeHome(), ['run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing required argument 'cmd/);
    expect(r.stdout).toBe('');
  });

  it('with a command that does not exist says "appshot: CMD: not found" and exits 127', () => {
    const r = appshot(makeHome(), ['run', '--', 'no-such-command-xyz']);
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('appshot: no-such-command-xyz: not found');
  });

  it('with a file that is not executable exits 126', () => {
    const home = makeHome();
    const file = join(home, 'plain.txt');
    writeFileSync(file, 'x');
    const r = appshot(home, ['run', '--', file]);
    expect(r.code).toBe(126);
    expect(r.stderr).toContain(`appshot: ${file}: Permission denied`);
  });

  it("exits with the command's status", () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--', 'sh', '-c', 'exit 7']).code).toBe(7);
    expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
  });

  it('exits 128+N when the command dies of signal N', () => {
    expect(appshot(makeHome(), ['run', '--', 'sh', '-c', 'kill -SEGV $$']).code).toBe(128 + 11);
  });

  it('passes the arguments after -- untouched, options included', () => {
    const r = appshot(makeHome(), ['run', '--', 'sh', '-c', 'echo "$@"', 'sh', '--aid', 'x', '--keep']);
    expect(r.stdout).toBe('--aid x --keep\n');
  });

  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)('forwards %s to the command', async (sig) => {
    const home = makeHome();
    const name = sig.slice(3);
    const run = appshotAsync(home, ['run', '--', 'sh', '-c', `trap 'echo got-${name}; exit 3' ${name}; echo ready; while :; do sleep 0.05; done`]);
    await waitFor(run.out, /ready/);
    run.child.kill(sig);
    const r = await run.done;
    expect(r.stdout).toContain(`got-${name}`);
    expect(r.code).toBe(3);
  });

  it('refuses an invalid --aid with exit 2', () => {
    const r = appshot(makeHome(), ['run', '--aid', 'bad name', '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("'bad name' is not a valid application ID");
  });

  it('names a new application app-N, unique', () => {
    const home = makeHome();
    const ids = [0, 1].map(() => appshot(home, ['run', '--', 'sh', '-c', 'echo $APPSHOT_AID']).stdout.trim());
    expect(ids[0]).toMatch(/^app-\d+$/);
    expect(ids[1]).toMatch(/^app-\d+$/);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('when APPSHOT_HOME cannot be created, names the path and the reason and creates nothing', () => {
    const base = makeHome();
    const file = join(base, 'a-file');
    writeFileSync(file, '');
    const home = join(file, 'home');
    const r = appshot(home, ['run', '--', 'true']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`cannot create APPSHOT_HOME ${home}: ENOTDIR`);
    expect(r.stderr).toContain('set APPSHOT_HOME to a directory you can write');
    expect(existsSync(join(base, 'tables.mdb'))).toBe(false);
  });

  it('when APPSHOT_HOME is on a read-only file system, says so', () => {
    const r = appshot('/proc/appshot-home', ['run', '--', 'true']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/APPSHOT_HOME \/proc\/appshot-home: E[A-Z]+/);
  });

  it('two runs with the same --aid at once: exactly one runs, the other is told which is running', async () => {
    const home = makeHome();
    const args = ['run', '--aid', 'same', '--', 'sh', '-c', 'echo started; sleep 1'];
    const [a, b] = [appshotAsync(home, args), appshotAsync(home, args)];
    const [ra, rb] = await Promise.all([a.done, b.done]);
    const ran = [ra, rb].filter((r) => r.stdout.includes('started'));
    const refused = [ra, rb].filter((r) => !r.stdout.includes('started'));
    expect(ran).toHaveLength(1);
    expect(ran[0].code).toBe(0);
    expect(refused).toHaveLength(1);
    expect(refused[0].code).toBe(3);
    expect(refused[0].stderr).toMatch(/application 'same' is already running \(harness pid \d+/);
  });

  it('reclaims a stale application of the same name: objects of a crashed harness go', async () => {
    const home = makeHome();
    const run = appshotAsync(home, ['run', '--aid', 'stale', '--', SEMTOOL, 'get', '0x5e0201', '1', 'c', 'pid', 'sleep', '100000']);
    const pid = Number((await waitFor(run.out, /pid (\d+)/))[1]);
    expect(kernelSems().some((s) => s.key === 0x5e0201)).toBe(true);
    // The harness and the whole application die at once.
    run.child.kill('SIGKILL');
    process.kill(pid, 'SIGKILL');
    await run.done;
    await waitFor(() => (existsSync(`/proc/${pid}`) ? '' : 'gone'), /gone/);
    const r = appshot(home, ['run', '--aid', 'stale', '--', 'true']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/reclaimed stale application 'stale': removed 1 semaphore set/);
    expect(kernelSems().some((s) => s.key === 0x5e0201)).toBe(false);
  });
});
