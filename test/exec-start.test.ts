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

/** The byte ranges of the file no extent covers (its holes), by FIEMAP
 * as the shim asks: st_blocks counts extent-tree blocks too, and SEEK_HOLE
 * calls an allocated but unwritten extent a hole. */
const HOLES_PY = `
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY); size = os.fstat(fd).st_size
n = 64; buf = bytearray(struct.pack('=QQIIII', 0, size, 0, 0, n, 0) + bytes(56 * n))
fcntl.ioctl(fd, 0xC020660B, buf)
got = struct.unpack_from('=I', buf, 20)[0]; at = 0; holes = []
for i in range(got):
    logical, physical, length = struct.unpack_from('=QQQ', buf, 32 + 56 * i)
    if logical > at: holes.append([at, logical])
    at = max(at, logical + length)
if at < size: holes.append([at, size])
print(__import__('json').dumps(holes))
`;
function holes(file: string): number[][] {
  const r = spawnSync('python3', ['-c', HOLES_PY, file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
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
    // Two allocated pages past the part the shim maps, so that the count of
    // blocks alone does not tell the hole (the extents must).
    fallocate(file, ['--offset', String(size), '--length', '8192']);
    fallocate(file, ['--punch-hole', '--offset', String(at(size)), '--length', '4096']);
    expect(holes(file)).toEqual([[at(size), at(size) + 4096]]); // so the test can fail
    writeFileSync(join(dir, 'go'), 'go\n');
    await waitFor(app.out, /started/);
    expect(holes(file)).toEqual([]);
    expect(statSync(file).size).toBe(size + 8192);
    app.child.kill('SIGTERM');
    expect((await app.done).stderr).not.toMatch(/appshot:/);
  });
});
