import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';
import { appshot, appshotAsync, makeHome, waitFor } from './helpers.js';

/** What a program sees of its socket calls (test/fixtures/sockcalls.py),
 * natively and under appshot, in both modes, through a published port. */
const SOCKCALLS = join(ROOT, 'test', 'fixtures', 'sockcalls.py');
const MODES = [
  ['identity', [] as string[]],
  ['remapped', ['--no-identity']],
] as const;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, () => s.close(() => resolve(true)));
  });
}

/** A port free on this host, chosen at random so that two test runs at
 * once do not meet. */
async function freePort(): Promise<number> {
  for (;;) {
    const p = 30000 + Math.floor(Math.random() * 10000);
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
}

/** One connection to host:port that sends a byte and reads the answer. */
function hello(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host, port }, () => s.write('x'));
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
}

/** The listening sockets on port, as ss prints their local addresses. */
function listeners(port: number): string[] {
  const out = spawnSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).stdout;
  return out.trim().split('\n').filter(Boolean).map((l) => l.split(/\s+/)[3]);
}

/** The server natively: what it prints for one connection from client. */
async function serveNative(args: string[], client: string, port: number): Promise<string> {
  const child = spawn('python3', ['-u', SOCKCALLS, 'serve', ...args, '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const done = new Promise((r) => child.on('close', r));
  await waitFor(() => out, /listening/);
  expect(await hello(client, port)).toBe('ok\n');
  await done;
  return out;
}

/** The same server under appshot with --publish spec, the client at the
 * public port: what it prints, and where the public port listens. */
async function servePublished(flags: readonly string[], spec: string, args: string[], client: string, pub: number) {
  const h = appshotAsync(makeHome(), ['run', ...flags, '--publish', spec, '--', 'python3', '-u', SOCKCALLS, 'serve', ...args, '1']);
  await waitFor(h.out, /listening/);
  const where = listeners(pub);
  expect(await hello(client, pub)).toBe('ok\n');
  const r = await h.done;
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return { out: r.stdout, where };
}

describe('published ports keep what the program bound', () => {
  it.each([
    ['an IPv4 server on 127.0.0.1, an IPv4 client', '4', '127.0.0.1', '127.0.0.1', '127.0.0.1'],
    ['an IPv6 server on :: (taking IPv4 too), an IPv4 client', '6', '::', '127.0.0.1', '*'],
    ['an IPv6 server on ::, an IPv6 client', '6', '::', '::1', '*'],
  ])('%s: accept (into 16 bytes), getsockname, getpeername, listener options as natively; public port on its address', async (_what, fam, host, client, where) => {
    const vport = await freePort();
    const want = await serveNative([fam, host, String(vport)], client, vport);
    expect(want).toMatch(/defer 7 rcvbuf 131072/); // TCP_DEFER_ACCEPT set after listen, read back rounded
    // Both modes at once, each its own public port.
    const pubs = [await freePort(), await freePort()];
    const got = await Promise.all(MODES.map(([, flags], i) => servePublished(flags, `${pubs[i]}:${vport}`, [fam, host, String(vport)], client, pubs[i])));
    got.forEach((g, i) => {
      expect(g.out).toBe(want);
      expect(g.where).toEqual([`${where}:${pubs[i]}`]);
    });
  });

  it('--publish IP:PUBLIC:VIRTUAL and [IPv6]:PUBLIC:VIRTUAL bind the public port on that address', async () => {
    const vport = await freePort();
    const pub = await freePort();
    const want = await serveNative(['4', '127.0.0.1', String(vport)], '127.0.0.1', vport);
    const any = await servePublished(['--no-identity'], `0.0.0.0:${pub}:${vport}/tcp`, ['4', '127.0.0.1', String(vport)], '127.0.0.1', pub);
    expect(any.where).toEqual([`0.0.0.0:${pub}`]);
    expect(any.out).toBe(want);
    const v6 = await servePublished(['--no-identity'], `[::1]:${pub}:${vport}`, ['6', '::1', String(vport)], '::1', pub);
    expect(v6.where).toEqual([`[::1]:${pub}`]);
    expect(v6.out).toBe(await serveNative(['6', '::1', String(vport)], '::1', vport));
  });

  it('a plain remapped bind: two applications each serve 127.0.0.1 on one port and each own client sees what it would natively', async () => {
    const vport = await freePort();
    const args = ['-u', SOCKCALLS, 'serve', '4', '127.0.0.1', String(vport), '2', '127.0.0.1'];
    const want = spawnSync('python3', args, { encoding: 'utf8' }).stdout;
    expect(want).toContain(`own ('127.0.0.1', ${vport})`);
    const home = makeHome();
    const runs = await Promise.all(['one', 'two'].map((aid) => appshotAsync(home, ['run', '--aid', aid, '--no-identity', '--', 'python3', ...args]).done));
    for (const r of runs) {
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(want);
    }
  });

  it('bad pointers to bind, connect, getsockname, getpeername, accept, sendto, sendmsg, recvfrom: EFAULT as natively, in both modes', async () => {
    const port = await freePort();
    const want = spawnSync('python3', [SOCKCALLS, 'badptr', String(port)], { encoding: 'utf8' });
    expect(want.status).toBe(0);
    expect(want.stdout.match(/Bad address/g)).toHaveLength(11);
    for (const [, flags] of MODES) {
      const r = appshot(makeHome(), ['run', ...flags, '--', 'python3', SOCKCALLS, 'badptr', String(port)]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(want.stdout);
    }
  });

  it('a privileged virtual port (81) for a process without CAP_NET_BIND_SERVICE: EACCES as natively, in both modes; with it, bound', async () => {
    const drop = ['setpriv', '--bounding-set', '-net_bind_service', '--inh-caps', '-net_bind_service'];
    const cmd = ['python3', SOCKCALLS, 'privileged', '81'];
    const want = spawnSync(drop[0], [...drop.slice(1), ...cmd], { encoding: 'utf8' }).stdout;
    expect(want).toBe('AF_INET refused EACCES\nAF_INET6 refused EACCES\n');
    const runs = [...MODES.map(([, flags]) => [...flags, '--', ...drop, ...cmd]), ['--no-identity', '--', ...cmd]];
    const [identity, remapped, capable] = await Promise.all(runs.map((args) => appshotAsync(makeHome(), ['run', ...args]).done));
    expect(identity.stdout).toBe(want);
    expect(remapped.stdout).toBe(want);
    // Remapped, a process that has it binds the virtual port (a system port of the range).
    expect(capable.stdout).toBe('AF_INET bound 81\nAF_INET6 bound 81\n');
  });

  it.each([
    [['--publish', '8080:80/udp'], /--publish '8080:80\/udp': only TCP ports are published, not 'udp'/],
    [['--publish', '1.2.3:8080:80'], /--publish '1.2.3:8080:80' is not .*: '1.2.3' is not an IPv4 address/],
    [['--publish', '[zz]:8080:80'], /'zz' is not an IPv6 address/],
  ])('bad --publish %j: a message naming it, exit 2, nothing run', (args, message) => {
    const home = makeHome();
    const r = appshot(home, ['run', ...args, '--', 'touch', join(home, 'ran')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(existsSync(join(home, 'ran'))).toBe(false);
  });
});
