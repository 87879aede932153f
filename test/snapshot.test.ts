import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { procStat } from '../ts/procinfo.js';
import { builtProgram } from '../ts/paths.js';
import { addon } from '../ts/addon.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { fwdRows, openTableDb } from '../ts/tabledb.js';
import * as S from '../tables/schema.js';
import { SHMTOOL, appshot, appshotAsync, makeHome, tablesJson, waitFor } from './helpers.js';

const STATETOOL = builtProgram('statetool');

/** A program outside appshot taking keys 0x5eec (a set) and 0x5eed (a
 * segment), and the exact system IDs (argv: set, segment, queue) the
 * application had, through the kernel's *_next_id: prints what it got. */
const TAKE_KEYS_AND_IDS = `import ctypes, sys
libc = ctypes.CDLL(None)
got = [libc.semget(0x5eec, 1, 0o1600), libc.shmget(0x5eed, 4096, 0o1600)]
for family, id in zip(['sem', 'shm', 'msg'], sys.argv[1:]):
    open(f'/proc/sys/kernel/{family}_next_id', 'w').write(id)
    got.append({'sem': lambda: libc.semget(0, 1, 0o1600), 'shm': lambda: libc.shmget(0, 4096, 0o1600), 'msg': lambda: libc.msgget(0, 0o1600)}[family]())
print(*got)`;

/** Every SysV object the kernel holds, as "sem 5", ... */
function ipcSet(): Set<string> {
  const all = new Set<string>();
  for (const type of ['sem', 'shm', 'msg'] as const) for (const id of kernelObjects(type).keys()) all.add(`${type} ${id}`);
  return all;
}

/** An application of statetool, snapshotted with --stop. */
async function snapshotted(home: string, flags: string[] = []): Promise<{ dir: string; file: string; ids: string; system: number[] }> {
  const dir = join(home, 'state');
  mkdirSync(dir);
  const h = appshotAsync(home, ['run', '--aid', 'keeper', ...flags, '--', STATETOOL, 'run', dir]);
  await waitFor(h.out, /ready/);
  const rows = tablesJson(home, ['--aid', 'keeper']);
  const system = ['sem', 'shm', 'msg'].map((type) => rows.find((r) => r.type === type)!.system);
  const file = join(home, 'keeper.snap');
  const s = appshot(home, ['snapshot', 'keeper', '--ipc-only', '-o', file, '--stop']);
  expect(s.stderr).toBe('');
  expect(s.code).toBe(0);
  expect(s.stdout).toMatch(/^snapshot of 'keeper' written to .*: 1 semaphore set\(s\), 1 segment\(s\) \(0\.1 MiB\), 1 queue\(s\) \(3 message\(s\)\), 1 process\(es\) ended/);
  expect((await h.done).code).toBe(137);
  return { dir, file, ids: readFileSync(join(dir, 'state'), 'utf8'), system };
}

const CHECKS = [
  'ok pid file names this process',
  'ok semaphore key 0x5eec gives the same ID',
  'ok counter is 5',
  'ok segment key 0x5eed gives the same ID',
  'ok table holds the same bytes',
  'ok segment mode 0640, 64 KiB',
  'ok message 1 first',
  'ok message 2 next',
  'ok message 3 last',
  'ok no other message',
];

describe('snapshot and restore', () => {
  it.each([
    ['identity first', []],
    ['remapped', ['--no-identity']],
  ])('%s: a restored program finds every virtual ID and key it wrote down, its data, its messages in order and its pid', async (_mode, flags) => {
    const home = makeHome();
    const before = ipcSet();
    const { file, ids, system } = await snapshotted(home, flags);
    // --stop removed the application's kernel objects and rows.
    expect(ipcSet()).toEqual(before);
    expect(tablesJson(home, ['--aid', 'keeper'])).toEqual([]);
    // Programs outside appshot take the keys and the system IDs it had meanwhile.
    const outside = spawnSync('python3', ['-c', TAKE_KEYS_AND_IDS, ...system.map(String)], { encoding: 'utf8' });
    expect(outside.status).toBe(0);
    const held = outside.stdout.trim().split(' ').map(Number);
    expect(held.slice(2)).toEqual(system);
    try {
      const r = appshot(home, ['restore', file]);
      expect(r.stdout.trim().split('\n')).toEqual(CHECKS);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^appshot: restored 'keeper' from .*: 1 semaphore set\(s\), 1 segment\(s\) \(0\.1 MiB\), 1 queue\(s\) \(3 message\(s\)\)/);
      // The IDs the program wrote down were the virtual ones all along.
      expect(readFileSync(join(home, 'state', 'state'), 'utf8')).toBe(ids);
      // The old system IDs are the outside program's: every object is
      // under a new one, and the program's virtual IDs still reach them.
    } finally {
      const [s1, m1, s2, m2, q] = held;
      spawnSync('ipcrm', ['-s', String(s1), '-m', String(m1), '-s', String(s2), '-m', String(m2), '-q', String(q)]);
    }
    expect(ipcSet()).toEqual(before);
  });

  it('says how fast shared memory was copied each way, as text and in --json, and the copy is part of the whole time', async () => {
    const home = makeHome();
    const size = 8 << 20;
    const h = appshotAsync(home, ['run', '--aid', 'rate', '--', SHMTOOL, 'private', String(size), 'attach', '-', 'write', 'hello', 'pid', 'sleep', '100000']);
    await waitFor(h.out, /pid \d+/);
    const file = join(home, 'rate.snap');
    const timed = (o: { seconds: number; copySeconds: number; shmBytes: number }) => {
      expect(o.shmBytes).toBe(size);
      expect(o.copySeconds).toBeGreaterThan(0);
      expect(o.copySeconds).toBeLessThanOrEqual(o.seconds);
    };
    const s = appshot(home, ['snapshot', 'rate', '--ipc-only', '-o', file, '--stop', '--json']);
    expect(s.code).toBe(0);
    timed(JSON.parse(s.stdout));
    await h.done;
    const r = appshot(home, ['restore', file, '--aid', 'rate-json', '--json', '--', 'true']);
    expect(r.code).toBe(0);
    timed(JSON.parse(r.stdout.split('\n')[0]));
    // As text: the restore on stderr, then a snapshot of what it restored.
    const again = appshotAsync(home, ['restore', file, '--aid', 'rate-text', '--', 'sleep', '100000']);
    await waitFor(again.err, /restored 'rate-text'/);
    expect(again.err()).toMatch(/ \(8\.0 MiB\), 0 queue\(s\) \(0 message\(s\)\) in [\d.]+ s, shared memory at [\d.]+ GB\/s\n/);
    const text = appshot(home, ['snapshot', 'rate-text', '--ipc-only', '-o', join(home, 'rate2.snap'), '--stop']);
    expect(text.stdout).toMatch(/ \(8\.0 MiB\), .*, 1 process\(es\) ended; [\d.]+ s, shared memory at [\d.]+ GB\/s\n$/);
    await again.done;
  });

  it('one snapshot restored twice at once gives two independent applications', async () => {
    const home = makeHome();
    const { file } = await snapshotted(home);
    const go = join(home, 'go');
    const copies = ['copy-1', 'copy-2'].map((aid) => appshotAsync(home, ['restore', file, '--aid', aid, '--', STATETOOL, 'run', join(home, 'state'), go]));
    for (const c of copies) await waitFor(c.out, /checked/);
    const rows = tablesJson(home, ['--type', 'sem']);
    expect(rows.map((r) => r.aid).sort()).toEqual(['copy-1', 'copy-2']);
    expect(rows[0].virtual).toBe(rows[1].virtual);
    expect(rows[0].system).not.toBe(rows[1].system);
    writeFileSync(go, '');
    for (const c of copies) {
      const r = await c.done;
      // The pid file names the first copy's process in each: both restored to that vpid.
      expect(r.stdout).toContain('ok counter is 6 after adding one');
      expect(r.stdout).not.toContain('bad');
      expect(r.code).toBe(0);
    }
  });

  it('snapshot inspect lists what a snapshot holds without restoring it', async () => {
    const home = makeHome();
    const { file } = await snapshotted(home);
    const before = ipcSet();
    const r = appshot(home, ['snapshot', 'inspect', file, '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.meta).toMatchObject({ aid: 'keeper', command: [STATETOOL, 'run', join(home, 'state')], noIdentity: false });
    expect(rep.sems).toEqual([expect.objectContaining({ key: 0x5eec, nsems: 1, mode: '0600' })]);
    expect(rep.segments).toEqual([expect.objectContaining({ key: 0x5eed, size: 65536, mode: '0640' })]);
    expect(rep.queues).toEqual([expect.objectContaining({ key: 0, messages: 3, bytes: 48 })]);
    expect(rep.sections.map((s: { kind: string }) => s.kind)).toEqual(['meta', 'rows', 'sem', 'shm', 'msg']);
    const text = appshot(home, ['snapshot', 'inspect', file]);
    expect(text.stdout).toContain("application 'keeper'");
    expect(text.stdout).toContain('every checksum good');
    expect(ipcSet()).toEqual(before);
  });

  describe('bad snapshot files: refused with a message naming the problem, nothing made', () => {
    /** Restores a file expecting refusal; checks nothing was left. */
    function refused(home: string, file: string, message: RegExp): void {
      const before = ipcSet();
      const r = appshot(home, ['restore', file, '--aid', 'victim', '--', 'true']);
      expect(r.stderr).toMatch(message);
      expect(r.code).toBe(5);
      expect(ipcSet()).toEqual(before);
      expect(tablesJson(home, ['--aid', 'victim'])).toEqual([]);
      const ps = JSON.parse(appshot(home, ['ps', '--json']).stdout);
      expect(ps).toEqual([]);
    }

    /** Lets the worker's event loop run between synchronous commands: a loop
     * of them that blocks it past 60 s (a loaded machine) makes vitest's own
     * messages to the worker time out ("Timeout calling onTaskUpdate"). */
    const letVitestAnswer = () => new Promise((r) => setImmediate(r));

    it('a truncated file, cut anywhere', async () => {
      const home = makeHome();
      const { file } = await snapshotted(home);
      const size = statSync(file).size;
      for (const cut of [8, 40, Math.floor(size / 3), Math.floor(size / 2), size - 30, size - 1]) {
        const bad = join(home, `cut-${cut}.snap`);
        copyFileSync(file, bad);
        truncateSync(bad, cut);
        refused(home, bad, /is not a usable snapshot: (it is truncated|it does not begin)/);
        await letVitestAnswer();
      }
    });

    it('one flipped byte anywhere: in the header, a section header, a payload, the segment, the end', async () => {
      const home = makeHome();
      const { file } = await snapshotted(home);
      const bytes = readFileSync(file);
      const step = Math.floor(bytes.length / 23);
      for (let at = 3; at < bytes.length; at += step) {
        const bad = Buffer.from(bytes);
        bad[at] ^= 0x10;
        const path = join(home, `flip-${at}.snap`);
        writeFileSync(path, bad);
        refused(home, path, /is not a usable snapshot: .*(checksum|does not begin|unknown kind|truncated|follow its END)/);
        await letVitestAnswer();
      }
    }, 300_000); // 70 commands one after another, 27 s alone; each command has its own 50 s limit (helpers.ts)

    it('a newer format version, and a file that is not a snapshot', async () => {
      const home = makeHome();
      const { file } = await snapshotted(home);
      const bytes = readFileSync(file);
      bytes.writeUInt32BE(2, 8);
      bytes.writeUInt32BE(addon().crc32c(bytes.subarray(0, 12), 0) >>> 0, 12);
      const newer = join(home, 'newer.snap');
      writeFileSync(newer, bytes);
      const r = appshot(home, ['restore', newer]);
      expect(r.stderr).toContain('is a snapshot of format version 2, newer than this appshot reads (1)');
      expect(r.code).toBe(5);
      const text = join(home, 'notes.txt');
      writeFileSync(text, 'hello, this is not a snapshot at all\n');
      refused(home, text, /does not begin with an appshot snapshot header/);
      expect(appshot(home, ['restore', join(home, 'missing.snap')]).stderr).toContain('no such file');
    });
  });

  it('restore under an AID that is running: a clear error, nothing changed', async () => {
    const home = makeHome();
    const { file } = await snapshotted(home);
    const other = appshotAsync(home, ['run', '--aid', 'busy', '--', 'sleep', '30']);
    await waitFor(() => JSON.stringify(tablesJson(home, ['--aid', 'busy', '--type', 'pid'])), /busy/);
    const before = ipcSet();
    const r = appshot(home, ['restore', file, '--aid', 'busy']);
    expect(r.stderr).toContain("application 'busy' is running; restore under another --aid");
    expect(r.code).toBe(3);
    expect(ipcSet()).toEqual(before);
    other.child.kill('SIGTERM');
    await other.done;
  });

  it('a kernel limit hit half way through restore: everything made so far is removed', async () => {
    const home = makeHome();
    const { file } = await snapshotted(home);
    const shmmax = readFileSync('/proc/sys/kernel/shmmax', 'utf8');
    const before = ipcSet();
    writeFileSync('/proc/sys/kernel/shmmax', '4096'); // the 64 KiB segment no longer fits
    try {
      const r = appshot(home, ['restore', file, '--aid', 'limited']);
      expect(r.stderr).toMatch(/restore failed at shared memory segment \d+ \(65536 bytes\): .*kernel limit.*everything it had made was removed/);
      expect(r.code).toBe(1);
    } finally {
      writeFileSync('/proc/sys/kernel/shmmax', shmmax);
    }
    // The semaphore set made before the segment is gone again.
    expect(ipcSet()).toEqual(before);
    expect(tablesJson(home, ['--aid', 'limited'])).toEqual([]);
  });

  it('a kernel limit hit half way through the semaphore sets (made by appshot-semsets): a clear error, everything made so far removed', async () => {
    const home = makeHome();
    const h = appshotAsync(home, ['run', '--aid', 'sets', '--', builtProgram('snapbench'), '10', '1']);
    await waitFor(h.out, /ready/);
    const file = join(home, 'sets.snap');
    expect(appshot(home, ['snapshot', 'sets', '--ipc-only', '-o', file, '--stop']).code).toBe(0);
    await h.done;
    const sem = readFileSync('/proc/sys/kernel/sem', 'utf8');
    const before = ipcSet();
    const [semmsl, semmns, semopm] = sem.trim().split(/\s+/);
    // Room for four more sets in this namespace: the fifth of the ten fails.
    writeFileSync('/proc/sys/kernel/sem', `${semmsl} ${semmns} ${semopm} ${kernelObjects('sem').size + 4}`);
    try {
      const r = appshot(home, ['restore', file, '--aid', 'semlimited', '--', 'true']);
      expect(r.stderr).toMatch(/^appshot: restore failed at semaphore set \d+: semget: No space left on device \(a kernel limit: see ipcs -l\); everything it had made was removed\n$/);
      expect(r.code).toBe(1);
    } finally {
      writeFileSync('/proc/sys/kernel/sem', sem);
    }
    expect(ipcSet()).toEqual(before);
    expect(tablesJson(home, ['--aid', 'semlimited'])).toEqual([]);
  });

  it.each([
    ['identity first', []],
    ['remapped', ['--no-identity']],
  ])('%s: appshot-semsets killed with sets made in a transaction not yet committed: the restore fails and leaves nothing in the kernel or the tables', async (_mode, flags) => {
    const home = makeHome();
    const h = appshotAsync(home, ['run', '--aid', 'sets', ...flags, '--', builtProgram('snapbench'), '10', '1']);
    await waitFor(h.out, /ready/);
    const file = join(home, 'sets.snap');
    expect(appshot(home, ['snapshot', 'sets', '--ipc-only', '-o', file, '--stop']).code).toBe(0);
    await h.done;
    const before = ipcSet();
    // Three private sets made and put in its transaction, then SIGKILL.
    const r = appshot(home, ['restore', file, '--aid', 'cut', '--', 'true'], { APPSHOT_FAULT: 'semsets-batch' });
    expect(r.stderr).toMatch(/^appshot: restore failed at (the )?semaphore set.*appshot-semsets ended by SIGKILL without saying why.*everything it had made was removed\n$/);
    expect(r.code).toBe(1);
    expect(ipcSet()).toEqual(before);
    expect(tablesJson(home, ['--aid', 'cut'])).toEqual([]);
    // Without the fault the same file restores whole.
    const whole = appshot(home, ['restore', file, '--aid', 'whole', '--', 'true']);
    expect(whole.stderr).toMatch(/^appshot: restored 'whole' from .*: 10 semaphore set\(s\)/);
    expect(whole.code).toBe(0);
    expect(ipcSet()).toEqual(before);
  });

  it('the application dying during the snapshot: it fails cleanly, no file at the target', async () => {
    const home = makeHome();
    const dir = join(home, 'state');
    mkdirSync(dir);
    const h = appshotAsync(home, ['run', '--aid', 'dying', '--', STATETOOL, 'run', dir]);
    await waitFor(h.out, /ready/);
    const file = join(home, 'dying.snap');
    const snap = appshotAsync(home, ['snapshot', 'dying', '--ipc-only', '-o', file], { APPSHOT_SNAPSHOT_DELAY_MS: '5000' });
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    // Killed while the snapshot holds it stopped, however slow the machine:
    // stopped, then a second for the snapshot to see it so (a process that
    // ends before it is seen stopped ended before the snapshot began, and is
    // rightly not in it), well inside the 5 s the snapshot holds it.
    await waitFor(() => procStat(pid)?.state ?? '', /^T$/);
    await new Promise((r) => setTimeout(r, 1000));
    process.kill(pid, 'SIGKILL');
    const r = await snap.done;
    expect(r.stderr).toMatch(/application 'dying' (ended|lost a process) during the snapshot/);
    expect(r.code).toBe(1);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(home).filter((n) => n.includes('.snap'))).toEqual([]);
    await h.done;
  });

  it('ports: a published server snapshotted and restored is published again and serves its own virtual port', async () => {
    const home = makeHome();
    const dir = join(home, 'www');
    mkdirSync(dir);
    writeFileSync(join(dir, 'who.txt'), 'restored');
    const server = ['python3', '-u', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', dir];
    const h = appshotAsync(home, ['run', '--aid', 'web', '--publish', '18099:8080', '--', ...server]);
    await waitFor(h.out, /Serving HTTP/);
    const file = join(home, 'web.snap');
    expect(appshot(home, ['snapshot', 'web', '--ipc-only', '-o', file, '--stop']).code).toBe(0);
    await h.done;
    const rep = JSON.parse(appshot(home, ['snapshot', 'inspect', file, '--json']).stdout);
    expect(rep.meta.publish).toEqual([{ public: 18099, virtual: 8080 }]);
    expect(rep.ports).toEqual([expect.objectContaining({ proto: 'tcp', virtual: 8080 })]);
    const r = appshotAsync(home, ['restore', file, '--aid', 'web-again']);
    await waitFor(r.out, /Serving HTTP/);
    const got = spawnSync('python3', [join(import.meta.dirname, 'fixtures', 'nettool.py'), 'get', '127.0.0.1', '18099', '/who.txt'], { encoding: 'utf8' });
    expect(got.stdout).toBe('restored\n');
    r.child.kill('SIGTERM');
    await r.done;
  });

  it('a progress bar on a terminal only', async () => {
    const home = makeHome();
    const dir = join(home, 'state');
    mkdirSync(dir);
    const h = appshotAsync(home, ['run', '--aid', 'big', '--', builtProgram('snapbench'), '1', '80']);
    await waitFor(h.out, /ready/);
    const file = join(home, 'big.snap');
    // script(1) gives the command a terminal; a pipe gets no bar.
    const cmd = `${process.execPath} ${join(import.meta.dirname, '..', 'bin', 'appshot.js')} snapshot big --ipc-only -o ${file}`;
    const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, APPSHOT_HOME: home } });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/capturing shared memory \[.*\] 100% 80\/80 MiB/);
    const piped = appshot(home, ['snapshot', 'big', '--ipc-only', '-o', join(home, 'big2.snap')]);
    expect(piped.stderr).toBe('');
    h.child.kill('SIGTERM');
    await h.done;
  });

  /** The pid of appshot-semsets making the sets of application aid, once it has stopped itself (APPSHOT_FAULT=semsets-stop). */
  async function stoppedSemsets(aid: string): Promise<number> {
    for (;;) {
      for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
        try {
          const args = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0');
          if (args[0].endsWith('appshot-semsets') && args[2] === aid && procStat(Number(name))?.state === 'T') return Number(name);
        } catch {
          /* gone */
        }
      }
      await new Promise((res) => setTimeout(res, 5));
    }
  }

  it('restore killed with SIGKILL part way: appshot gc leaves nothing of it', async () => {
    const home = makeHome();
    const h = appshotAsync(home, ['run', '--aid', 'many', '--', builtProgram('snapbench'), '4000', '256']);
    await waitFor(h.out, /ready/);
    const file = join(home, 'many.snap');
    expect(appshot(home, ['snapshot', 'many', '--ipc-only', '-o', file, '--stop']).code).toBe(0);
    await h.done;
    const before = ipcSet();
    const t = openTableDb(home);
    try {
      // Killed once it has made sets: its helper stopped at its 1,000th,
      // in a transaction not committed (and dying with the restore, left
      // for init to reap); or once the segment is made (while its 256 MiB
      // are copied in).
      for (const made of ['sets', 'segment'] as const) {
        const aid = `half-${made}`;
        const r = appshotAsync(home, ['restore', file, '--aid', aid, '--', 'true'], made === 'sets' ? { APPSHOT_FAULT: 'semsets-stop' } : {});
        if (made === 'sets') await stoppedSemsets(aid);
        else while ([...fwdRows(t, aid, S.RT.shm)].length < 1) await new Promise((res) => setTimeout(res, 1));
        r.child.kill('SIGKILL');
        expect((await r.done).signal).toBe('SIGKILL'); // killed before it finished
        if (made === 'sets') {
          // The sets it had made (before any command here folds the
          // journal, which removes those of a dead creator's records).
          expect(ipcSet().size - before.size).toBe(1000);
          expect(tablesJson(home, ['--aid', aid, '--type', 'shm'])).toEqual([]);
        }
        const gc = appshot(home, ['gc']);
        expect(gc.code).toBe(0);
        // Whatever it had made is gone; its rows too.
        expect(ipcSet()).toEqual(before);
        expect(tablesJson(home, ['--aid', aid])).toEqual([]);
      }
    } finally {
      t.env.close();
    }
  });

  it.each([
    ['identity first', []],
    ['remapped', ['--no-identity']],
  ])('%s: a 2 MiB segment (restored by writing into its own file) comes back byte for byte; one flipped byte in it is refused', async (_mode, flags) => {
    const home = makeHome();
    const before = ipcSet();
    const MIB = 2;
    // snapbench fills page k of its segment with the byte k.
    const expected = Buffer.alloc(MIB << 20);
    for (let page = 0; page < expected.length / 4096; page++) expected.fill(page & 0xff, page * 4096, (page + 1) * 4096);
    const h = appshotAsync(home, ['run', '--aid', 'big', ...flags, '--', builtProgram('snapbench'), '3', String(MIB)]);
    await waitFor(h.out, /ready/);
    const file = join(home, 'big.snap');
    expect(appshot(home, ['snapshot', 'big', '--ipc-only', '-o', file, '--stop']).code).toBe(0);
    await h.done;
    const at = readFileSync(file).indexOf(expected);
    expect(at).toBeGreaterThan(0);

    const bad = readFileSync(file);
    bad[at + (MIB << 19) + 7] ^= 0x10;
    writeFileSync(join(home, 'bad.snap'), bad);
    const refused = appshot(home, ['restore', join(home, 'bad.snap'), '--aid', 'victim', '--', 'true']);
    expect(refused.stderr).toContain('fails its checksum');
    expect(refused.code).toBe(5);
    expect(ipcSet()).toEqual(before);

    // Restored, then snapshotted again: the second file holds the same bytes.
    const r = appshotAsync(home, ['restore', file, '--aid', 'again', '--', 'sleep', '60']);
    await waitFor(r.err, /restored 'again'/);
    const again = join(home, 'again.snap');
    expect(appshot(home, ['snapshot', 'again', '--ipc-only', '-o', again, '--stop']).code).toBe(0);
    await r.done;
    expect(readFileSync(again).indexOf(expected)).toBeGreaterThan(0);
    expect(ipcSet()).toEqual(before);
  });

  it('snapshot of an unknown application: a clear error', () => {
    const home = makeHome();
    appshot(home, ['run', '--', 'true']);
    const r = appshot(home, ['snapshot', 'nobody', '--ipc-only', '-o', join(home, 'x.snap')]);
    expect(r.stderr).toContain("there is no application 'nobody'");
    expect(r.code).toBe(1);
    expect(existsSync(join(home, 'x.snap'))).toBe(false);
  });
});
