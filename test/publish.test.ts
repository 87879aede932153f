import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';
import { appshot, appshotAsync, freePort, makeHome, MODES, waitFor } from './helpers.js';

/** What a program sees of its socket calls (test/fixtures/sockcalls.py),
 * natively and under appshot, in both modes, through a published port. */
const SOCKCALLS = join(ROOT, 'test', 'fixtures', 'sockcalls.py');



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

/** The listeners a pool of one instance has on its public port, all on
 * address: the daemon's one, handing connections over (steer user); or,
 * steered in the kernel, the instance's member and the daemon's own, where
 * connections wait while no instance is in the group. */
function poolListeners(address: string, steer: string): string[] {
  return steer === 'kernel' ? [address, address] : [address];
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
  const home = makeHome();
  const h = appshotAsync(home, ['run', ...flags, '--publish', spec, '--', 'python3', '-u', SOCKCALLS, 'serve', ...args, '1']);
  await waitFor(h.out, /listening/);
  const where = listeners(pub);
  const steer = (JSON.parse(appshot(home, ['tables', '--type', 'publish', '--json']).stdout) as { pool: { steer: string } }[])[0].pool.steer;
  expect(await hello(client, pub)).toBe('ok\n');
  const r = await h.done;
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return { out: r.stdout, where, steer };
}

describe('published ports keep what the program bound', () => {
  it.each([
    ['an IPv4 server on 127.0.0.1, an IPv4 client', '4', '127.0.0.1', '127.0.0.1', '127.0.0.1'],
    ['an IPv6 server on :: (taking IPv4 too), an IPv4 client', '6', '::', '127.0.0.1', '*'],
    ['an IPv6 server on ::, an IPv6 client', '6', '::', '::1', '*'],
  ])('%s: accept (into 16 bytes), getsockname, getpeername, listener options as natively; public port on its address', async (_what, fam, host, client, where) => {
    const vport = await freePort(2);
    const want = await serveNative([fam, host, String(vport)], client, vport);
    expect(want).toMatch(/defer 7 rcvbuf 131072/); // TCP_DEFER_ACCEPT set after listen, read back rounded
    // Both modes at once, each its own public port: identity's is the
    // virtual port itself (docker's -p 8080:8080), which its own server
    // cannot then hold.
    const pubs = [vport, await freePort(2)];
    const got = await Promise.all(MODES.map(([, flags], i) => servePublished(flags, `${pubs[i]}:${vport}`, [fam, host, String(vport)], client, pubs[i])));
    got.forEach((g, i) => {
      expect(g.out).toBe(want);
      expect(g.where).toEqual(poolListeners(`${where}:${pubs[i]}`, g.steer));
    });
  });

  it('--publish IP:PUBLIC:VIRTUAL and [IPv6]:PUBLIC:VIRTUAL bind the public port on that address', async () => {
    const vport = await freePort(2);
    const pub = await freePort(2);
    const want = await serveNative(['4', '127.0.0.1', String(vport)], '127.0.0.1', vport);
    const want6 = await serveNative(['6', '::1', String(vport + 1)], '::1', vport + 1);
    const pub6 = await freePort(2);
    const [any, v6] = await Promise.all([
      servePublished(['--no-identity'], `0.0.0.0:${pub}:${vport}/tcp`, ['4', '127.0.0.1', String(vport)], '127.0.0.1', pub),
      servePublished(['--no-identity'], `[::1]:${pub6}:${vport + 1}`, ['6', '::1', String(vport + 1)], '::1', pub6),
    ]);
    expect(any.where).toEqual(poolListeners(`0.0.0.0:${pub}`, any.steer));
    expect(any.out).toBe(want);
    expect(v6.where).toEqual(poolListeners(`[::1]:${pub6}`, v6.steer));
    expect(v6.out).toBe(want6);
  });

  it('joining a pool published on another address: an error naming both, exit 3, nothing run', async () => {
    const vport = await freePort(2);
    const pub = await freePort(2);
    const home = makeHome();
    const first = appshotAsync(home, ['run', '--aid', 'first', '--publish', `127.0.0.1:${pub}:${vport}`, '--', 'python3', '-u', SOCKCALLS, 'serve', '4', '127.0.0.1', String(vport), '1']);
    await waitFor(first.out, /listening/);
    const r = appshotAsync(home, ['run', '--aid', 'second', '--publish', `0.0.0.0:${pub}:${vport}`, '--', 'touch', join(home, 'ran')]);
    const second = await r.done;
    expect(second.code).toBe(3);
    expect(second.stderr).toMatch(`appshot: port ${pub} is already published on 127.0.0.1, not on 0.0.0.0; publish it as 127.0.0.1:${pub}:VIRTUAL to join that pool`);
    expect(existsSync(join(home, 'ran'))).toBe(false);
    expect(await hello('127.0.0.1', pub)).toBe('ok\n');
    expect((await first.done).code).toBe(0);
  });

  it('a plain remapped bind: two applications each serve 127.0.0.1 on one port and each own client sees what it would natively', async () => {
    const vport = await freePort(2);
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
});
