import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, makeHome, waitFor } from './helpers.js';

/**
 * A restored process's private memory is real anonymous memory: a page it
 * gives back with MADV_DONTNEED reads as zeros afterwards, as allocators
 * (jemalloc in redis, glibc's arenas) count on. Mapping the pages from the
 * image instead (--map-pages, the opt-in for clones sharing one image)
 * brings back the image's bytes there: shown too, as the README warns.
 * ckptzero checks its memory once the test makes its trigger file, after
 * the restore, and prints what it found.
 *
 * A dump that lets the processes go on lets them go once their memory is
 * copied out, before it writes the file (a shorter pause): the image must
 * still hold the state of the freeze.
 */

const CKPT = builtProgram('appshot-checkpoint');
const ZERO = builtProgram('ckptzero');
const MEM = builtProgram('ckptmem');
const FOUND = /^dontneed written=(\w+) stored=(\w+) kept=(\w+)$/m;

const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) c.kill('SIGKILL');
});

/** A program started without the shim; its output collected. */
function start(cmd: string, args: string[]) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, done, out: () => out, err: () => err };
}

/** ckptzero's report after a restore by the engine alone with flags. The
 * restored process writes to the file its stdout was (a regular file). */
async function engineRestore(flags: string[]): Promise<RegExpMatchArray> {
  const dir = makeHome();
  const [img, out, trigger] = [join(dir, 'zero.img'), join(dir, 'out'), join(dir, 'trigger')];
  writeFileSync(out, '');
  const app = start('sh', ['-c', `exec "$0" "$1" >"$2"`, ZERO, trigger, out]);
  await waitFor(() => readFileSync(out, 'utf8'), /^tick 3$/m);
  const d = spawnSync(CKPT, ['dump', '--pids', String(app.child.pid), '--out', img, '--kill'], { encoding: 'utf8' });
  expect(d.stderr).toBe('');
  expect(d.status).toBe(0);
  await app.done;
  const r = start(CKPT, ['restore', '--image', img, '--wait', ...flags]);
  const ticks = readFileSync(out, 'utf8').match(/^tick \d+$/gm)!.length;
  // Running again: it ticks on in the same file before it is asked.
  await waitFor(() => (readFileSync(out, 'utf8').match(/^tick \d+$/gm)!.length > ticks ? 'on' : ''), /on/);
  writeFileSync(trigger, '');
  expect(await r.done, r.err()).toBe(0);
  return readFileSync(out, 'utf8').match(FOUND)!;
}

describe('restored private memory is anonymous memory', () => {
  it('by default a page written then MADV_DONTNEEDed, and a page as saved then MADV_DONTNEEDed, read zeros; the rest kept', async () => {
    const m = await engineRestore([]);
    expect(m?.slice(1)).toEqual(['zero', 'zero', 'ok']);
  });

  it('with --map-pages (pages mapped from the image) the same pages come back with the saved bytes, the caveat of that option', async () => {
    const m = await engineRestore(['--map-pages']);
    expect(m?.slice(1)).toEqual(['stale', 'stale', 'ok']);
  });

  it.each(MODES)('%s: through appshot snapshot --stop and appshot restore, MADV_DONTNEED gives zeros', async (_mode, flags) => {
    const home = makeHome();
    const trigger = join(home, 'trigger');
    const h = appshotAsync(home, ['run', '--aid', 'orig', ...flags, '--', ZERO, trigger]);
    await waitFor(h.out, /^tick 3$/m);
    const file = join(home, 'orig.snap');
    const s = appshot(home, ['snapshot', 'orig', '-o', file, '--stop']);
    expect(s.stderr).toBe('');
    expect(s.code).toBe(0);
    await h.done;
    const back = appshotAsync(home, ['restore', file, '--aid', 'back']);
    await waitFor(back.out, /^tick \d+$/m);
    writeFileSync(trigger, '');
    const r = await back.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.match(FOUND)?.slice(1)).toEqual(['zero', 'zero', 'ok']);
  });
});

describe('a dump that lets the process go on', () => {
  /** ckptmem's "tick PID N SUM": [N, SUM]; SUM grows by one a tick. */
  const state = (l: string) => l.split(' ').slice(2).map(BigInt);
  const ticks = (out: string) => out.split('\n').filter((l) => l.startsWith('tick '));

  it('releases it before writing, and the image holds the state of the freeze: the restored tick count and memory agree, the original ran on', async () => {
    const dir = makeHome();
    const img = join(dir, 'mem.img');
    const app = start(MEM, ['32', '5']);
    await waitFor(() => (ticks(app.out()).length >= 3 ? 'ticking' : ''), /ticking/);
    const [n0, sum0] = state(ticks(app.out())[0]);
    const d = spawnSync(CKPT, ['dump', '--pids', String(app.child.pid), '--out', img], { encoding: 'utf8' });
    expect(d.stderr).toBe('');
    expect(d.status).toBe(0);
    // The original goes on, its memory changing every tick.
    const seen = ticks(app.out()).length;
    await waitFor(() => (ticks(app.out()).length >= seen + 5 ? 'on' : ''), /on/);
    app.child.kill('SIGKILL');
    await app.done;
    const r = start(CKPT, ['restore', '--image', img, '--wait']);
    await waitFor(() => (ticks(r.out()).length ? 'restored' : ''), /restored/);
    const [n1, sum1] = state(ticks(r.out())[0]);
    // N is held in a register, SUM in memory: both from the same instant.
    expect(sum1 - sum0).toBe(n1 - n0);
    // The restored process (the restorer's child) holds the output pipe.
    process.kill(Number(ticks(r.out())[0].split(' ')[1]), 'SIGKILL');
    await r.done;
  });
});
