/**
 * The *_INFO totals and highest index as the application's objects come and
 * go (issue 21). The shim answers them from a per-thread summary of the
 * application's rows, read again only after a commit, and from the
 * kernel's own totals when the kernel has no objects of the family but the
 * application's; else it reads each object. Each script is run alone in
 * the file's IPC namespace (the kernel's totals) and beside another
 * application's objects (each object read), in both modes, and the answers
 * must be the same counts; objects are made and removed by the asking
 * process and by other processes of the application between two questions
 * of the same process, and a restored application (whose rows restore
 * writes from TypeScript) must count and index what it holds.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODES, MSGTOOL, SEMTOOL, SHMTOOL, appshot, appshotAsync, lines, makeHome, waitFor } from './helpers.js';

const index = (id: number) => id & 0x7fff;

/** Runs program under appshot with script, beside another application's
 * objects if other is given, and gives its output lines. */
async function runScript(home: string, program: string, script: string[], flags: readonly string[], other: string[] | null): Promise<string[]> {
  const beside = other && appshotAsync(home, ['run', '--aid', 'other', '--', program, ...other, 'pid', 'sleep', '100000']);
  try {
    if (beside) await waitFor(beside.out, /pid/);
    const r = appshot(home, ['run', '--aid', 'me', ...flags, '--', program, ...script]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return lines(r.stdout);
  } finally {
    if (beside) {
      beside.child.kill('SIGTERM');
      await beside.done;
    }
  }
}

/** The highest index of the live IDs at each "maxidx" line: ids are
 * created by "id N" lines and removed by the script's "rmid" steps, which
 * print "gone N" below. Returns the output with each maxidx checked and
 * replaced by "maxidx ok", and ids made anonymous. */
function checkMaxIndex(out: string[]): string[] {
  const live = new Set<number>();
  return out.map((l) => {
    const id = /^id (\d+)$/.exec(l);
    if (id) {
      live.add(Number(id[1]));
      return 'id N';
    }
    const gone = /^gone (\d+)$/.exec(l);
    if (gone) {
      live.delete(Number(gone[1]));
      return 'gone N';
    }
    const max = /^maxidx (\d+)$/.exec(l);
    if (max) {
      const want = Math.max(0, ...[...live].map(index));
      return Number(max[1]) === want ? 'maxidx ok' : `maxidx ${max[1]}, want ${want} of ${[...live].join(' ')}`;
    }
    return l;
  });
}

/** A child of the application (system CMD) that removes the current
 * object, printing its ID first. */
const removeCurrent = (program: string, idVar: string) => `echo gone $${idVar}; ${program} use $${idVar} rmid`;

const FAMILIES = [
  {
    family: 'semaphore sets',
    program: SEMTOOL,
    other: ['private', '4', 'private', '1'],
    script: [
      'private', '2', 'seminfo',
      'system', `${SEMTOOL} private 3`, 'seminfo', 'info',
      'system', removeCurrent(SEMTOOL, 'SEMID'), 'seminfo',
      'private', '5', 'seminfo', 'system', removeCurrent(SEMTOOL, 'SEMID'), 'seminfo',
    ],
    want: [
      'id N', 'maxidx ok', 'semusz 1 semaem 2',
      'id N', 'status 0', 'maxidx ok', 'semusz 2 semaem 5', 'maxidx ok', expect.stringMatching(/^semusz \d+ semaem \d+$/),
      'gone N', 'ok 0', 'status 0', 'maxidx ok', 'semusz 1 semaem 3',
      'id N', 'maxidx ok', 'semusz 2 semaem 8', 'gone N', 'ok 0', 'status 0', 'maxidx ok', 'semusz 1 semaem 3',
    ],
  },
  {
    family: 'message queues',
    program: MSGTOOL,
    other: ['private', 'send', '1', 'theirs', '-'],
    script: [
      'private', 'send', '1', 'abc', '-', 'msginfo',
      'system', `${MSGTOOL} private send 1 de - send 2 f -`, 'msginfo', 'info',
      'system', removeCurrent(MSGTOOL, 'ID'), 'msginfo',
      // Messages come and go with no change to the tables.
      'private', 'send', '1', 'xyz', '-', 'msginfo', 'recv', '1', '64', 'n', 'msginfo',
    ],
    want: [
      'id N', 'ok 0', 'maxidx ok', 'queues 1 messages 1 bytes 3',
      'id N', 'ok 0', 'ok 0', 'status 0', 'maxidx ok', 'queues 2 messages 3 bytes 6', 'maxidx ok', expect.stringMatching(/^msgmni \d+ msgmax \d+$/),
      'gone N', 'ok 0', 'status 0', 'maxidx ok', 'queues 1 messages 2 bytes 3',
      'id N', 'ok 0', 'maxidx ok', 'queues 2 messages 3 bytes 6', 'msg 1 xyz', 'maxidx ok', 'queues 2 messages 2 bytes 3',
    ],
  },
  {
    family: 'shared memory segments',
    program: SHMTOOL,
    other: ['private', '40960'],
    script: [
      'private', '4096', 'shminfo',
      'system', `${SHMTOOL} private 8192`, 'shminfo', 'info',
      'system', removeCurrent(SHMTOOL, 'ID'), 'shminfo',
      // Removed while attached, the segment lives on (and counts) until its
      // last detach; it is gone for the maxidx check only then.
      'private', '10000', 'attach', '-', 'system', `${SHMTOOL} use $ID rmid`, 'shminfo',
      'detach', 'system', 'echo gone $ID', 'shminfo',
    ],
    want: [
      'id N', 'maxidx ok', 'used_ids 1 shm_tot 1 shm_rss 0',
      'id N', 'status 0', 'maxidx ok', 'used_ids 2 shm_tot 3 shm_rss 0', 'maxidx ok', expect.stringMatching(/^shmmni \d+$/),
      'gone N', 'ok 0', 'status 0', 'maxidx ok', 'used_ids 1 shm_tot 2 shm_rss 0',
      'id N', 'attached ok', 'ok 0', 'status 0', 'maxidx ok', 'used_ids 2 shm_tot 5 shm_rss 0',
      'ok 0', 'gone N', 'status 0', 'maxidx ok', 'used_ids 1 shm_tot 2 shm_rss 0',
    ],
  },
];

describe('*_INFO counts and indexes exactly the application\'s objects as they come and go', () => {
  for (const [mode, flags] of MODES) {
    for (const { family, program, other, script, want } of FAMILIES) {
      it(`${family}, ${mode}: alone in the namespace and beside another application's objects, the same answers`, async () => {
        const home = makeHome();
        for (const beside of [null, other]) {
          const out = checkMaxIndex(await runScript(home, program, script, flags, beside));
          expect(out, beside ? 'beside another application' : 'alone').toEqual(want);
        }
      });
    }
  }

  it('a restored application counts and indexes the sets restore recorded for it, alone and beside another application', async () => {
    const home = makeHome();
    const h = appshotAsync(home, ['run', '--aid', 'keeper', '--no-identity', '--', SEMTOOL, 'private', '2', 'private', '3', 'private', '4', 'rmid', 'pid', 'sleep', '100000']);
    await waitFor(h.out, /pid/);
    const file = join(home, 'keeper.snap');
    const s = appshot(home, ['snapshot', 'keeper', '-o', file, '--stop']);
    expect(s.code, s.stderr).toBe(0);
    await h.done;
    // The two sets left keep their virtual IDs, the remapped indices 0 and 1.
    const kept = lines(h.out()).filter((l) => l.startsWith('id ')).slice(0, 2).map((l) => Number(l.split(' ')[1]));
    expect(kept.map(index)).toEqual([0, 1]);
    for (const [i, beside] of [false, true].entries()) {
      const other = beside ? appshotAsync(home, ['run', '--aid', 'other', '--', SEMTOOL, 'private', '7', 'pid', 'sleep', '100000']) : null;
      try {
        if (other) await waitFor(other.out, /pid/);
        const r = appshot(home, ['restore', file, '--aid', `copy-${i}`, '--', SEMTOOL, 'seminfo', 'statall', 'private', '1', 'seminfo']);
        expect(r.code, r.stderr).toBe(0);
        const out = lines(r.stdout);
        expect(out.slice(0, 2)).toEqual(['maxidx 1', 'semusz 2 semaem 5']);
        expect(out.slice(2, 4).sort()).toEqual(kept.map((id) => `set ${id} key 0x00000000`).sort());
        expect(out[4]).toBe('end');
        const made = Number(/^id (\d+)$/.exec(out[5])![1]);
        expect(out.slice(6)).toEqual([`maxidx ${Math.max(1, index(made))}`, 'semusz 3 semaem 6']);
      } finally {
        if (other) {
          other.child.kill('SIGTERM');
          await other.done;
        }
      }
    }
  });
});
