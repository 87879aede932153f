/**
 * A whole snapshot of an application with a published port (`appshot run
 * --publish PUBLIC:VIRTUAL`): the program's listening descriptor is the
 * shim's pool channel (core/pool.h), captured as a listener of its virtual
 * port and handed at restore to the pool of the port the restored
 * application publishes. After `snapshot --stop` and `restore`, a client at
 * the public port reaches the restored program, which goes on counting from
 * where it was, and again after the restored application is snapshotted
 * and restored; a restore beside the running original joins its pool. A
 * template made from such a snapshot clones warm: the clone continues the
 * saved processes (issue 19), and its port joins the pool too. ckptapp (issue 18's item-1 program), identity and remapped;
 * node serving HTTP (libuv's epoll and non-blocking accept on the channel).
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, freePort, lineFrom, makeHome, stopAll, waitFor } from './helpers.js';

const CKPTAPP = builtProgram('ckptapp');
const CKPT_HTTP = join(import.meta.dirname, 'fixtures', 'ckpt-http.js');

afterEach(stopAll);

/** The counter a client at port gets. */
async function counterAt(port: number): Promise<number> {
  const line = await lineFrom(port);
  const m = /^counter (\d+) answer pong (\d+)\n$/.exec(line);
  if (!m) throw new Error(`port ${port} answered ${JSON.stringify(line)}`);
  return Number(m[1]);
}

/** GET / from 127.0.0.1:port: ckpt-http.js's "count N ticks T pid P", as [N, P]. */
function countAt(port: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const m = /^count (\d+) ticks \d+ pid (\d+)\n$/.exec(body);
        if (m) resolve([Number(m[1]), Number(m[2])]);
        else reject(new Error(`port ${port} answered ${JSON.stringify(body)}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET from ${port} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

const TICK = /^tick (\d+) counter (\d+) answer pong (\d+) events \d+$/gm;

/** The last tick line of an output: [tick, counter, pong]. */
function lastTick(out: string): number[] {
  const all = [...out.matchAll(TICK)];
  return all.length ? all[all.length - 1].slice(1, 4).map(Number) : [0, 0, 0];
}

/** The instances of the pool behind the home's published port (tables --json). */
function instances(home: string): { aid: string; handed: number }[] {
  const r = appshot(home, ['tables', '--type', 'publish', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { pool: { instances: { aid: string; handed: number }[] } | null }[])[0]?.pool?.instances ?? [];
}

describe.each(MODES)('a published port in a whole snapshot, %s', (_mode, flags) => {
  it('snapshot --stop and restore: a client at the public port reaches the restored program, which continues counting, again after a second snapshot and restore; a template from the snapshot clones warm into the pool', { timeout: 90_000 }, async () => {
    const home = makeHome();
    const pub = await freePort();
    let vport = await freePort();
    while (vport === pub) vport = await freePort();
    const h = appshotAsync(home, ['run', ...flags, '--aid', 'pa', '--publish', `${pub}:${vport}`, '--', CKPTAPP, 'serve', String(vport)]);
    await waitFor(() => (lastTick(h.out())[0] >= 3 ? 'ok' : ''), /ok/);
    const before = await counterAt(pub); // through the pool daemon
    expect(before).toBeGreaterThan(0);

    const file = join(home, 'pa.snap');
    const s = appshot(home, ['snapshot', 'pa', '-o', file, '--stop', '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ whole: true, stopped: true });
    expect((await h.done).code).toBe(137);
    const saved = lastTick(h.out());
    // The image names the program's listening descriptor as a listener of its virtual port.
    const ins = appshot(home, ['snapshot', 'inspect', file, '--json']);
    expect(ins.code, ins.stderr).toBe(0);
    expect(ins.stdout).toContain('pool-listen');

    const r = appshotAsync(home, ['restore', file, '--aid', 'pb']);
    // It goes on ticking from the saved tick, its counter from the saved counter.
    await waitFor(() => (lastTick(r.out())[0] > saved[0] + 2 ? 'ok' : ''), /ok/);
    const first = [...r.out().matchAll(TICK)][0].slice(1, 4).map(Number);
    expect(first[0]).toBeGreaterThan(saved[0]);
    expect(first[1]).toBeGreaterThanOrEqual(saved[1]);
    const after = await counterAt(pub);
    expect(after).toBeGreaterThanOrEqual(saved[1]);
    expect(instances(home).map((i) => i.aid)).toEqual(['pb']);
    expect(r.err()).not.toContain('cannot join the pool');

    // The restored application snapshotted and restored again: still continuing, still in the pool.
    const again = join(home, 'pb.snap');
    const s2 = appshot(home, ['snapshot', 'pb', '-o', again, '--stop']);
    expect(s2.code, s2.stderr).toBe(0);
    expect((await r.done).code).toBe(137);
    const saved2 = lastTick(r.out());
    const r2 = appshotAsync(home, ['restore', again, '--aid', 'pc']);
    await waitFor(() => (lastTick(r2.out())[0] > saved2[0] ? 'ok' : ''), /ok/);
    expect(await counterAt(pub)).toBeGreaterThanOrEqual(saved2[1]);
    expect(instances(home).map((i) => i.aid)).toEqual(['pc']);

    // A template from the whole snapshot: its clone continues ckptapp (warm) in the pool (issue 19).
    const t = appshot(home, ['template', 'create', 'pt', '--from', file]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).toContain(`appshot: clones of template 'pt' continue the 2 process(es) of ${file} where they were (warm)`);
    const c = appshotAsync(home, ['template', 'clone', 'pt', '-n', '1']);
    await waitFor(() => ([...c.out().matchAll(TICK)].length ? 'ok' : ''), /ok/);
    const cloned = [...c.out().matchAll(TICK)][0].slice(1, 4).map(Number);
    expect(cloned[0]).toBeGreaterThan(saved[0]); // continuing from the saved tick, not started again
    expect(cloned[1]).toBeGreaterThanOrEqual(saved[1]);
    expect(instances(home).map((i) => i.aid).sort()).toEqual(['pc', 'pt-1']);
    for (let i = 0; i < 4; i++) expect(await counterAt(pub)).toBeGreaterThan(0); // round robin over both
    expect(instances(home).every((i) => i.handed >= 2)).toBe(true);
  });
});

describe('a published port in a whole snapshot, beside the original', () => {
  it('restored while the original still runs: both are instances of one pool behind the public port, each with its own counter', { timeout: 60_000 }, async () => {
    const home = makeHome();
    const pub = await freePort();
    let vport = await freePort();
    while (vport === pub) vport = await freePort();
    const h = appshotAsync(home, ['run', '--aid', 'orig', '--publish', `${pub}:${vport}`, '--', CKPTAPP, 'serve', String(vport)]);
    await waitFor(() => (lastTick(h.out())[0] >= 3 ? 'ok' : ''), /ok/);
    const file = join(home, 'orig.snap');
    const s = appshot(home, ['snapshot', 'orig', '-o', file]);
    expect(s.code, s.stderr).toBe(0);
    const r = appshotAsync(home, ['restore', file, '--aid', 'twin']);
    await waitFor(() => (lastTick(r.out())[0] > 0 ? 'ok' : ''), /ok/);
    expect(instances(home).map((i) => i.aid).sort()).toEqual(['orig', 'twin']);
    for (let i = 0; i < 4; i++) expect(await counterAt(pub)).toBeGreaterThan(0);
    expect(instances(home).every((i) => i.handed >= 2)).toBe(true); // round robin: two connections each
  });
});

describe('a published port in a whole snapshot, node', () => {
  it('node serving HTTP (libuv: epoll, non-blocking accept) at a public port: restored, it answers there, its request count going on', { timeout: 60_000 }, async () => {
    const home = makeHome();
    const pub = await freePort();
    let vport = await freePort();
    while (vport === pub) vport = await freePort();
    const h = appshotAsync(home, ['run', '--aid', 'nw', '--publish', `${pub}:${vport}`, '--', process.execPath, CKPT_HTTP, String(vport)]);
    await waitFor(h.out, /^listening /m);
    expect((await countAt(pub))[0]).toBe(1);
    const [two, vpid] = await countAt(pub);
    expect(two).toBe(2);
    const file = join(home, 'nw.snap');
    const s = appshot(home, ['snapshot', 'nw', '-o', file, '--stop']);
    expect(s.code, s.stderr).toBe(0);
    await h.done;
    appshotAsync(home, ['restore', file, '--aid', 'nb']);
    // Refused until the restore's harness has published the port again (a
    // refused connection never reaches the program); once it listens, the
    // daemon holds a request until the restored process takes it.
    let first: number[] | undefined;
    for (const end = Date.now() + 20_000; !first; await new Promise((r) => setTimeout(r, 50)))
      first = await countAt(pub).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ECONNREFUSED' || Date.now() > end) throw err;
        return undefined;
      });
    expect(first).toEqual([3, vpid]);
    expect(await countAt(pub)).toEqual([4, vpid]);
  });
});
