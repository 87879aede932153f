import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, PIDTOOL, appshot, appshotAsync, lines, makeHome, runNative, tablesJson, waitFor } from './helpers.js';

/* The parent records a fork child's row in a write transaction right after
 * fork returns, while its memory is still shared with the child: each page
 * that transaction writes for the first time is copied (copy-on-write).
 * LMDB's memory lives in a heap of its own that the kernel wipes in a fork
 * child (native/core/lmdbheap.h), so the parent writes it in place. */

const HEAPTOOL = builtProgram('lmdbheaptool');

function heaptool(...args: string[]): string[] {
  const r = spawnSync(HEAPTOOL, args, { encoding: 'utf8', timeout: 20_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return lines(r.stdout);
}

describe("LMDB's heap", () => {
  it('gives a freed block again, zeroes calloc, keeps bytes across realloc, a page buffer on one page', () => {
    expect(heaptool('reuse')).toEqual(['in heap 1', 'reused 1 zeroed 1', 'realloc moved 1 kept 1', 'page aligned 1']);
  });

  it('a fork child, also one of a raw fork system call, finds it wiped and allocates at its start without touching the parent', () => {
    expect(heaptool('fork')).toEqual([
      'wipe on fork 1',
      'fork child wiped 1 first place 1',
      'raw child wiped 1 first place 1',
      'parent kept 1',
    ]);
  });

  it('four threads allocating and freeing at once are never given the same block', () => {
    expect(heaptool('threads')).toEqual(['threads ok']);
  });

  it('past its end, blocks come from libc and go back to libc', () => {
    const out = heaptool('full');
    const m = /^heap blocks (\d+) then libc 1$/.exec(out[0]);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(out[1]).toBe('freed block given again 1');
  });
});

describe.each(MODES)("a fork's parent under the shim, %s", (mode, flags) => {
  it("holds the tables' LMDB memory in wipe-on-fork memory", async () => {
    const home = makeHome();
    const app = appshotAsync(home, ['run', '--aid', 'h', ...flags, '--', PIDTOOL, 'pid', 'child', '0', 'sleep', '100000']);
    const vpid = Number((await waitFor(app.out, /^pid (\d+)/m))[1]);
    await waitFor(app.out, /^reaped \d+ status 0$/m); // a fork child recorded and reaped
    const spid = tablesJson(home, ['--type', 'pid']).find((r) => r.virtual === vpid)!.system;
    // smaps: a header line per mapping, then its fields; the heap is the
    // 32 MiB wipe-on-fork mapping, with pages in use.
    const maps = readFileSync(`/proc/${spid}/smaps`, 'latin1').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
    const heap = maps.filter((m) => /^Size:\s+32768 kB$/m.test(m) && /^VmFlags:.* wf/m.test(m));
    expect(heap).toHaveLength(1);
    expect(Number(/^Rss:\s+(\d+) kB$/m.exec(heap[0])![1])).toBeGreaterThan(0);
    app.child.kill('SIGTERM');
    await app.done;
  });

  it('copies a few pages per fork, not the pages of its write transaction (23 before), and its child as few', () => {
    // The fewest of three runs each: where the stack begins within its page
    // changes from run to run, and with it a page more or less.
    const fewest = (run: () => string) => {
      const runs = [0, 1, 2].map(() => /^faults per fork (\d+) child (\d+)$/.exec(run().trim())!.slice(1).map(Number));
      return [Math.min(...runs.map((r) => r[0])), Math.min(...runs.map((r) => r[1]))];
    };
    const [native, nativeChild] = fewest(() => runNative(['forkfaults', '200'], PIDTOOL).stdout);
    const [shim, shimChild] = fewest(() => {
      const r = appshot(makeHome(), ['run', '--aid', 'h', ...flags, '--', PIDTOOL, 'forkfaults', '200']);
      expect(r.stderr).toBe('');
      return r.stdout;
    });
    // Native 2 here (the stack, the thread's rseq area); with the shim 5:
    // the page of what the shim writes after fork, the thread's robust-lock
    // list (LMDB's write lock) and a stack page deeper (the write). 6-7
    // when LMDB's environment handle and the journal's view, in libc's
    // heap, were written too.
    expect(shim - native).toBeLessThanOrEqual(4);
    // The child, natively 15-17 here (its stack, libc's state, _exit bound
    // lazily); with the shim 4-5 more: the shim's code a child runs before
    // fork returns (one place, core/afterfork.h), the page of what it writes
    // there, the fork canary, and ld.so reading the shim's symbols for
    // _exit. 8-10 more when that code was spread over the files it came
    // from and the child read the clock through the vDSO.
    expect(shimChild - nativeChild).toBeLessThanOrEqual(6);
  });
});
