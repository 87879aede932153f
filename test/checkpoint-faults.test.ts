import { copyFileSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addon } from '../ts/addon.js';
import { CHECKPOINT_PATH, builtProgram } from '../ts/paths.js';
import { kernelObjects } from '../ts/sysv/kernel.js';
import { MODES, appshot, appshotAsync, makeHome, tablesJson, waitFor } from './helpers.js';

/**
 * Issue 18's faults around a whole-process restore: `appshot restore` or
 * its restorer (`appshot-checkpoint restore`) SIGKILLed at several points
 * leaves nothing behind once `appshot gc` ran (or leaves an application
 * that runs whole, unsupervised, which ps/kill/gc handle), and an image
 * whose saved register state or vDSO this machine does not have is refused
 * by name with nothing created. Real programs under the real shim, the
 * restorer held at a stage by APPSHOT_RESTORE_DELAY_AT/_MS (restore.c).
 */

const COUNTLOOP = builtProgram('countloop');
const CKPTSYSV = builtProgram('ckptsysv');

interface AppRow {
  aid: string;
  state: string;
}
const apps = (home: string): AppRow[] => JSON.parse(appshot(home, ['tables', '--apps', '--json']).stdout);
const psJson = (home: string) => JSON.parse(appshot(home, ['ps', '--json']).stdout) as { aid: string; spid: number; vpid: number; command: string; unsupervised?: string }[];

/** Every SysV object of this file's IPC namespace. */
function ipcSet(): string[] {
  const all: string[] = [];
  for (const type of ['sem', 'shm', 'msg'] as const) for (const id of kernelObjects(type).keys()) all.push(`${type} ${id}`);
  return all;
}

function readProc(pid: string, what: string): string {
  try {
    return readFileSync(`/proc/${pid}/${what}`, 'latin1');
  } catch {
    return '';
  }
}

/** The live processes of this home: the restorer and its stubs name it on
 * their command line, the restored programs (and the supervisor) in their
 * environment. Zombies have neither. */
function processesOf(home: string): { pid: number; cmd: string; ppid: number; state: string }[] {
  const found = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmd = readProc(pid, 'cmdline');
    if (!cmd.includes(home) && !readProc(pid, 'environ').includes(`APPSHOT_HOME=${home}\0`)) continue;
    const stat = readProc(pid, 'stat');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (!stat || f[0] === 'Z') continue;
    found.push({ pid: Number(pid), cmd: cmd.replaceAll('\0', ' ').trim(), ppid: Number(f[1]), state: f[0] });
  }
  return found;
}

/** The restorer and its stubs (forks of it, the same command line) until
 * their memory is replaced. */
const checkpointProcs = (home: string) => processesOf(home).filter((p) => p.cmd.startsWith(`${CHECKPOINT_PATH} restore `));

/** The restorer: the one of them whose parent is not one of them. */
function restorerOf(home: string): number {
  const all = checkpointProcs(home);
  const pids = new Set(all.map((p) => p.pid));
  const r = all.filter((p) => !pids.has(p.ppid));
  expect(r).toHaveLength(1);
  return r[0].pid;
}

/** Nothing of the home left: no process, no kernel object, no row, no
 * application but ended ones; and gc has nothing more to do. */
async function nothingLeft(home: string): Promise<void> {
  await waitFor(() => JSON.stringify(processesOf(home)), /^\[\]$/, 10_000);
  expect(ipcSet()).toEqual([]);
  expect(psJson(home)).toEqual([]);
  expect(tablesJson(home)).toEqual([]);
  expect(apps(home).filter((a) => a.state !== 'ended')).toEqual([]);
  expect(appshot(home, ['gc']).stdout).toMatch(/nothing to clean up/);
}

/**
 * A whole image of two processes under the shim: countloop (the root, exec'd
 * by sh) and its child ckptsysv, whose SysV segment the image holds too. The
 * application is ended (--stop), nothing of it left.
 */
async function image(home: string, flags: readonly string[]): Promise<{ file: string; rootVpid: number }> {
  const h = appshotAsync(home, ['run', '--aid', 'orig', ...flags, '--', 'sh', '-c', `${CKPTSYSV} 20 & exec ${COUNTLOOP}`]);
  await waitFor(h.out, /^count 5 [\s\S]*^tick /m);
  await waitFor(h.out, /^tick [\s\S]*^count 10 /m);
  const file = join(home, 'orig.snap');
  const s = appshot(home, ['snapshot', 'orig', '-o', file, '--stop']);
  expect(s.code, s.stderr).toBe(0);
  expect(s.stdout).toMatch(/2 process\(es\) whole/);
  const r = await h.done;
  const rootVpid = Number([...r.stdout.matchAll(/^count \d+ pid (\d+)$/gm)].at(-1)![1]);
  await nothingLeft(home);
  return { file, rootVpid };
}

/** One image per mode for the whole file (each test restores it under AIDs
 * of its own, and leaves nothing behind). */
const images = new Map<string, Promise<{ home: string; file: string; rootVpid: number }>>();
function sharedImage(flags: readonly string[]): Promise<{ home: string; file: string; rootVpid: number }> {
  const key = flags.join(' ');
  if (!images.has(key)) {
    const home = makeHome();
    images.set(key, image(home, flags).then((i) => ({ home, ...i })));
  }
  return images.get(key)!;
}

/** `appshot restore` of the image under AID with the restorer held at STAGE. */
function restoreHeld(home: string, file: string, aid: string, stage: string, ms = 30_000) {
  return appshotAsync(home, ['restore', file, '--aid', aid], { APPSHOT_RESTORE_DELAY_AT: stage, APPSHOT_RESTORE_DELAY_MS: String(ms) });
}

/** Waits until the restorer holds both processes at STAGE; its pid. */
async function heldAt(home: string, stage: 'stubs' | 'memory' | 'resumed', h: ReturnType<typeof appshotAsync>): Promise<number> {
  const at = () => {
    const ck = checkpointProcs(home);
    const progs = processesOf(home).filter((p) => /countloop|ckptsysv/.test(p.cmd));
    if (stage === 'stubs') return ck.length === 3 ? 'held' : ''; // the restorer and a stub per process
    // The stubs are the programs now: traced (t), or the first running.
    if (stage === 'memory') return ck.length === 1 && progs.length === 2 && progs.every((p) => p.state === 't') ? 'held' : '';
    return ck.length === 1 && progs.length === 2 && /^count \d+ /m.test(h.out()) ? 'held' : '';
  };
  await waitFor(at, /held/);
  return restorerOf(home);
}

describe.each(MODES)('a restore killed part way (%s)', (_mode, flags) => {
  it('the restorer SIGKILLed with its stubs ready, with every process whole and traced, and with one already resumed: the harness removes everything, gc finds nothing', async () => {
    const { home, file } = await sharedImage(flags);
    for (const stage of ['stubs', 'memory', 'resumed'] as const) {
      const h = restoreHeld(home, file, `back-${stage}`, stage);
      process.kill(await heldAt(home, stage, h), 'SIGKILL');
      const r = await h.done;
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toContain(`appshot: the processes of 'back-${stage}' could not be restored from ${file}; everything the restore made was removed`);
      expect(r.stderr).not.toMatch(/at .*\.js:/);
      await nothingLeft(home);
    }
  });

  it('the harness SIGKILLed while the restorer holds the stubs: the restore completes, the application runs unsupervised (ps says so), kill and gc end it', async () => {
    const { home, file, rootVpid } = await sharedImage(flags);
    const h = restoreHeld(home, file, 'headless', 'stubs', 1500);
    await heldAt(home, 'stubs', h);
    h.child.kill('SIGKILL');
    // Restored (the stubs, bound to their vpids, show in ps too until then): both programs run.
    await waitFor(() => psJson(home).filter((p) => p.unsupervised === 'no harness' && /countloop|ckptsysv/.test(p.command)).length + ' running', /^2 running/);
    const ps = psJson(home);
    expect(ps.map((p) => p.aid)).toEqual(['headless', 'headless']);
    expect(ps.map((p) => p.vpid)).toContain(rootVpid);
    expect(checkpointProcs(home)).toEqual([]);
    expect(appshot(home, ['gc']).stdout).toMatch(/nothing to clean up/); // it runs: not gc's
    const k = appshot(home, ['kill', 'headless']);
    expect(k.code).toBe(0);
    await waitFor(() => JSON.stringify(processesOf(home)), /^\[\]$/, 10_000);
    // Its supervisor told a harness that is gone; gc ends what is left (its segment, rows).
    const gc = appshot(home, ['gc']);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/ended 'headless': removed 1 shared memory segment/);
    await nothingLeft(home);
  });

  it('the harness and the restorer both SIGKILLed (stubs ready, then every process traced): gc removes the rows, the segment and the application', async () => {
    const { home, file } = await sharedImage(flags);
    for (const stage of ['stubs', 'memory'] as const) {
      const aid = `both-${stage}`;
      const h = restoreHeld(home, file, aid, stage);
      const restorer = await heldAt(home, stage, h);
      h.child.kill('SIGKILL');
      process.kill(restorer, 'SIGKILL');
      await waitFor(() => JSON.stringify(processesOf(home)), /^\[\]$/, 10_000);
      const gc = appshot(home, ['gc']);
      expect(gc.code, gc.stderr).toBe(0);
      expect(gc.stdout).toMatch(new RegExp(`ended '${aid}'`));
      await nothingLeft(home);
    }
  });
});

/* ---- images this machine cannot restore ---- */

const crc = (b: Buffer, seed = 0) => addon().crc32c(b, seed) >>> 0;

/**
 * Rewrites, in a copy of FILE, the first PROC section's JSON through EDIT
 * (which must keep its length: the memory after it stays page-aligned) and
 * gives the section its checksums again, so only the edit is "wrong".
 */
function editedImage(file: string, out: string, edit: (json: string) => string): void {
  const b = readFileSync(file);
  for (let at = 16; at < b.length; ) {
    const kind = b.readUInt32BE(at);
    const len = Number(b.readBigUInt64BE(at + 8));
    const payload = b.subarray(at + 24, at + 24 + len);
    if (kind === 8) {
      const jlen = payload.readUInt32BE(0);
      const json = payload.subarray(4, 4 + jlen).toString('latin1');
      const changed = edit(json);
      expect(changed.length).toBe(json.length);
      expect(changed).not.toBe(json);
      payload.write(changed, 4, 'latin1');
      b.writeUInt32BE(crc(payload), at + 16);
      b.writeUInt32BE(crc(b.subarray(at, at + 20)), at + 20);
      writeFileSync(out, b);
      return;
    }
    at += 24 + len;
  }
  throw new Error(`no PROC section in ${file}`);
}

/** A hex string's byte at INDEX replaced by FN of it. */
function hexByte(hex: string, index: number, fn: (v: number) => number): string {
  const at = (hex.startsWith('0x') ? 2 : 0) + index * 2;
  const v = fn(parseInt(hex.slice(at, at + 2), 16));
  return hex.slice(0, at) + v.toString(16).padStart(2, '0') + hex.slice(at + 2);
}

describe('an image this machine lacks a feature for', () => {
  it('saved register state of a component this CPU lacks (the XSAVE header of its first thread: AVX-512, AMX or APX) or another vDSO: refused naming the process and what is missing, nothing created', async () => {
    const { home, file, rootVpid } = await sharedImage([]);
    const check = (edited: string, aid: string, why: RegExp) => {
      const r = appshot(home, ['restore', edited, '--aid', aid]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^appshot: cannot restore process ${rootVpid} \\(countloop\\) from ${edited}: `, 'm'));
      expect(r.stderr).toMatch(why);
      expect(r.stderr).not.toMatch(/at .*\.js:/);
      expect(r.stdout).not.toMatch(/^count /m);
    };
    // xstate_bv at byte 512 of the XSAVE area: the image is made to use a component this CPU lacks, the first of
    // AVX-512 (bits 5-7: opmask, ZMM_Hi256, Hi16_ZMM), AMX (17-18: tile config and data) and APX (19) that
    // /proc/cpuinfo does not list (the machines this runs on differ: some have AVX-512).
    const cpu = readFileSync('/proc/cpuinfo', 'utf8');
    const lacking = [
      { flag: 'avx512f', name: 'AVX-512', bits: 0xe0n },
      { flag: 'amx_tile', name: 'AMX', bits: 0x3n << 17n },
      { flag: 'apx_f', name: 'APX', bits: 0x1n << 19n },
    ].find((f) => !new RegExp(`\\b${f.flag}\\b`).test(cpu));
    if (!lacking) throw new Error('this CPU has AVX-512, AMX and APX: the test needs an XSAVE component it lacks');
    const avx = join(home, 'xfeature.snap');
    const orBits = (hex: string) => {
      let h = hex;
      for (let i = 0; i < 8; i++) h = hexByte(h, 512 + i, (v) => v | Number((lacking.bits >> BigInt(8 * i)) & 0xffn));
      return h;
    };
    editedImage(file, avx, (json) => json.replace(/("xstate":")([0-9a-fx]+)"/, (_m, k, hex) => `${k}${orBits(hex)}"`));
    check(avx, 'avx', new RegExp(`this CPU or kernel does not have: ${lacking.name} \\(XSAVE features 0x${lacking.bits.toString(16)}\\b`));
    await nothingLeft(home);
    // Another kernel's vDSO: its checksum differs from this one's.
    const vdso = join(home, 'vdso.snap');
    editedImage(file, vdso, (json) => json.replace(/("vdso":\{[^}]*"crc":")(0x[0-9a-f]+)"/, (_m, k, hex) => `${k}${hex.slice(0, -1)}${hex.endsWith('0') ? '1' : '0'}"`));
    check(vdso, 'vdso', /saved on another kernel \(its vDSO differs from this kernel's\)/);
    await nothingLeft(home);
    // The original restores (the edits, not the image, were refused).
    const h = appshotAsync(home, ['restore', file, '--aid', 'fine']);
    await waitFor(h.out, /^count \d+ /m);
    appshot(home, ['kill', 'fine']);
    await h.done;
    await nothingLeft(home);
  });
});
