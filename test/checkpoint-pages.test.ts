import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, freePort, makeHome, tablesJson, waitFor } from './helpers.js';

/**
 * A restored process's private memory behaves as anonymous memory. Copied
 * (the default) it is anonymous memory. Mapped from the image (--map-pages,
 * warm clones) it is a MAP_PRIVATE mapping of the image file, and the shim
 * answers for it (native/shim/memory.c): a page given back with
 * MADV_DONTNEED (libc's call, glibc's own in malloc_trim, a raw `syscall`
 * instruction; in a thread saved with the process and in a fork child),
 * MADV_DONTNEED_LOCKED or MADV_FREE reads zeros afterwards,
 * mremap growing such memory gives its bytes and a zero tail, errors keep
 * their errno, and a private mapping of any other file keeps the kernel's
 * answers. A process without the shim is copied even with --map-pages
 * (nobody in it would answer). ckptzero checks its memory once the test
 * makes its trigger file, after the restore, and prints what it found
 * (built to fail: without the shim's answer, every check of the mapped
 * restore reads stale bytes or errors). redis-server (jemalloc) restored
 * mapped survives deletes and MEMORY PURGE with its values right.
 *
 * A dump that lets the processes go on lets them go once their memory is
 * copied out, before it writes the file (a shorter pause): the image must
 * still hold the state of the freeze.
 */

const CKPT = builtProgram('appshot-checkpoint');
const ZERO = builtProgram('ckptzero');
const MEM = builtProgram('ckptmem');
const FOUND = /^dontneed written=(\w+) stored=(\w+) kept=(\w+)$/m;
const MORE = /^more backing=(\w+) (.*)$/m;
const ALL_OK = 'free=ok raw=ok locked=ok einval=ok enomem=ok filefree=ok filedontneed=ok grow=ok realloc=ok trim=ok nomove=ok thread=ok child=ok';

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

/** ckptzero's report: [written, stored, kept, backing, the other checks]. */
function report(out: string): string[] {
  return [...(out.match(FOUND)?.slice(1) ?? ['none']), ...(out.match(MORE)?.slice(1) ?? ['none'])];
}

/** ckptzero's report after a restore by the engine alone with flags. The
 * restored process writes to the file its stdout was (a regular file). */
async function engineRestore(flags: string[]): Promise<string[]> {
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
  return report(readFileSync(out, 'utf8'));
}

describe('restored private memory is anonymous memory', () => {
  it('by default (copied) pages given back read zeros (libc, raw syscall, DONTNEED_LOCKED, FREE, malloc_trim), errors keep their errno, file mappings keep the kernel\'s answers, mremap and realloc grow zeros', async () => {
    expect(await engineRestore([])).toEqual(['zero', 'zero', 'ok', 'anon', ALL_OK]);
  });

  it('with --map-pages a process without the shim is copied all the same (nothing in it would answer for mapped pages)', async () => {
    expect(await engineRestore(['--map-pages'])).toEqual(['zero', 'zero', 'ok', 'anon', ALL_OK]);
  });

  describe.each(MODES)('%s, through appshot snapshot --stop and appshot restore', (_mode, flags) => {
    it.each([
      ['copied (the default)', [], 'anon'],
      ['mapped from the image (--map-pages): the shim answers as anonymous memory would', ['--map-pages'], 'image'],
    ])('%s', async (_how, restoreFlags, backing) => {
      const home = makeHome();
      const trigger = join(home, 'trigger');
      const h = appshotAsync(home, ['run', '--aid', 'orig', ...flags, '--', ZERO, trigger]);
      await waitFor(h.out, /^tick 3$/m);
      const file = join(home, 'orig.snap');
      const s = appshot(home, ['snapshot', 'orig', '-o', file, '--stop']);
      expect(s.stderr).toBe('');
      expect(s.code).toBe(0);
      await h.done;
      const back = appshotAsync(home, ['restore', file, '--aid', 'back', ...restoreFlags]);
      await waitFor(back.out, /^tick \d+$/m);
      writeFileSync(trigger, '');
      const r = await back.done;
      expect(r.code, r.stderr).toBe(0);
      expect(report(r.stdout)).toEqual(['zero', 'zero', 'ok', backing, ALL_OK]);
    });
  });
});

/** Whether some redis-server process maps file (its memory mapped from the image). */
function redisMaps(file: string): boolean {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .some((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('redis-server') && readFileSync(`/proc/${pid}/maps`, 'utf8').includes(file);
      } catch {
        return false; // gone meanwhile
      }
    });
}

// Lua run by EVAL: N keys PREFIX1..N of 50 x FILL then their number; the
// keys but every tenth deleted, with the big ones; 20 big strings of about
// SIZE bytes; the keys of a prefix whose value is not what it was set to,
// counted.
const FILL = "for i=1,tonumber(ARGV[1]) do redis.call('SET',ARGV[2]..i,string.rep(ARGV[3],50)..i) end return redis.call('DBSIZE')";
const THIN = "for i=1,tonumber(ARGV[1]) do if i%10~=0 then redis.call('DEL','k'..i) end end for i=1,20 do redis.call('DEL','big'..i) end return redis.call('DBSIZE')";
const BIG = "for i=1,20 do redis.call('SETRANGE','big'..i,tonumber(ARGV[1])+i,ARGV[2]) end return redis.call('STRLEN','big20')";
const WRONG =
  "local bad=0 for i=tonumber(ARGV[2]),tonumber(ARGV[1]),tonumber(ARGV[2]) do if redis.call('GET',ARGV[3]..i)~=string.rep(ARGV[4],50)..i then bad=bad+1 end end return bad";

it('a process under the shim with its trap off (appshot run --no-trap), restored with --map-pages, is copied: nothing in it would answer', async () => {
  const home = makeHome();
  const trigger = join(home, 'trigger');
  const h = appshotAsync(home, ['run', '--aid', 'orig', '--no-trap', '--', ZERO, trigger]);
  await waitFor(h.out, /^tick 3$/m);
  const file = join(home, 'orig.snap');
  const s = appshot(home, ['snapshot', 'orig', '-o', file, '--stop']);
  expect(s.code, s.stderr).toBe(0);
  await h.done;
  const back = appshotAsync(home, ['restore', file, '--aid', 'back', '--map-pages']);
  await waitFor(back.out, /^tick \d+$/m);
  writeFileSync(trigger, '');
  const r = await back.done;
  expect(r.code, r.stderr).toBe(0);
  expect(report(r.stdout)).toEqual(['zero', 'zero', 'ok', 'anon', ALL_OK]);
});

describe.each(MODES)('redis-server (jemalloc) restored with --map-pages, %s', (_mode, flags) => {
  it('deletes most keys, MEMORY PURGE, fills again: every value right, DBSIZE right, its memory mapped from the image; snapshotted again and restored mapped from the second image: the same', async () => {
    const home = makeHome();
    const port = await freePort();
    const h = appshotAsync(home, ['run', ...flags, '--aid', 'rd', '--', 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', home]);
    await waitFor(h.out, /Ready to accept connections/);
    // redis-cli at the system port behind the virtual one (the same port in identity mode).
    const ports = new Map<string, number>();
    const ask = (aid: string, ...args: string[]) => {
      if (!ports.has(aid)) {
        const row = tablesJson(home, ['--aid', aid, '--type', 'port']).find((r) => r.virtual === port);
        if (!row) return { code: 1, stdout: '', stderr: `no port row of ${aid} yet` };
        ports.set(aid, row.system);
      }
      const r = spawnSync('redis-cli', ['-p', String(ports.get(aid)), ...args], { encoding: 'utf8' });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const cli = (aid: string, ...args: string[]) => {
      const r = ask(aid, ...args);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    expect(cli('rd', 'EVAL', FILL, '0', '100000', 'k', 'a')).toBe('100000');
    expect(cli('rd', 'EVAL', BIG, '0', '200000', 'z')).toBe('200021');
    const file = join(home, 'rd.snap');
    const s = appshot(home, ['snapshot', 'rd', '-o', file, '--stop']);
    expect(s.code, s.stderr).toBe(0);
    await h.done;
    const back = appshotAsync(home, ['restore', file, '--aid', 'rb', '--map-pages']);
    await waitFor(() => ask('rb', 'PING').stdout, /^PONG$/m);
    expect(redisMaps(file)).toBe(true);
    expect(cli('rb', 'EVAL', WRONG, '0', '100000', '1', 'k', 'a')).toBe('0');
    expect(cli('rb', 'EVAL', THIN, '0', '100000')).toBe('10000');
    expect(cli('rb', 'MEMORY', 'PURGE')).toBe('OK');
    expect(cli('rb', 'EVAL', FILL, '0', '100000', 'n', 'b')).toBe('110000');
    expect(cli('rb', 'EVAL', BIG, '0', '100000', 'y')).toBe('100021');
    expect(cli('rb', 'EVAL', WRONG, '0', '100000', '10', 'k', 'a')).toBe('0');
    expect(cli('rb', 'EVAL', WRONG, '0', '100000', '1', 'n', 'b')).toBe('0');
    expect(cli('rb', 'DBSIZE')).toBe('110020');
    expect(cli('rb', 'MEMORY', 'PURGE')).toBe('OK');
    expect(cli('rb', 'GET', 'n99999')).toBe(`${'b'.repeat(50)}99999`);
    // Snapshotted again (its pages partly the first image's, stored whole)
    // and restored mapped from the second image alone.
    const again = join(home, 'rb.snap');
    const s2 = appshot(home, ['snapshot', 'rb', '-o', again, '--stop']);
    expect(s2.code, s2.stderr).toBe(0);
    await back.done;
    const third = appshotAsync(home, ['restore', again, '--aid', 'rc', '--map-pages']);
    await waitFor(() => ask('rc', 'PING').stdout, /^PONG$/m);
    expect([redisMaps(file), redisMaps(again)]).toEqual([false, true]);
    expect(cli('rc', 'EVAL', THIN, '0', '100000')).toBe('110000');
    expect(cli('rc', 'MEMORY', 'PURGE')).toBe('OK');
    expect(cli('rc', 'EVAL', FILL, '0', '50000', 'k', 'c')).toBe('155000');
    expect(cli('rc', 'EVAL', WRONG, '0', '50000', '1', 'k', 'c')).toBe('0');
    expect(cli('rc', 'EVAL', WRONG, '0', '100000', '1', 'n', 'b')).toBe('0');
    third.child.kill('SIGTERM');
    await third.done;
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
