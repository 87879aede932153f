import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, closeSync, copyFileSync, fstatSync, mkdtempSync, openSync, readlinkSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addon } from '../ts/addon.js';
import { builtProgram } from '../ts/paths.js';
import { makeHome } from './helpers.js';

/* The checkpoint engine alone (native/checkpoint): real processes dumped
 * from outside with ptrace and restored under new kernel pids, continuing
 * from where they stood. No tables, no shim: appshot-checkpoint's
 * standalone mode. */

const CKPT = builtProgram('appshot-checkpoint');
const COUNT = builtProgram('ckptcount');
const THREADS = builtProgram('ckptthreads');
const TREE = builtProgram('ckpttree');
const MEM = builtProgram('ckptmem');
const SHARED = builtProgram('ckptshared');
const SYSV = builtProgram('ckptsysv');
const SEMTOOL = builtProgram('semtool');

const started: ChildProcess[] = [];
const madeDirs: string[] = [];
const restoredPids: number[] = [];

afterEach(() => {
  for (const pid of restoredPids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const c of started.splice(0)) c.kill('SIGKILL');
  for (const dir of madeDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/* Descriptors the test runner inherited from whoever started it would be
 * the programs' too: they start with 0-2 only. */
const ONLY_STDIO = 'for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec "$@"';

/* As root, the unprivileged tests run their programs as nobody. */
const AS_NOBODY = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];

/** A program whose stdout lines are collected; until() waits for one. */
function run(cmd: string, args: string[], prefix: string[] = []) {
  const child = spawn('bash', ['-c', ONLY_STDIO, 'bash', ...prefix, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (d) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const until = (pred: (line: string) => boolean, what: string, ms = 10_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; stdout: ${lines.slice(-5).join(' | ')}; stderr: ${stderr}; exit: ${child.exitCode} ${child.signalCode}`)), ms);
      const check = () => {
        const hit = lines.find(pred);
        if (hit) {
          clearTimeout(timer);
          resolve(hit);
        } else waiters.push(check);
      };
      check();
    });
  return { child, lines, until, exited, stderr: () => stderr };
}

interface Tick {
  pid: number;
  counts: number[];
}
const tick = (line: string): Tick => {
  const [, pid, ...counts] = line.split(' ').map(Number);
  return { pid, counts };
};
const isTick = (l: string) => l.startsWith('tick ');

function dump(pids: number[], image: string, extra: string[] = [], prefix: string[] = []) {
  const [cmd, ...args] = [...prefix, CKPT, 'dump', '--pids', pids.join(','), '--out', image, ...extra];
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
}

describe('one process', () => {
  it('a counter kept in a global, the heap and the stack goes on from its saved value under a new pid', async () => {
    const image = join(makeHome(), 'count.img');
    const app = run(COUNT, ['10']);
    await app.until((l) => isTick(l) && tick(l).counts[0] >= 5, 'five ticks');
    const d = dump([app.child.pid!], image, ['--kill']);
    expect(d.stderr).toBe('');
    expect(d.status).toBe(0);
    await app.exited;
    const last = tick(app.lines.filter(isTick).at(-1)!);
    expect(last.counts).toEqual([last.counts[0], last.counts[0], last.counts[0]]);

    const restored = run(CKPT, ['restore', '--image', image, '--wait']);
    const first = tick(await restored.until(isTick, 'a tick after the restore'));
    restoredPids.push(first.pid);
    expect(first.pid).not.toBe(app.child.pid);
    const n = last.counts[0] + 1;
    expect(first.counts).toEqual([n, n, n]);
    const later = tick(await restored.until((l) => isTick(l) && tick(l).counts[0] >= n + 5, 'five more ticks'));
    expect(later.pid).toBe(first.pid);
  });
});

describe('threads', () => {
  it('three counting threads go on; threads stopped in nanosleep and on a futex continue; pthread_kill finds the thread', async () => {
    const dir = makeHome();
    const image = join(dir, 'threads.img');
    const wake = join(dir, 'wake');
    const app = run(THREADS, ['10', wake]);
    await app.until((l) => isTick(l) && tick(l).counts.slice(0, 3).every((c) => c >= 20), 'counting threads');
    const d = dump([app.child.pid!], image, ['--kill']);
    expect(d.stderr).toBe('');
    expect(d.status).toBe(0);
    await app.exited;
    const last = tick(app.lines.filter(isTick).at(-1)!);
    expect(app.lines).not.toContain('woke');

    const restored = run(CKPT, ['restore', '--image', image, '--wait']);
    const first = tick(await restored.until(isTick, 'a tick after the restore'));
    restoredPids.push(first.pid);
    expect(first.pid).not.toBe(app.child.pid);
    // Each counter, and the sleeper's count, from where it stood, onwards.
    const ahead = (t: Tick) => t.counts.every((c, i) => c >= last.counts[i]);
    expect(ahead(first)).toBe(true);
    const later = tick(
      await restored.until((l) => isTick(l) && tick(l).counts.every((c, i) => c > last.counts[i] + (i < 3 ? 20 : 1)), 'every thread counting on'),
    );
    expect(ahead(later)).toBe(true);
    writeFileSync(wake, '');
    await restored.until((l) => l === 'woke', 'the futex waiter woken');
    // pthread_kill signals by glibc's cached TID, which the restore rewrote.
    expect(await restored.until((l) => l.startsWith('pthread_kill'), 'pthread_kill')).toBe('pthread_kill 0');
    await restored.until((l) => l === 'signalled', 'the signal handled');
  });
});

describe('unprivileged', () => {
  it('threads go on when an unprivileged user dumps and restores its own process; the exe link stays the restorer\'s (it needs CAP_CHECKPOINT_RESTORE)', async () => {
    // A folder of its own that nobody can reach (the test root is private to root).
    const dir = mkdtempSync(join(tmpdir(), 'appshot-ckpt-nobody-'));
    chmodSync(dir, 0o777);
    madeDirs.push(dir);
    const image = join(dir, 'threads.img');
    const app = run(THREADS, ['10', join(dir, 'wake')], AS_NOBODY);
    await app.until((l) => isTick(l) && tick(l).counts[0] >= 20, 'counting threads');
    const d = dump([app.child.pid!], image, ['--kill'], AS_NOBODY);
    expect(d.stderr).toBe('');
    expect(d.status).toBe(0);
    await app.exited;
    const last = tick(app.lines.filter(isTick).at(-1)!);
    const restored = run(CKPT, ['restore', '--image', image, '--wait'], AS_NOBODY);
    const first = tick(await restored.until(isTick, 'a tick after the restore'));
    restoredPids.push(first.pid);
    expect(first.counts.every((c, i) => c >= last.counts[i])).toBe(true);
    await restored.until((l) => isTick(l) && tick(l).counts[0] > last.counts[0] + 20, 'counting on');
    expect(readlinkSync(`/proc/${first.pid}/exe`)).toBe(AS_NOBODY.length ? CKPT : THREADS);
  });
});

describe('a thread blocked in a system call', () => {
  it('semop waiting when frozen does not see EINTR: it waits on after a dump that lets it go, and after a restore, until the semaphore is raised', async () => {
    const dir = makeHome();
    const waiting = () => run(SEMTOOL, ['private', '1', 'op', '0', '-1', 'getval', '0', 'rmmine']);
    const app = waiting();
    const id = (await app.until((l) => l.startsWith('id '), 'the set made')).split(' ')[1];
    try {
      // Dumped and let go: still waiting, then woken by a raise.
      expect(dump([app.child.pid!], join(dir, 'live.img')).status).toBe(0);
      expect(spawnSync(SEMTOOL, ['use', id, 'getval', '0', 'ncnt', '0'], { encoding: 'utf8' }).stdout).toBe('val 0\ncnt 1\n');
      expect(app.lines).toEqual([`id ${id}`]);
      // Dumped and killed, restored (no tables: the same set): waiting again, woken by a raise.
      const image = join(dir, 'sem.img');
      expect(dump([app.child.pid!], image, ['--kill']).status).toBe(0);
      await app.exited;
      expect(app.lines).toEqual([`id ${id}`]);
      const restored = run(CKPT, ['restore', '--image', image, '--wait']);
      for (let i = 0; i < 200 && !spawnSync(SEMTOOL, ['use', id, 'ncnt', '0'], { encoding: 'utf8' }).stdout.includes('cnt 1'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(spawnSync(SEMTOOL, ['use', id, 'op', '0', '1'], { encoding: 'utf8' }).stdout).toBe('ok 0\n');
      await restored.until((l) => l === 'removed 1', 'the restored semop done');
      expect(restored.lines).toEqual(['ok 0', 'val 0', 'removed 1']);
    } finally {
      spawnSync('ipcrm', ['-s', id]);
    }
  });
});

describe('process trees', () => {
  it('a parent and its child talking over two pipes go on, the child its own group in the parent\'s session', async () => {
    const image = join(makeHome(), 'tree.img');
    const app = run(TREE, ['10']);
    const before = (await app.until((l) => isTick(l) && tick(l).counts[1] >= 5, 'five answers')).split(' ').map(Number);
    const [parent, child] = [before[1], before[2]];
    const d = dump([parent, child], image, ['--kill']);
    expect(d.stderr).toBe('');
    expect(d.status).toBe(0);
    await app.exited;
    const last = app.lines.filter(isTick).at(-1)!.split(' ').map(Number);

    const restored = run(CKPT, ['restore', '--image', image, '--wait']);
    const first = (await restored.until(isTick, 'a tick after the restore')).split(' ').map(Number);
    restoredPids.push(first[1], first[2]);
    expect(first[1]).not.toBe(parent);
    expect(first[2]).not.toBe(child);
    // The next number down the pipe, answered by the child, which still
    // leads its own process group inside its parent's session.
    expect(first.slice(3)).toEqual([last[3] + 1, 2 * (last[3] + 1), 1]);
    await restored.until((l) => isTick(l) && Number(l.split(' ')[3]) >= last[3] + 5, 'five more answers');
  });
});

describe('shared anonymous memory', () => {
  it('a page a parent and its child share comes back once, shared again: the parent reads the restored child\'s writes', async () => {
    const image = join(makeHome(), 'shared.img');
    const app = run(SHARED, ['10']);
    const line = (l: string) => l.split(' ').map(Number); // tick, parent, child (from the page), n, counter (from the page)
    const before = line(await app.until((l) => isTick(l) && line(l)[4] >= 5, 'the child counting'));
    expect(dump([before[1], before[2]], image, ['--kill']).status).toBe(0);
    await app.exited;
    const last = line(app.lines.filter(isTick).at(-1)!);

    const restored = run(CKPT, ['restore', '--image', image, '--wait']);
    const after = line(await restored.until((l) => isTick(l) && line(l)[2] !== last[2], 'the restored child\'s pid in the page'));
    restoredPids.push(after[1], after[2]);
    expect(after[1]).not.toBe(last[1]);
    // The child writes its (new) pid and counts on into the page the parent reads.
    expect(after[4]).toBeGreaterThanOrEqual(last[4]);
    const later = line(await restored.until((l) => isTick(l) && line(l)[4] >= after[4] + 5, 'the counter going on'));
    expect(later[2]).toBe(after[2]);
  });
});

describe('SysV attachments', () => {
  it('a segment attached is attached again at the same address: the counter in it goes on', async () => {
    const image = join(makeHome(), 'sysv.img');
    const app = run(SYSV, ['10']);
    const first = (await app.until((l) => isTick(l) && Number(l.split(' ')[4]) >= 5, 'five ticks')).split(' ');
    const shmid = first[2];
    try {
      expect(dump([app.child.pid!], image, ['--kill']).status).toBe(0);
      await app.exited;
      const last = app.lines.filter(isTick).at(-1)!.split(' ');
      const restored = run(CKPT, ['restore', '--image', image, '--wait']);
      const after = (await restored.until(isTick, 'a tick after the restore')).split(' ');
      restoredPids.push(Number(after[1]));
      expect(after[1]).not.toBe(last[1]);
      // Same segment (this engine test has no tables: the segment lived on), same address, next count.
      expect(after.slice(2)).toEqual([shmid, last[3], String(Number(last[4]) + 1)]);
    } finally {
      for (const pid of restoredPids.splice(0)) process.kill(pid, 'SIGKILL');
      spawnSync('ipcrm', ['-m', shmid]);
    }
  });
});

describe('memory mapped from the image', () => {
  /** [tick number, sum over every page] of a ckptmem line. */
  const state = (l: string) => l.split(' ').slice(2).map(BigInt);

  it('two restores of one image run side by side from the same state; a restored process snapshotted again comes back again', async () => {
    const dir = makeHome();
    const [first, second] = [join(dir, 'mem1.img'), join(dir, 'mem2.img')];
    const app = run(MEM, ['32', '10']);
    await app.until(isTick, 'the memory filled');
    expect(dump([app.child.pid!], first, ['--kill']).status).toBe(0);
    await app.exited;
    const [n, sum] = state(app.lines.filter(isTick).at(-1)!);

    // Each tick adds one to a word the sum covers: the next line is n+1, sum+1.
    const a = run(CKPT, ['restore', '--image', first, '--wait', '--map-pages']);
    const b = run(CKPT, ['restore', '--image', first, '--wait', '--map-pages']);
    const [la, lb] = [await a.until(isTick, 'restore a'), await b.until(isTick, 'restore b')];
    restoredPids.push(tick(la).pid, tick(lb).pid);
    expect(tick(la).pid).not.toBe(tick(lb).pid);
    expect(state(la)).toEqual([n + 1n, sum + 1n]);
    expect(state(lb)).toEqual([n + 1n, sum + 1n]);

    // The restored one (its pages partly the image's file) dumped and restored again.
    const seen = state(await a.until((l) => isTick(l) && state(l)[0] >= n + 5n, 'restore a running on'));
    expect(seen[1] - sum).toBe(seen[0] - n);
    const again = dump([tick(la).pid], second, ['--kill']);
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
    await a.exited;
    const [n2, sum2] = state(a.lines.filter(isTick).at(-1)!);
    const c = run(CKPT, ['restore', '--image', second, '--wait']);
    const lc = await c.until(isTick, 'the second restore');
    restoredPids.push(tick(lc).pid);
    expect(state(lc)).toEqual([n2 + 1n, sum2 + 1n]);
  });
});

describe('the harness protocol', () => {
  /** A framed section of ts/snapfile.ts: kind, 0, length, payload crc, header crc. */
  function section(kind: number, payload: Buffer): Buffer {
    const h = Buffer.alloc(24);
    h.writeUInt32BE(kind, 0);
    h.writeBigUInt64BE(BigInt(payload.length), 8);
    h.writeUInt32BE(addon().crc32c(payload) >>> 0, 16);
    h.writeUInt32BE(addon().crc32c(h.subarray(0, 20)) >>> 0, 20);
    return Buffer.concat([h, payload]);
  }

  it('frozen, dump at the offset the caller gives, written with the new offset, kill: the file the caller finishes restores', async () => {
    const image = join(makeHome(), 'protocol.img');
    const app = run(COUNT, ['10']);
    await app.until((l) => isTick(l) && tick(l).counts[0] >= 3, 'ticks');
    const fd = openSync(image, 'w+');
    const head = Buffer.alloc(16);
    Buffer.from('APPSNAP\n').copy(head);
    head.writeUInt32BE(1, 8);
    head.writeUInt32BE(addon().crc32c(head.subarray(0, 12)) >>> 0, 12);
    const meta = section(1, Buffer.from('{"whole":true}'));
    writeSync(fd, Buffer.concat([head, meta]));
    const dumper = spawn(CKPT, ['dump', '--pids', String(app.child.pid), '--image-fd', '3'], { stdio: ['pipe', 'pipe', 'pipe', fd] });
    started.push(dumper);
    // One line per step: the dumper answers only when asked.
    const next = () => new Promise<string>((resolve) => dumper.stdout!.once('data', (d) => resolve(String(d).trim())));
    expect(await next()).toBe(`frozen 1 pids ${app.child.pid}`);
    dumper.stdin!.write(`dump ${head.length + meta.length}\n`);
    const [word, end, sections] = (await next()).split(' ');
    expect(word).toBe('written');
    expect(Number(end)).toBe(fstatSync(fd).size);
    expect(Number(sections)).toBe(2); // FILES, one PROC
    dumper.stdin!.end('kill\n');
    expect(await new Promise((resolve) => dumper.on('close', resolve))).toBe(0);
    await app.exited;
    writeSync(fd, section(0xffff, Buffer.from(`{"sections":${Number(sections) + 1}}`)), 0, undefined, Number(end));
    closeSync(fd);
    const last = tick(app.lines.filter(isTick).at(-1)!);
    const restored = run(CKPT, ['restore', '--image', image, '--wait']);
    const first = tick(await restored.until(isTick, 'a tick after the restore'));
    restoredPids.push(first.pid);
    expect(first.counts[0]).toBe(last.counts[0] + 1);
  });
});

describe('refusals', () => {
  it('a process another tracer holds (here a dumper in the harness protocol) is refused by name and runs on once let go', async () => {
    const dir = makeHome();
    const app = run(COUNT, ['10']);
    await app.until(isTick, 'a tick');
    const pid = app.child.pid!;
    const fd = openSync(join(dir, 'held.img'), 'w+');
    const holder = spawn(CKPT, ['dump', '--pids', String(pid), '--image-fd', '3'], { stdio: ['pipe', 'pipe', 'pipe', fd] });
    started.push(holder);
    closeSync(fd);
    const frozen = await new Promise<string>((resolve) => holder.stdout!.once('data', (d) => resolve(String(d))));
    expect(frozen).toBe(`frozen 1 pids ${pid}\n`);
    const d = dump([pid], join(dir, 'second.img'));
    expect(d.status).toBe(3);
    expect(d.stderr).toBe(`appshot: cannot snapshot process ${pid} (ckptcount): it is being traced by process ${holder.pid} (a debugger?); detach it first; nothing was changed, the application runs on\n`);
    const ticks = app.lines.filter(isTick).length;
    holder.stdin!.end('detach\n');
    expect(await new Promise((resolve) => holder.on('close', resolve))).toBe(0);
    await app.until((l) => isTick(l) && tick(l).counts[0] > ticks + 3, 'ticks after the detach');
  });

  it('a restore whose mapped program changed since the dump is refused by name, nothing started', async () => {
    const dir = makeHome();
    const prog = join(dir, 'ckptcount');
    copyFileSync(COUNT, prog);
    chmodSync(prog, 0o755);
    const app = run(prog, ['10']);
    await app.until(isTick, 'a tick');
    const image = join(dir, 'count.img');
    expect(dump([app.child.pid!], image, ['--kill']).status).toBe(0);
    await app.exited;
    appendFileSync(prog, 'changed');
    const r = spawnSync(CKPT, ['restore', '--image', image, '--wait'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^appshot: cannot restore process \\d+ \\(ckptcount\\) from .*: the file it maps, ${prog}, changed since the snapshot`));
  });
});
