import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';
import { appshot, appshotAsync, makeHome, portFree, tablesJson, waitFor } from './helpers.js';

const NETTOOL = join(ROOT, 'test', 'fixtures', 'nettool.py');

/** Ports the tests use: virtual ports programs bind, and public ones. A
 * test that needs a port free on the host checks it first. */
const VPORT = 8088;

function nettool(args: string[]): string[] {
  return ['python3', NETTOOL, ...args];
}

function native(args: string[]): { stdout: string; code: number | null } {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8' });
  return { stdout: r.stdout, code: r.status };
}


describe('virtual ports', () => {
  describe.each([
    ['identity', [] as string[]],
    ['remapped', ['--no-identity']],
  ])('%s', (_mode, flags) => {
    it.each([
      ['TCP over IPv4', 'tcp', '127.0.0.1'],
      ['TCP over IPv6 loopback', 'tcp', '::1'],
      ['TCP over a v4-mapped address', 'tcp', '::ffff:127.0.0.1'],
      ['UDP echo over IPv4', 'udp', '127.0.0.1'],
      ['UDP echo over IPv6 loopback', 'udp', '::1'],
    ])('%s: server and client see the virtual port, as natively', async (_what, cmd, host) => {
      expect(await portFree(VPORT)).toBe(true);
      const want = native(nettool([cmd, host, String(VPORT)]));
      expect(want.code).toBe(0);
      const r = appshot(makeHome(), ['run', ...flags, '--', ...nettool([cmd, host, String(VPORT)])]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(want.stdout);
      expect(r.stdout).toContain(`${VPORT}`);
    });
  });

  it('a remapped port is another system port from the range, and is the leased one again on the next bind', () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--aid', 'lease', '--keep', '--no-identity', '--port-range', '20100-20199', '--', ...nettool(['tcp', '127.0.0.1', String(VPORT)])]);
    expect(r.code).toBe(0);
    // The server's port and the client's (it binds VPORT + 1).
    const rows = tablesJson(home, ['--type', 'port']);
    expect(rows).toMatchObject([
      { aid: 'lease', type: 'port', virtual: VPORT, proto: 'tcp' },
      { aid: 'lease', type: 'port', virtual: VPORT + 1, proto: 'tcp' },
    ]);
    const system = rows[0].system;
    expect(system).toBeGreaterThanOrEqual(20100);
    expect(system).toBeLessThanOrEqual(20199);
    // The kept application runs again: its virtual port finds its lease.
    expect(appshot(home, ['run', '--aid', 'lease', '--keep', '--no-identity', '--port-range', '20100-20199', '--', ...nettool(['bind', '127.0.0.1', String(VPORT)])]).stdout).toBe(`bound ${VPORT}\n`);
    expect(tablesJson(home, ['--type', 'port'])[0]).toMatchObject({ virtual: VPORT, system });
    expect(appshot(home, ['gc', '--kept']).code).toBe(0);
    expect(tablesJson(home, ['--type', 'port'])).toEqual([]);
  });

  it('two copies of python3 -m http.server 8080 run at once, each reached on 8080 by a client inside its own application', async () => {
    const home = makeHome();
    const copies = ['one', 'two'].map((name) => {
      const dir = join(home, name);
      mkdirSync(dir);
      writeFileSync(join(dir, 'who.txt'), `${name}\n`);
      // The server announces itself once it listens; the client waits for
      // that (not for a connect, which before its own server is up would
      // reach the other copy: a port the application has not bound is
      // not translated), then for the go-ahead.
      const script = `python3 -u -m http.server 8080 --bind 127.0.0.1 --directory ${dir} > ${dir}/server.log 2>&1 & server=$!
        until grep -q Serving ${dir}/server.log; do sleep 0.05; done
        echo listening
        until [ -e ${home}/go ]; do sleep 0.05; done
        python3 ${NETTOOL} get 127.0.0.1 8080 /who.txt
        kill $server; wait $server 2>/dev/null; true`;
      return appshotAsync(home, ['run', '--aid', `http-${name}`, '--', 'sh', '-c', script]);
    });
    for (const c of copies) await waitFor(c.out, /listening/);
    const rows = tablesJson(home, ['--type', 'port']);
    expect(rows.map((r) => [r.aid, r.virtual]).sort()).toEqual([
      ['http-one', 8080],
      ['http-two', 8080],
    ]);
    expect(new Set(rows.map((r) => r.system)).size).toBe(2);
    writeFileSync(join(home, 'go'), '');
    const [one, two] = await Promise.all(copies.map((c) => c.done));
    expect(one.stdout).toBe('listening\none\n');
    expect(two.stdout).toBe('listening\ntwo\n');
    expect(one.code).toBe(0);
    expect(two.code).toBe(0);
  });

  it('two programs of one application binding one virtual port: the second gets EADDRINUSE, as natively', async () => {
    expect(await portFree(VPORT)).toBe(true);
    expect(native(nettool(['twice', '127.0.0.1', String(VPORT)])).stdout).toBe('bind failed EADDRINUSE\n');
    for (const flags of [[], ['--no-identity']]) {
      const r = appshot(makeHome(), ['run', ...flags, '--', ...nettool(['twice', '127.0.0.1', String(VPORT)])]);
      expect(r.stdout).toBe('bind failed EADDRINUSE\n');
      expect(r.stderr).toBe('');
    }
  });

  it('the port range exhausted: EADDRINUSE, and a line on stderr naming the range', () => {
    // The tcp program takes two ports (its server's and its client's): the range's two.
    const script = `python3 ${NETTOOL} tcp 127.0.0.1 ${VPORT} >/dev/null && python3 ${NETTOOL} bind 127.0.0.1 ${VPORT + 2}`;
    const r = appshot(makeHome(), ['run', '--aid', 'narrow', '--no-identity', '--port-range', '20300-20301', '--', 'sh', '-c', script]);
    expect(r.stdout).toBe('bind failed EADDRINUSE\n');
    expect(r.stderr).toContain(`appshot: no free system port for virtual port ${VPORT + 2}/tcp of application 'narrow': every port of the range 20300-20301 is taken`);
    expect(r.stderr).toContain('--port-range');
  });

  it('a port the application did not bind is not translated: a connect goes where it says', async () => {
    const home = makeHome();
    const outside = createServer((s) => s.end('outside\n'));
    await new Promise<void>((resolve) => outside.listen(VPORT, '127.0.0.1', resolve));
    try {
      const r = appshotAsync(home, ['run', '--no-identity', '--', 'python3', '-c', `import socket; print(socket.create_connection(("127.0.0.1", ${VPORT})).makefile().readline().strip())`]);
      expect((await r.done).stdout).toBe('outside\n');
    } finally {
      outside.close();
    }
  });

  it('port 0 is left to the kernel: an ephemeral port, no row', () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--keep', '--no-identity', '--', 'python3', '-c', 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(32768 <= s.getsockname()[1] <= 60999)']);
    expect(r.stdout).toBe('True\n');
    expect(tablesJson(home, ['--type', 'port'])).toEqual([]);
    expect(appshot(home, ['gc', '--kept']).code).toBe(0);
  });

  it.each([
    [['--publish', 'http'], /--publish 'http': public port 'http' is not a port number/],
    [['--publish', '8080:70000'], /virtual port '70000' is not a port number/],
    [['--publish', '1:2:3'], /--publish '1:2:3' is not PUBLIC:VIRTUAL/],
    [['--publish', '18080:80', '--publish', '18080:81'], /--publish names public port 18080 twice/],
    [['--port-range', '30000-20000'], /--port-range '30000-20000' is not LO-HI with LO <= HI/],
    [['--port-range', '0-10'], /--port-range low end '0' is not a port number/],
    [['--balance', 'random'], /argument 'random' is invalid. Allowed choices are rr, lc/],
  ])('bad input %j: a message naming it, exit 2, nothing run', (args, message) => {
    const home = makeHome();
    const r = appshot(home, ['run', ...args, '--', 'touch', join(home, 'ran')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(existsSync(join(home, 'ran'))).toBe(false);
  });
});
