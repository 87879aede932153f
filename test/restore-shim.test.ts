/**
 * The shim's side of a whole-process restore (issue 18), without the
 * restorer: restoresim (native/testprogs/restoresim.c) makes a new kernel
 * process with its own memory by a raw clone the shim does not see, fills
 * the shim's canary page as the restorer does, calls shim_restored_entry
 * through the address on the page, and checks that the process is now one
 * of another application (B), under its old vpid, its raw and libc calls
 * translated through B's tables. B runs in the same home (a restore on the
 * same host) or in another (a restore elsewhere: other files at the home's
 * descriptors, transaction ids that may meet the old caches').
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, lines, makeHome, tablesJson, waitFor } from './helpers.js';

const RESTORESIM = builtProgram('restoresim');

/** "name value" lines as a map. */
function results(out: string): Map<string, string> {
  return new Map(lines(out).map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]));
}

describe.each(MODES)('a restored process renews its shim, %s', (mode, flags) => {
  it.each([
    ['into the same home', false, false, false],
    ['into another home, opened by path', true, false, false],
    // As the restorer does: every descriptor of a home file given back by
    // name, the new home's, at the old numbers.
    ['into another home, its files given at the old descriptors', true, true, false],
    // Without CAP_SYS_ADMIN the filter goes back under no_new_privs; a
    // process that changed its user keeps the home's descriptors, not the
    // right to open another home.
    ['unprivileged (setpriv to nobody), into the same home', false, false, true],
  ])('%s: new AID and tables, same vpid, the trap again, caches and kernel PID renewed', async (_where, otherHome, give, nobody) => {
    const homeA = makeHome();
    const homeB = otherHome ? makeHome() : homeA;
    // Where nobody can see it too.
    const goDir = mkdtempSync(join(tmpdir(), 'appshot-restore-shim-'));
    chmodSync(goDir, 0o755);
    const go = join(goDir, 'go');
    try {
      await simulate(homeA, homeB, go, nobody ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'] : [], give);
    } finally {
      rmSync(goDir, { recursive: true, force: true });
    }
  });

  async function simulate(homeA: string, homeB: string, go: string, as: string[], give: boolean) {
    const b = appshotAsync(homeB, ['run', ...flags, '--aid', 'bee', '--', 'sh', '-c', `echo ready; while [ ! -e ${go} ]; do sleep 0.05; done`]);
    await waitFor(b.out, /ready/);
    // Under sh, so that in remapped mode the vpid it keeps is not the one
    // B's own first process has (both applications' first is the same).
    const a = appshotAsync(homeA, ['run', ...flags, '--aid', 'ay', '--', 'sh', '-c', `${[...as, RESTORESIM].join(' ')} bee ${homeB} ${go}${give ? ' give-fds' : ''}; true`]);
    const vpid = Number((await waitFor(a.out, /clone-vpid (\d+)/))[1]);
    if (mode === 'remapped') expect(vpid).toBeGreaterThanOrEqual(0x10000000);

    // While it runs: one of B's processes, under its vpid; its semaphore B's.
    const ps = JSON.parse(appshot(homeB, ['ps', '--aid', 'bee', '--json']).stdout) as { vpid: number; command: string }[];
    expect(ps.find((p) => p.vpid === vpid)?.command).toContain('restoresim');
    const semB = tablesJson(homeB, ['--aid', 'bee', '--type', 'semkey']);
    expect(semB.map((r) => r.virtual)).toEqual([0x5e52]);
    expect(tablesJson(homeA, ['--aid', 'ay', '--type', 'semkey']).map((r) => r.virtual)).toEqual([0x5e51]);

    writeFileSync(go, '');
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.stderr).toBe('');
    expect(ra.code).toBe(0);
    expect(rb.code).toBe(0);
    const got = results(ra.stdout);
    const want: Record<string, string> = {
      'canary-found': '1',
      'in-tables': '0',
      'entry-is-exported': '1',
      // The filter installed again (a clone keeps its parent's: one more).
      'filters-added': '1',
      // Four threads whose first calls into the shim race the renewal.
      'racers-ok': '4',
      // Nothing of the old home held; of the new, the application's four
      // descriptors and the tables' own (LMDB's data file twice, its lock
      // file, and an open lock of this process's own, unless it changed its
      // user: then it shares the application's): none left over from the
      // old tables, whatever the restorer put at their numbers.
      'fds-in-old-home': '0',
      // A raw fork right after the entry, before any renewal: the child
      // renews alone, into B.
      'rawfork-semget-a': 'ENOENT',
      'rawfork-semget-b': '1',
      'rawfork-fds-in-old-home': '0',
      'rawfork-aid': 'bee',
      'rawfork-status': '0',
      'fds-in-new-home': as.length ? '7' : '8',
      'vpid-kept': '1',
      'raw-getpid-kept': '1',
      'proc-vpid-is-self': '1',
      'kill-self': '0',
      'raw-kill-self': '0',
      'sigusr1-from-self': '1',
      'semget-a': 'err ENOENT',
      'raw-semget-a': 'err ENOENT',
      'semop-b': '0',
      'raw-semop-b': '0',
      'getval-b': '2',
      'getpid-b-is-self': '1',
      'system-aid': 'bee',
      'spawn-aid': 'bee',
      'fork-child-semget-b': '1',
      'fork-child-semget-a': 'ENOENT',
      'fork-child-status': '0',
      'clone-status': '0',
      'parent-vpid-kept': '1',
      'parent-semget-a': '1',
      'parent-semget-b': 'ENOENT',
      'parent-aid': 'ay',
    };
    for (const [k, v] of Object.entries(want)) expect(`${k} ${got.get(k)}`).toBe(`${k} ${v}`);
  }
});
