import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { procStat } from '../ts/procinfo.js';
import { builtProgram } from '../ts/paths.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { MODES, appshot, appshotAsync, makeHome, waitFor } from './helpers.js';

/**
 * The harness side of the whole-process snapshot (issue 18): `appshot
 * snapshot` driving appshot-checkpoint, `snapshot inspect` of a whole
 * image, `restore` of one through the supervisor, and the bad input around
 * them. Real programs under the real shim; the image is the dumper's own.
 */

const COUNTLOOP = builtProgram('countloop');

/** Every SysV object the kernel holds (this file's own IPC namespace). */
function ipcSet(): Set<string> {
  const all = new Set<string>();
  for (const type of ['sem', 'shm', 'msg'] as const) for (const id of kernelObjects(type).keys()) all.add(`${type} ${id}`);
  return all;
}

/** The last counter line of an output so far: [count, pid]. */
function lastCount(out: string): [number, number] {
  const all = [...out.matchAll(/^count (\d+) pid (\d+)$/gm)];
  const m = all.at(-1)!;
  return [Number(m[1]), Number(m[2])];
}

/** countloop under appshot run, once it has counted a little. */
async function counting(home: string, aid: string, flags: readonly string[] = [], prefix: string[] = []) {
  const h = appshotAsync(home, ['run', '--aid', aid, ...flags, '--', ...prefix, COUNTLOOP]);
  await waitFor(h.out, /^count 5 /m);
  return h;
}

/** Ends an application the test started and waits for its harness. */
async function end(home: string, aid: string, h: ReturnType<typeof appshotAsync>): Promise<void> {
  appshot(home, ['kill', aid]);
  await h.done;
}

/** The section kinds of a snapshot, in file order. */
function sectionKinds(home: string, file: string): string[] {
  return JSON.parse(appshot(home, ['snapshot', 'inspect', file, '--json']).stdout).sections.map((s: { kind: string }) => s.kind);
}

/** A whole image of a counting application, which is ended (--stop). */
async function wholeImage(home: string, flags: readonly string[] = []): Promise<{ file: string; count: number; vpid: number }> {
  const h = await counting(home, 'orig', flags);
  const file = join(home, 'orig.snap');
  const s = appshot(home, ['snapshot', 'orig', '-o', file, '--stop']);
  expect(s.stderr).toBe('');
  expect(s.code).toBe(0);
  expect(s.stdout).toMatch(/^snapshot of 'orig' written to .*: 1 process\(es\) whole \(memory, threads, descriptors\), .* 1 process\(es\) ended/);
  const r = await h.done;
  expect(r.code).toBe(137);
  const [count, vpid] = lastCount(r.stdout);
  return { file, count, vpid };
}

describe('snapshot --ipc-only: the snapshot of before issue 18', () => {
  it('IPC state only, every process SIGSTOPped and resumed, inspect says the processes were not captured', async () => {
    const home = makeHome();
    const h = await counting(home, 'ipc');
    const file = join(home, 'ipc.snap');
    const s = appshot(home, ['snapshot', 'ipc', '--ipc-only', '-o', file, '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ aid: 'ipc', whole: false, processes: 1, stopped: false });
    const kinds = sectionKinds(home, file);
    expect(kinds.slice(0, 2)).toEqual(['meta', 'rows']);
    expect(kinds.filter((k) => ['files', 'shared', 'proc'].includes(k))).toEqual([]);
    const text = appshot(home, ['snapshot', 'inspect', file]).stdout;
    expect(text).toContain('processes: not captured (IPC state only: a restore starts the command again)');
    // Resumed: it counts on.
    const [before] = lastCount(h.out());
    await waitFor(h.out, new RegExp(`^count ${before + 3} `, 'm'));
    await end(home, 'ipc', h);
  });
});

describe('whole snapshot refused by the dumper', () => {
  it("a descriptor it cannot capture: the dumper's sentence passed on (exit 3), nothing written, the application running on", async () => {
    const home = makeHome();
    // countloop exec'd by python with an inotify instance at descriptor 7, a kind the dumper refuses.
    const inotify = `import ctypes, os; fd = ctypes.CDLL(None).inotify_init(); os.dup2(fd, 7); os.close(fd); os.execv('${COUNTLOOP}', ['${COUNTLOOP}'])`;
    const h = await counting(home, 'dev', [], ['python3', '-c', inotify]);
    const file = join(home, 'dev.snap');
    const r = appshot(home, ['snapshot', 'dev', '-o', file]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^appshot: .*\bprocess \d+ .*countloop.*descriptor 7\b.*\n$/s);
    expect(r.stderr).not.toMatch(/internal error|at .*\.js:/);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(home).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // Left running, not stopped nor traced.
    const [before, vpid] = lastCount(h.out());
    await waitFor(h.out, new RegExp(`^count ${before + 3} `, 'm'));
    expect(procStat(vpid)?.state).not.toMatch(/[tT]/);
    await end(home, 'dev', h);
  });
});

describe('whole snapshot killed part way', () => {
  it('SIGKILL of snapshot while the dumper holds the processes frozen: they run on, no file, no temporary file', async () => {
    const home = makeHome();
    const h = await counting(home, 'held');
    const file = join(home, 'held.snap');
    // The delay comes after `frozen`: the window in which the harness holds them.
    const snap = appshotAsync(home, ['snapshot', 'held', '-o', file], { APPSHOT_SNAPSHOT_DELAY_MS: '30000' });
    const [, vpid] = lastCount(h.out());
    const tmp = () => readdirSync(home).filter((f) => f.includes('.tmp-'));
    await waitFor(() => (procStat(vpid)?.state === 't' && tmp().length ? 'frozen' : ''), /frozen/);
    const [frozenAt] = lastCount(h.out());
    snap.child.kill('SIGKILL');
    await snap.done;
    // The dumper read the end of its input and let them go; the guard removed the temporary file.
    await waitFor(h.out, new RegExp(`^count ${frozenAt + 3} `, 'm'));
    await waitFor(() => (tmp().length ? '' : 'gone'), /gone/);
    expect(existsSync(file)).toBe(false);
    await end(home, 'held', h);
  });
});

describe('whole snapshot and restore', () => {
  it.each(MODES)('%s: snapshot --stop, restore under another AID: the counter continues from its saved value with its vpid, and ps shows it under the new AID', async (_mode, flags) => {
    const home = makeHome();
    const before = ipcSet();
    const { file, count, vpid } = await wholeImage(home, flags);
    expect(sectionKinds(home, file)).toEqual(expect.arrayContaining(['meta', 'rows', 'files', 'proc']));
    const back = appshotAsync(home, ['restore', file, '--aid', 'back']);
    const m = await waitFor(back.out, /^count (\d+) pid (\d+)$/m);
    // Continuing: not from 0, from where it was (a line printed twice at most).
    expect(Number(m[1])).toBeGreaterThanOrEqual(count);
    expect(Number(m[1])).toBeLessThanOrEqual(count + 2);
    expect(Number(m[2])).toBe(vpid);
    const ps = JSON.parse(appshot(home, ['ps', '--aid', 'back', '--json']).stdout);
    expect(ps).toEqual([expect.objectContaining({ aid: 'back', vpid, command: COUNTLOOP })]);
    expect(JSON.parse(appshot(home, ['ps', '--json']).stdout).map((p: { aid: string }) => p.aid)).toEqual(['back']);
    await end(home, 'back', back);
    expect(ipcSet()).toEqual(before);
  });

  it("a restore while the original runs: each application its own process (the restored one's environment names the original), and the restored one snapshotted and restored again continues", async () => {
    const home = makeHome();
    const orig = await counting(home, 'orig', ['--no-identity']);
    const file = join(home, 'orig.snap');
    expect(appshot(home, ['snapshot', 'orig', '-o', file]).code).toBe(0);
    const twin = appshotAsync(home, ['restore', file, '--aid', 'twin']);
    await waitFor(twin.out, /^count \d+ /m);
    const ps = JSON.parse(appshot(home, ['ps', '--json']).stdout) as { aid: string; vpid: number; spid: number }[];
    expect(ps.map((p) => p.aid).sort()).toEqual(['orig', 'twin']);
    expect(ps[0].vpid).toBe(ps[1].vpid);
    expect(ps[0].spid).not.toBe(ps[1].spid);
    const twinSpid = ps.find((p) => p.aid === 'twin')!.spid;
    expect(readFileSync(`/proc/${twinSpid}/environ`, 'latin1')).toContain('APPSHOT_AID=orig\0');
    // The original's end reaches its own process only.
    await end(home, 'orig', orig);
    const [at] = lastCount(twin.out());
    await waitFor(twin.out, new RegExp(`^count ${at + 3} `, 'm'));
    // The restored application, found by its rows, snapshotted whole and restored again.
    const again = join(home, 'twin.snap');
    const s = appshot(home, ['snapshot', 'twin', '-o', again, '--stop']);
    expect(s.stdout, s.stderr).toMatch(/1 process\(es\) whole/);
    const t = await twin.done;
    const [last, vpid] = lastCount(t.stdout);
    const third = appshotAsync(home, ['restore', again, '--aid', 'third']);
    const m = await waitFor(third.out, /^count (\d+) pid (\d+)$/m);
    expect(Number(m[1])).toBeGreaterThanOrEqual(last);
    expect(Number(m[1])).toBeLessThanOrEqual(last + 2);
    expect(Number(m[2])).toBe(vpid);
    await end(home, 'third', third);
  });

  it('snapshot inspect lists the processes (vpid, command, threads), their mappings and descriptors', async () => {
    const home = makeHome();
    const { file, vpid } = await wholeImage(home);
    const r = appshot(home, ['snapshot', 'inspect', file, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.meta.whole).toBe(true);
    expect(rep.processes).toEqual([
      expect.objectContaining({ vpid, ppid: 0, command: COUNTLOOP, threads: 1, mappings: { count: expect.any(Number), storedBytes: expect.any(Number) } }),
    ]);
    const p = rep.processes[0];
    expect(p.mappings.count).toBeGreaterThan(5);
    expect(p.mappings.storedBytes % 4096).toBe(0);
    expect(p.mappings.storedBytes).toBeGreaterThan(0);
    expect(p.descriptors.map((d: { fd: number }) => d.fd)).toEqual(expect.arrayContaining([0, 1, 2]));
    const text = appshot(home, ['snapshot', 'inspect', file]).stdout;
    expect(text).toContain('processes: 1, captured whole (a restore continues them)');
    expect(text).toMatch(new RegExp(`^${vpid}\\s+-\\s+1\\s+\\d+\\s+\\d+(\\.\\d)? [KM]iB\\s+${COUNTLOOP}$`, 'm'));
  });

  it('a restore the restorer refuses (a program file changed since the snapshot) removes everything it made: its IPC objects, rows, application', async () => {
    const home = makeHome();
    const before = ipcSet();
    // A program of its own, so the test can change it; and a semaphore set made first.
    const prog = join(home, 'countloop');
    copyFileSync(COUNTLOOP, prog);
    chmodSync(prog, 0o755);
    const h = appshotAsync(home, ['run', '--aid', 'orig', '--', 'sh', '-c', `ipcmk -S 2 >/dev/null && exec ${prog}`]);
    await waitFor(h.out, /^count 5 /m);
    const file = join(home, 'orig.snap');
    expect(appshot(home, ['snapshot', 'orig', '-o', file, '--stop']).code).toBe(0);
    await h.done;
    expect(ipcSet()).toEqual(before);
    appendFileSync(prog, 'changed');
    const r = appshot(home, ['restore', file, '--aid', 'back']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("appshot: restored 'back' from"); // the IPC state, first
    expect(r.stderr).toMatch(new RegExp(`^appshot: .*${prog}.*changed since the snapshot.*$`, 'm'));
    expect(r.stderr).toMatch(/^appshot: the processes of 'back' could not be restored from .*; everything the restore made was removed$/m);
    expect(r.stdout).not.toMatch(/^count /m);
    expect(ipcSet()).toEqual(before);
    expect(JSON.parse(appshot(home, ['tables', '--json']).stdout)).toEqual([]);
    // The snapshotted application's record stays (ended); of 'back' nothing.
    expect(JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout).map((a: { aid: string }) => a.aid)).toEqual(['orig']);
  });

  it('a call made in the process restored into that fails (a file it maps shared, writable, made immutable since) is named with its reason; nothing is left, and the same image restores once the file can be opened', async () => {
    const home = makeHome();
    // Outside the home (the restorer takes the home's mapped files as the home's own).
    const dir = mkdtempSync(join(tmpdir(), 'appshot-immutable-'));
    const data = join(dir, 'shared.bin');
    writeFileSync(data, Buffer.alloc(4096));
    // Written once, so its modification time is the snapshot's; then only read.
    // mmap(2) through ctypes: Python's mmap module keeps a descriptor of the file.
    const prog = [
      'import ctypes,os,time',
      'libc=ctypes.CDLL(None)',
      'libc.mmap.restype=ctypes.c_void_p',
      'libc.mmap.argtypes=[ctypes.c_void_p,ctypes.c_size_t,ctypes.c_int,ctypes.c_int,ctypes.c_int,ctypes.c_long]',
      `fd=os.open(${JSON.stringify(data)},os.O_RDWR)`,
      'm=(ctypes.c_char*4096).from_address(libc.mmap(None,4096,3,1,fd,0))', // PROT_READ|PROT_WRITE, MAP_SHARED
      'os.close(fd)',
      "m[0:5]=b'hello'",
      'n=0',
      'while True:',
      "  n+=1; print('tick',n,m[0:5].decode(),flush=True); time.sleep(0.05)",
    ].join('\n');
    try {
      const h = appshotAsync(home, ['run', '--aid', 'orig', '--', 'python3', '-c', prog]);
      await waitFor(h.out, /^tick 3 hello$/m);
      const file = join(home, 'orig.snap');
      expect(appshot(home, ['snapshot', 'orig', '-o', file, '--stop']).code).toBe(0);
      await h.done;
      // Root opens any file but an immutable one for writing.
      expect(spawnSync('chattr', ['+i', data]).status).toBe(0);
      const r = appshot(home, ['restore', file, '--aid', 'back']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^appshot: cannot restore process \\d+ \\(python3\\): ${data} cannot be opened to map it: Operation not permitted$`, 'm'));
      expect(r.stderr).toMatch(/^appshot: the processes of 'back' could not be restored from .*; everything the restore made was removed$/m);
      expect(r.stdout).not.toMatch(/^tick /m);
      expect(JSON.parse(appshot(home, ['ps', '--json']).stdout)).toEqual([]);
      expect(appshot(home, ['tables', '--apps', '--json']).stdout).not.toContain('back');
      expect(spawnSync('chattr', ['-i', data]).status).toBe(0);
      const again = appshotAsync(home, ['restore', file, '--aid', 'back']);
      await waitFor(again.out, /^tick \d+ hello$/m);
      await end(home, 'back', again);
    } finally {
      spawnSync('chattr', ['-i', data]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a program's own SIGTRAP handler survives the restore (a stop at an int3 while SIGTRAP is blocked makes the kernel reset it)", async () => {
    const home = makeHome();
    const prog = [
      'import os,signal,time',
      'trapped=0',
      'def on_trap(s,f):',
      '  global trapped; trapped+=1',
      'signal.signal(signal.SIGTRAP,on_trap)',
      'n=0',
      'while True:',
      "  n+=1; os.kill(os.getpid(),signal.SIGTRAP); print('tick',n,'trapped',trapped,flush=True); time.sleep(0.05)",
    ].join('\n');
    const h = appshotAsync(home, ['run', '--aid', 'orig', '--', 'python3', '-c', prog]);
    await waitFor(h.out, /^tick 3 trapped 3$/m);
    const file = join(home, 'orig.snap');
    expect(appshot(home, ['snapshot', 'orig', '-o', file, '--stop']).code).toBe(0);
    const saved = Math.max(...[...(await h.done).stdout.matchAll(/^tick (\d+) /gm)].map((m) => Number(m[1])));
    const back = appshotAsync(home, ['restore', file, '--aid', 'back']);
    // Five ticks after the saved one, each SIGTRAP caught by the handler (the default action would end it).
    const m = await waitFor(back.out, new RegExp(`^tick ${saved + 5} trapped (\\d+)$`, 'm'));
    expect(Number(m[1])).toBeGreaterThan(saved);
    await end(home, 'back', back);
  });

  describe('a damaged whole image is refused whole: nothing restored, no process started', () => {
    /** Restores (and inspects) a damaged file expecting refusal. */
    function refused(home: string, file: string, message: RegExp): void {
      const before = ipcSet();
      for (const args of [['snapshot', 'inspect', file], ['restore', file, '--aid', 'victim']]) {
        const r = appshot(home, args);
        expect(r.stderr).toMatch(message);
        expect(r.code).toBe(5);
        expect(r.stdout).not.toMatch(/^count /m);
      }
      expect(ipcSet()).toEqual(before);
      expect(JSON.parse(appshot(home, ['ps', '--json']).stdout)).toEqual([]);
      expect(appshot(home, ['tables', '--apps', '--json']).stdout).not.toContain('victim');
    }

    it('truncated inside its process sections, or at their end', async () => {
      const home = makeHome();
      const { file } = await wholeImage(home);
      const rep = JSON.parse(appshot(home, ['snapshot', 'inspect', file, '--json']).stdout);
      const proc = rep.sections.find((s: { kind: string }) => s.kind === 'proc');
      for (const cut of [proc.offset - 10, proc.offset + Math.floor(proc.length / 2), proc.offset + proc.length]) {
        const bad = join(home, `cut-${cut}.snap`);
        copyFileSync(file, bad);
        truncateSync(bad, cut);
        refused(home, bad, /is not a usable snapshot: it is truncated/);
      }
    });

    it('one flipped byte in a PROC section: its JSON header, its memory', async () => {
      const home = makeHome();
      const { file } = await wholeImage(home);
      const rep = JSON.parse(appshot(home, ['snapshot', 'inspect', file, '--json']).stdout);
      const proc = rep.sections.find((s: { kind: string }) => s.kind === 'proc');
      const bytes = readFileSync(file);
      for (const at of [proc.offset + 10, proc.offset + proc.length - 5]) {
        const bad = Buffer.from(bytes);
        bad[at] ^= 0x20;
        const path = join(home, `flip-${at}.snap`);
        writeFileSync(path, bad);
        refused(home, path, /is not a usable snapshot: section \d+ \(proc( contents)?\) at byte \d+ fails its checksum/);
      }
    });
  });
});
