// A program's start under the shim (issue 21): the checks it makes
// cheaper must still hold. The inflight file (the in-flight record and the
// journal behind it) is mapped and written by every program: a hole in it
// would be SIGBUS on a full filesystem, so a start that finds one fills it
// (posix_fallocate) before mapping. The check is an extent lookup now
// (FIEMAP), not SEEK_HOLE's walk of the whole file's page cache.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as S from '../tables/schema.js';
import { MODES, appshotAsync, makeHome, stopAll, waitFor } from './helpers.js';

afterEach(stopAll);

/** Bytes the filesystem holds for the file (a hole holds none; an
 * allocated but unwritten extent does, which SEEK_HOLE would call a hole). */
function allocated(file: string): number {
  return statSync(file).blocks * 512;
}

function fallocate(file: string, args: string[]): void {
  const r = spawnSync('fallocate', [...args, file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

describe.each(MODES)("a program's start, %s", (_mode, flags) => {
  it.each([
    ['its record page', (_size: number) => 0],
    ["the journal's last page", (size: number) => size - 4096],
  ])('fills a hole in the inflight file (%s) before mapping it', async (_where, at) => {
    const home = makeHome();
    const dir = mkdtempSync(join(tmpdir(), 'appshot-hole-'));
    expect(spawnSync('mkfifo', [join(dir, 'go')]).status).toBe(0);
    // The shell has the file mapped already; the program it starts after
    // the hole is punched is the start under test.
    const script = `echo ready; read go < ${dir}/go; /bin/true; echo started; exec sleep 100000`;
    const app = appshotAsync(home, ['run', ...flags, '--', 'sh', '-c', script]);
    await waitFor(app.out, /ready/);
    const file = join(home, S.INFLIGHT_FILE);
    const size = statSync(file).size;
    // Two allocated pages past the part the shim maps first, so that the
    // count of blocks alone does not tell the hole (the extents must).
    fallocate(file, ['--offset', String(size), '--length', '8192']);
    fallocate(file, ['--punch-hole', '--offset', String(at(size)), '--length', '4096']);
    expect(allocated(file)).toBe(size + 4096); // a hole, so the test can fail
    writeFileSync(join(dir, 'go'), 'go\n');
    await waitFor(app.out, /started/);
    expect(allocated(file)).toBe(size + 8192);
    expect(statSync(file).size).toBe(size + 8192);
    app.child.kill('SIGTERM');
    expect((await app.done).stderr).not.toMatch(/appshot:/);
  });
});
