import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';
import { appshot, appshotAsync, freePort, makeHome, MODES } from './helpers.js';

/** The socket calls' arguments as a program passes them (test/fixtures/
 * sockcalls.py): bad pointers, vectors of messages, privileged ports, and
 * the --publish forms; natively and under appshot in both modes. */
const SOCKCALLS = join(ROOT, 'test', 'fixtures', 'sockcalls.py');



describe('socket call arguments get the kernel\'s answers', () => {
  it.each([
    ['bad pointers to bind, connect, getsockname, getpeername, accept, sendto, sendmsg, recvfrom: EFAULT', 'badptr', /Bad address/g, 11],
    ['sendmmsg to a virtual port, recvmmsg giving the senders\' virtual ports, sendmmsg back to them', 'mmsg', /from 16 127.0.0.1/g, 2],
  ])('%s, as natively, in both modes', async (_what, cmd, mark, count) => {
    const port = await freePort(2);
    const want = spawnSync('python3', [SOCKCALLS, cmd, String(port)], { encoding: 'utf8' });
    expect(want.status).toBe(0);
    expect(want.stdout.match(mark)).toHaveLength(count);
    const runs = await Promise.all(MODES.map(([, flags]) => appshotAsync(makeHome(), ['run', ...flags, '--', 'python3', SOCKCALLS, cmd, String(port)]).done));
    for (const r of runs) {
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
