/**
 * ckptapp (native/testprogs/ckptapp.c), issue 18's first real program for
 * whole-process snapshot and restore, under `appshot run` in both modes:
 * three threads counting in memory, a child answering over a pipe, an
 * eventfd and a timerfd in an epoll loop, a listening TCP socket on a
 * virtual port. No snapshot yet: this holds what the program shows before
 * one, which a restore must show going on.
 */
import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, freePort, lineFrom, makeHome, tablesJson, waitFor } from './helpers.js';

const CKPTAPP = builtProgram('ckptapp');
const LINE = /^counter (\d+) answer pong (\d+)\n$/;

describe.each(MODES)('ckptapp, %s', (mode, flags) => {
  it('counts in three threads, its child answers over the pipe, the timer ticks, and a client on the virtual port gets the counter and the answer', async () => {
    const home = makeHome();
    const port = await freePort();
    const app = appshotAsync(home, ['run', ...flags, '--aid', 'ck', '--', CKPTAPP, 'serve', String(port)]);
    expect(Number((await waitFor(app.out, /listening (\d+)/))[1])).toBe(port);
    const child = Number((await waitFor(app.out, /child (\d+)/))[1]);
    // Ticks go on, the counter grows, the child answers the latest pings.
    const first = await waitFor(app.out, /tick 3 counter (\d+) answer pong (\d+) events (\d+)/);
    const later = await waitFor(app.out, /tick 6 counter (\d+) answer pong (\d+) events (\d+)/);
    expect(Number(later[1])).toBeGreaterThan(Number(first[1]));
    expect(Number(later[2])).toBeGreaterThan(Number(first[2]));
    expect(Number(later[3])).toBeGreaterThan(0);

    // The child is one of the application's processes, under the vpid fork gave.
    const ps = JSON.parse(appshot(home, ['ps', '--aid', 'ck', '--json']).stdout) as { vpid: number; command: string }[];
    expect(ps.map((p) => p.vpid)).toContain(child);
    if (mode === 'remapped') expect(child).toBeGreaterThanOrEqual(0x10000000);

    // A client inside the application reaches the virtual port.
    const inside = appshot(home, ['exec', 'ck', '--', CKPTAPP, 'connect', String(port)]);
    expect(inside.stderr).toBe('');
    expect(inside.code).toBe(0);
    const seen = LINE.exec(inside.stdout)!;
    expect(Number(seen[1])).toBeGreaterThan(Number(first[1]));
    expect(Number(seen[2])).toBeGreaterThanOrEqual(Number(first[2]));

    // From outside, the system port the tables give: the port itself only
    // in identity mode.
    const rows = tablesJson(home, ['--aid', 'ck', '--type', 'port']);
    expect(rows.map((r) => r.virtual)).toEqual([port]);
    const system = rows[0].system as number;
    if (mode === 'remapped') expect(system).not.toBe(port);
    else expect(system).toBe(port);
    expect(await lineFrom(system)).toMatch(LINE);

    expect(appshot(home, ['stop', 'ck', '-t', '5']).code).toBe(0);
    const r = await app.done;
    expect(r.code).toBe(128 + 15); // SIGTERM
    expect(r.stderr).toBe('');
  });
});
