import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { makeHome } from './helpers.js';

/* The checkpoint engine alone (native/checkpoint): real processes dumped
 * from outside with ptrace and restored under new kernel pids, continuing
 * from where they stood. No tables, no shim: appshot-checkpoint's
 * standalone mode. */

const CKPT = builtProgram('appshot-checkpoint');
const COUNT = builtProgram('ckptcount');
const THREADS = builtProgram('ckptthreads');

const started: ChildProcess[] = [];
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
});

/* Descriptors the test runner inherited from whoever started it would be
 * the programs' too: they start with 0-2 only. */
const ONLY_STDIO = 'for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec "$@"';

/** A program whose stdout lines are collected; until() waits for one. */
function run(cmd: string, args: string[]) {
  const child = spawn('bash', ['-c', ONLY_STDIO, 'bash', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; stdout: ${lines.slice(-5).join(' | ')}; stderr: ${stderr}`)), ms);
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

function dump(pids: number[], image: string, extra: string[] = []) {
  return spawnSync(CKPT, ['dump', '--pids', pids.join(','), '--out', image, ...extra], { encoding: 'utf8', timeout: 30_000 });
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
