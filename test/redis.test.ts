import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { appshotAsync, freePort, makeHome, waitFor } from './helpers.js';

/**
 * redis-server in protected mode (its default: without a password it
 * answers only clients from loopback addresses), bound to 127.0.0.1,
 * behind --publish: it must see its client as 127.0.0.1, or it answers
 * DENIED.
 */



const server = (port: number, dir: string) => ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];

/** PING, then the client's and the server's addresses as the server sees
 * them (the client's own port as P), then the server told to end. */
function talk(port: number): string {
  const cli = (...args: string[]) => spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).stdout;
  const info = cli('CLIENT', 'INFO').split(' ').filter((f) => /^l?addr=/.test(f)).join(' ').replace(/^addr=(.*):\d+ /, 'addr=$1:P ');
  const out = `${cli('PING').trim()}\n${info}\n`;
  cli('SHUTDOWN', 'NOSAVE');
  return out;
}

describe('redis-server behind --publish', () => {
  it('protected mode, bound to 127.0.0.1: PING at the public port answers PONG and the client is 127.0.0.1, as natively, identity and remapped', async () => {
    const vport = await freePort();
    const dir = makeHome();
    const native = spawn(server(vport, dir)[0], server(vport, dir).slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let log = '';
    native.stdout.on('data', (d) => (log += d));
    await waitFor(() => log, /Ready to accept connections/);
    const want = talk(vport);
    await new Promise((r) => native.on('close', r));
    expect(want).toBe(`PONG\naddr=127.0.0.1:P laddr=127.0.0.1:${vport}\n`);
    for (const flags of [[], ['--no-identity']]) {
      const pub = await freePort();
      const home = makeHome();
      const app = appshotAsync(home, ['run', ...flags, '--publish', `${pub}:${vport}`, '--', ...server(vport, home)]);
      await waitFor(app.out, /Ready to accept connections/);
      expect(talk(pub)).toBe(want);
      const r = await app.done;
      expect(r.stderr).toBe('');
      expect(r.stdout).not.toContain('DENIED');
    }
  });
});
