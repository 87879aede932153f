import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addon } from '../ts/addon.js';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import * as S from '../tables/schema.js';
import { SEMTOOL, SHMTOOL, appshot, appshotAsync, appshotLater, makeHome, waitFor } from './helpers.js';

const PAGE = 4096;

/** A stack trace, or an error Node threw that no one caught. */
const TRACE = /\n\s+at |RangeError|TypeError|internal error/;

/** A deterministic generator: the same damage on every run. */
function lcg(seed: number): () => number {
  return () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
}

describe('a damaged tables file', () => {
  it('bytes flipped in data pages: every command works or refuses with exit 4 "damaged"; none dies of a signal or prints a stack trace', async () => {
    const base = makeHome();
    expect(appshot(base, ['run', '--', 'true']).code).toBe(0);
    // 1,000 rows over five kept applications: a tree of several levels.
    expect(spawnSync(builtProgram('tablefill'), [base, '5', '200']).status).toBe(0);
    const good = readFileSync(join(base, S.TABLES_FILE));
    const rows = JSON.parse(appshot(base, ['tables', '--json']).stdout).length;
    expect(rows).toBeGreaterThanOrEqual(1000);
    const pages = good.length / PAGE;
    const rnd = lcg(14);
    let refused = 0;
    for (let i = 0; i < 40; i++) {
      // Pages 0 and 1 are the header pages (checked since before).
      const page = 2 + Math.floor(rnd() * (pages - 2));
      const bad = Buffer.from(good);
      const flips = 1 + Math.floor(rnd() * 8);
      for (let j = 0; j < flips; j++) bad[page * PAGE + Math.floor(rnd() * PAGE)] ^= 1 + Math.floor(rnd() * 255);
      const commands = [['tables', '--json'], ['tables', '--verify'], ['gc'], ['run', '--', 'true']];
      // Each command on its own copy: what one writes cannot hide the damage from another.
      const results = await Promise.all(
        commands.map((args) => {
          const home = makeHome();
          writeFileSync(join(home, S.TABLES_FILE), bad, { mode: 0o600 });
          return appshotLater(home, args);
        }),
      );
      results.forEach((r, k) => {
        const what = `case ${i} (page ${page}): appshot ${commands[k].join(' ')}: ${r.stderr}`;
        expect(r.signal, what).toBeNull();
        expect(r.stderr, what).not.toMatch(TRACE);
        if (r.code === 4) expect(r.stderr, what).toMatch(/appshot: the tables at .*tables\.mdb are damaged: page \d+ .*; .*(Move the file aside|move the file aside)/);
        // --verify: 5 for the made-up system IDs tablefill writes, which no kernel object has.
        else expect(r.code, what).toBe(k === 1 ? 5 : 0);
        if (k === 0 && r.code === 0) expect(JSON.parse(r.stdout).length, what).toBe(rows);
      });
      // The check is all or nothing: every command saw the same file.
      expect(new Set(results.map((r) => r.code === 4)).size).toBe(1);
      if (results[0].code === 4) refused++;
    }
    // Damage LMDB would have followed (without the check: SIGSEGV, SIGBUS, abort) was found.
    expect(refused).toBeGreaterThan(10);
  }, 300_000);

  it('the shim refuses a damaged file it opens (exit 125, "damaged"), and a program already running is not touched', async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'victim', '--', SEMTOOL, 'get', '0x5e7001', '1', 'c', 'pid', 'sleep', '100000']);
    await waitFor(app.out, /pid/);
    // The root page of the list of databases: its page number is in the header.
    const file = join(home, S.TABLES_FILE);
    const before = readFileSync(file);
    const meta = (at: number) => ({ txnid: before.readBigUInt64LE(at + 152), mainRoot: Number(before.readBigUInt64LE(at + 136)) });
    const newest = meta(0).txnid > meta(PAGE).txnid ? meta(0) : meta(PAGE);
    const damaged = Buffer.from(before);
    damaged.writeUInt16LE(0xfff0, newest.mainRoot * PAGE + 20); // its lower bound past its upper
    writeFileSync(file, damaged);
    const joined = spawnSync(SEMTOOL, ['pid'], {
      env: { ...process.env, APPSHOT_AID: 'victim', APPSHOT_HOME: home, LD_PRELOAD: builtProgram('libappshot.so') },
      encoding: 'utf8',
    });
    expect(joined.signal).toBeNull();
    expect(joined.status).toBe(125);
    expect(joined.stderr).toMatch(/appshot: the tables at .*tables\.mdb are damaged: page \d+ \(the list of databases\)/);
    writeFileSync(file, before);
    app.child.kill('SIGTERM');
    const r = await app.done;
    expect(r.signal).toBeNull();
    expect(r.stderr).not.toMatch(TRACE);
  });
});

/** Writes bytes over part of a file in place, as a stray write through its mapping would. */
function scribble(file: string, at: number, length: number): void {
  const b = readFileSync(file);
  b.fill(0x41, at, at + length); // 'A', as in the reader pid 1094795585 of the report
  writeFileSync(file, b);
}

/** The reader slots LMDB's lock file counts in use (native/core/lockcheck.c has the layout). */
function readerPids(home: string): number[] {
  const b = readFileSync(join(home, `${S.TABLES_FILE}-lock`));
  return Array.from({ length: b.readUInt32LE(16) }, (_, i) => b.readUInt32LE(208 + i * 64 + 8));
}

describe("a program's stray write", () => {
  it("a segment overrun by 1 MiB next to appshot's mapping of LMDB's lock file hurts only the program: the harness ends cleanly with its status", () => {
    const home = makeHome();
    // Placed where top-down allocation would put it, right below the
    // mapping, if that place is free; then 1 MiB of 'A' past its end.
    const r = appshot(home, ['run', '--aid', 'overrun', '--', SHMTOOL, 'private', '65536', 'overrun', `${S.TABLES_FILE}-lock`, String(2 ** 20)]);
    // Before: "attached below", the lock file overwritten, the harness aborted
    // (tpp.c assertion, exit 134) leaving the application "running".
    expect(r.stdout).toMatch(/attached elsewhere/);
    expect(r.signal).toBeNull();
    expect(r.stderr).not.toMatch(/Assertion|Aborted|MDB_BAD_RSLOT|internal error/);
    // The program's own fault: a SIGSEGV in a guard, or its own memory overwritten.
    expect([0, 128 + 11], r.stderr).toContain(r.code);
    if (r.code === 0) expect(r.stdout).toMatch(/overran 1048576/);
    const after = appshot(home, ['tables', '--apps', '--json']);
    expect(after.stderr).toBe('');
    expect(JSON.parse(after.stdout)).toEqual([expect.objectContaining({ aid: 'overrun', state: 'ended', processes: 0 })]);
    expect(readerPids(home).filter((pid) => pid === 0x41414141)).toEqual([]);
    expect(appshot(home, ['run', '--', 'true'])).toMatchObject({ code: 0, stderr: '' });
  });

  it("in a program's address space, appshot's writable shared mappings (LMDB's lock file, the inflight record) lie between guard regions of 16 MiB", () => {
    const home = makeHome();
    const r = appshot(home, ['run', '--', 'cat', '/proc/self/maps']);
    expect(r.code).toBe(0);
    const maps = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [range, perms, , , , path = ''] = line.trim().split(/\s+/);
        const [start, end] = range.split('-').map((x) => BigInt(`0x${x}`));
        return { start, end, perms, path };
      });
    for (const file of [`${S.TABLES_FILE}-lock`, S.INFLIGHT_FILE]) {
      const i = maps.findIndex((m) => m.path.endsWith(`/${file}`) && m.perms.startsWith('rw'));
      expect(i, file).toBeGreaterThan(0);
      for (const guard of [maps[i - 1], maps[i + 1]]) {
        expect(guard.perms, file).toBe('---p');
        expect(guard.path, file).toBe('');
        expect(guard.end - guard.start, file).toBeGreaterThanOrEqual(16n << 20n);
      }
      expect(maps[i - 1].end, file).toBe(maps[i].start);
      expect(maps[i + 1].start, file).toBe(maps[i].end);
    }
  });

  it('garbage reader slots in the lock file are cleared by the next command; a garbage header is refused while in use and rebuilt once the application ends', async () => {
    const home = makeHome();
    const lock = join(home, `${S.TABLES_FILE}-lock`);
    const app = appshotAsync(home, ['run', '--aid', 'scribbled', '--', SEMTOOL, 'get', '0x5e7003', '1', 'c', 'pid', 'sleep', '100000']);
    await waitFor(app.out, /pid/);
    scribble(lock, 208, 64 * 8); // the first reader slots
    const slots = appshot(home, ['tables', '--apps', '--json']);
    expect(slots.code).toBe(0);
    expect(slots.stderr).toMatch(/appshot: cleared [1-8] damaged reader slot\(s\) in LMDB's lock file .*tables\.mdb-lock/);
    expect(readerPids(home).filter((pid) => pid === 0x41414141)).toEqual([]);

    scribble(lock, 0, 208); // the header: its locks too
    const header = appshot(home, ['tables']);
    expect(header.signal).toBeNull();
    expect(header.code).toBe(4);
    expect(header.stderr).toMatch(/appshot: LMDB's lock file .*tables\.mdb-lock is damaged \(its header is overwritten.*\) while other processes use the tables; .*End the applications using/);
    const joined = spawnSync(SEMTOOL, ['pid'], { env: { ...process.env, APPSHOT_AID: 'scribbled', APPSHOT_HOME: home, LD_PRELOAD: builtProgram('libappshot.so') }, encoding: 'utf8' });
    expect(joined.status).toBe(125);
    expect(joined.stderr).toMatch(/appshot: LMDB's lock file .* is damaged/);

    // The harness, before cleaning up, lets go and opens again: LMDB rebuilds the file.
    app.child.kill('SIGTERM');
    const r = await app.done;
    expect(r.signal).toBeNull();
    expect(r.code).toBe(128 + 15); // the program's own status: SIGTERM
    expect(r.stderr).toMatch(/appshot: LMDB's lock file .* is damaged .*; opening the tables again/);
    expect(r.stderr).not.toMatch(/Assertion|Aborted|internal error/);
    const after = appshot(home, ['tables', '--apps', '--json']);
    expect(after.stderr).toBe('');
    expect(JSON.parse(after.stdout)).toEqual([expect.objectContaining({ aid: 'scribbled', state: 'ended' })]);
    expect(appshot(home, ['run', '--', 'true'])).toMatchObject({ code: 0, stderr: '' });
  });
});

/** Whether this run may mount a filesystem in a mount namespace of its own. */
function canMount(): boolean {
  return spawnSync('unshare', ['--mount', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt'], { stdio: 'ignore' }).status === 0;
}

describe('a new home on a full disk', () => {
  it.skipIf(!canMount())('run says "no space", exit 4, and leaves nothing half-made; with room again the same home works', () => {
    const dir = makeHome();
    mkdirSync(join(dir, 'full'));
    // A 64 KiB filesystem, mounted in a mount namespace of this script's own.
    const script = `set -e
mount -t tmpfs -o size=64k tmpfs "$1/full"
export APPSHOT_HOME="$1/full/home"
step() { name=$1; shift; set +e; "$@" >"$D/$name.out" 2>"$D/$name.err"; echo $? >"$D/$name.code"; set -e; }
D=$1
step run node "$2" run -- true
ls -A "$APPSHOT_HOME" >"$D/left"
step tables node "$2" tables
mount -o remount,size=4m "$1/full"
step again node "$2" run -- true
`;
    const r = spawnSync('unshare', ['--mount', 'sh', '-c', script, 'sh', dir, CLI_PATH], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const read = (name: string) => readFileSync(join(dir, name), 'utf8');
    // Before: SIGSEGV or SIGBUS (exit 139/135) with no message, or a shim error and exit 0.
    expect(read('run.code').trim(), read('run.err')).toBe('4');
    expect(read('run.err')).toMatch(/^appshot: cannot make new tables in .*full\/home: No space left on device .*nothing was made\. Free some space there/);
    expect(read('run.err')).not.toMatch(TRACE);
    expect(read('left').split('\n').filter(Boolean)).toEqual(['open.lock']); // an empty lock file, nothing else
    // Nothing has run there: the tables read as empty (issue 17), and nothing is made.
    expect(read('tables.code').trim(), read('tables.err')).toBe('0');
    expect(read('tables.err')).toBe('');
    expect(read('again.code').trim(), read('again.err')).toBe('0');
  });
});

describe('a snapshot with oversized lengths', () => {
  it('a JSON section declared longer than 4 GiB in a sparse file is "damaged", exit 5, not a failed allocation', () => {
    const home = makeHome();
    expect(appshot(home, ['run', '--aid', 'small', '--keep', '--', SEMTOOL, 'get', '0x5e7002', '1', 'c']).code).toBe(0);
    const file = join(home, 'small.snap');
    expect(appshot(home, ['snapshot', 'small', '--ipc-only', '-o', file, '--stop']).code).toBe(0);
    // The first section (meta) starts after the 16-byte file header: its
    // length is a u64 at 8, the header's own crc32c at 20 covers bytes 0-19.
    const bad = join(home, 'oversized.snap');
    copyFileSync(file, bad);
    const b = readFileSync(bad);
    const at = 16;
    b.writeBigUInt64BE(5n * 2n ** 30n, at + 8);
    b.writeUInt32BE(addon().crc32c(b.subarray(at, at + 20)) >>> 0, at + 20);
    writeFileSync(bad, b);
    truncateSync(bad, 6 * 2 ** 30); // sparse: the declared bytes "are there"
    expect(statSync(bad).blocks * 512).toBeLessThan(2 ** 20);
    for (const args of [['snapshot', 'inspect', bad], ['restore', bad, '--aid', 'big']]) {
      const r = appshot(home, args);
      expect(r.signal, args[0]).toBeNull();
      expect(r.stderr, args[0]).not.toMatch(TRACE);
      expect(r.stderr, args[0]).toMatch(/appshot: .*oversized\.snap is not a usable snapshot: section 1 \(meta\) at byte 16 declares 5368709120 bytes/);
      expect(r.code, args[0]).toBe(5);
    }
  });
});
