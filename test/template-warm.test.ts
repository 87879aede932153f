import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, createServer, connect } from 'node:net';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { builtProgram } from '../ts/paths.js';
import { MODES, appshot, appshotAsync, freePort, makeHome, stopAll, tablesJson, testRoot, waitFor } from './helpers.js';

/**
 * Warm clones (issue 19): a template of a whole snapshot, whose clones
 * continue the snapshot's processes (memory, threads, descriptors), their
 * memory mapped copy-on-write from the template's own copy of the image.
 * A real python3 that imported modules and built a large dict.
 */

const FIXTURE = join(__dirname, 'fixtures', 'warm-dict.py');
const CKPTSYSV = builtProgram('ckptsysv');
const ENTRIES = 200_000;

afterEach(stopAll);

interface Answer {
  pid: number;
  entries: number;
  value: string;
  answered: number;
}

/** One entry of the dict from the python at port, and its count of answers. */
function ask(port: number, key: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = connect(port, '127.0.0.1', () => s.write(`${key}\n`));
    s.setTimeout(10_000, () => s.destroy(new Error(`no answer from port ${port}`)));
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(JSON.parse(got) as Answer));
    s.on('error', reject);
  });
}

/** A figure of /proc/PID/smaps_rollup, in kB. */
function rollup(spid: number, field: 'Rss' | 'Pss'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${spid}/smaps_rollup`, 'utf8'));
  if (!m) throw new Error(`no ${field} for ${spid}`);
  return Number(m[1]);
}

interface Proc {
  aid: string;
  vpid: number;
  spid: number;
}
const ps = (home: string): Proc[] => JSON.parse(appshot(home, ['ps', '--json']).stdout);

/** The system port each clone's virtual port is leased at. */
function systemPorts(home: string, port: number): Map<string, number> {
  const rows = tablesJson(home, ['--type', 'port']).filter((r) => r.virtual === port);
  return new Map(rows.map((r) => [r.aid, r.system]));
}

/** python3 under appshot with the dict built, asked twice, snapshotted
 * whole with --stop into file; its RSS then. */
async function warmedUp(home: string, flags: readonly string[], port: number, file: string, extra: string[] = []) {
  const src = appshotAsync(home, ['run', ...flags, '--aid', 'src', '--', 'python3', '-u', FIXTURE, String(port), String(ENTRIES), ...extra]);
  await waitFor(src.out, new RegExp(`ready \\d+ ${ENTRIES}`), 30_000);
  // Remapped, the virtual port lies behind a system port of the range.
  const at = systemPorts(home, port).get('src')!;
  await ask(at, 1);
  expect((await ask(at, 2)).answered).toBe(2);
  const [proc] = ps(home).filter((p) => p.aid === 'src');
  const rss = rollup(proc.spid, 'Rss');
  const snap = appshot(home, ['snapshot', 'src', '-o', file, '--stop', '--json']);
  expect(snap.code, snap.stderr).toBe(0);
  expect(JSON.parse(snap.stdout).whole).toBe(true);
  await src.done;
  return { vpid: proc.vpid, rss };
}

describe.each(MODES)('warm clones of a python3 that built a large dict (%s)', (_mode, flags) => {
  it('3 clones made side by side each continue the dict and the answer count; their memory stays shared; rm --force while they run', async () => {
    const home = makeHome();
    const port = await freePort();
    const file = join(home, 'dict.snap');
    const src = await warmedUp(home, flags, port, file);

    const made = appshot(home, ['template', 'create', 'dict', '--from', file]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toMatch(/clones of template 'dict' continue the 1 process\(es\) of .*dict\.snap where they were \(warm\)/);
    const image = join(home, 'templates', 'dict.image');
    expect(existsSync(image)).toBe(true);
    const inspect = appshot(home, ['template', 'inspect', 'dict']);
    expect(inspect.stdout).toMatch(/^clones: warm: each clone continues the 1 process\(es\) of the image, memory mapped copy-on-write from .*dict\.image/m);
    expect(JSON.parse(appshot(home, ['template', 'list', '--json']).stdout)[0]).toMatchObject({ name: 'dict', mode: 'warm' });

    const h = appshotAsync(home, ['template', 'clone', 'dict', '-n', '3', '--json']);
    await waitFor(h.err, /all 3 clones of template 'dict' are running/);
    await waitFor(h.out, /^\{.*\}$/m); // its own pipe: it may come after stderr's line
    const summary = JSON.parse(h.out().split('\n')[0]);
    expect(summary.clones.map((c: { aid: string; warm: boolean }) => [c.aid, c.warm])).toEqual([['dict-1', true], ['dict-2', true], ['dict-3', true]]);
    expect(h.err()).toMatch(/clone 'dict-1' of template 'dict' ready in [\d.]+ ms, warm \(its processes continued from the template's image/);

    // Each clone: its own AID, the saved vpid, a process of its own.
    const procs = ps(home).filter((p) => p.aid.startsWith('dict-'));
    expect(procs.map((p) => p.aid).sort()).toEqual(['dict-1', 'dict-2', 'dict-3']);
    expect(new Set(procs.map((p) => p.vpid))).toEqual(new Set([src.vpid]));
    expect(new Set(procs.map((p) => p.spid)).size).toBe(3);

    // All asked at once: each answers from the dict it did not build, as the
    // third answer of the source's count (the state went on, in each alone).
    const ports = systemPorts(home, port);
    expect(ports.size).toBe(3);
    const answers = await Promise.all([...ports.values()].map((p, i) => ask(p, 1000 + i)));
    answers.forEach((a, i) => expect(a).toEqual({ pid: src.vpid, entries: ENTRIES, value: `${1000 + i}:${'x'.repeat(80)}`, answered: 3 }));

    // Memory: the clones' proportional share, summed, against one instance's RSS each.
    const pss = procs.reduce((n, p) => n + rollup(p.spid, 'Pss'), 0);
    expect(src.rss).toBeGreaterThan(30_000); // the dict and the modules: tens of MB
    expect(pss).toBeLessThan((procs.length * src.rss) / 3);

    // The template removed while its clones run: they keep their mapping of the image.
    const rm = appshot(home, ['template', 'rm', 'dict', '--force']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(existsSync(image)).toBe(false);
    const again = await Promise.all([...ports.values()].map((p) => ask(p, 7)));
    for (const a of again) expect(a).toMatchObject({ value: `7:${'x'.repeat(80)}`, answered: 4 });

    h.child.kill('SIGTERM');
    await h.done;
    expect(ps(home)).toEqual([]);
  });
});

describe('templates that cannot be cloned warm', () => {
  let outside: Server | undefined;
  afterEach(() => outside?.close());

  it('an established connection to outside: create says which and why, clone refuses (exit 3), --cold starts the command', async () => {
    const home = makeHome();
    const [port, peer] = [await freePort(), await freePort()];
    const held: import('node:net').Socket[] = [];
    outside = createServer((s) => held.push(s)).listen(peer, '127.0.0.1');
    const file = join(home, 'conn.snap');
    await warmedUp(home, [], port, file, [`connect=${peer}`]);
    const made = appshot(home, ['template', 'create', 'conn', '--from', file]);
    expect(made.code, made.stderr).toBe(0);
    const blocker = new RegExp(`descriptor \\d+ of process \\d+ \\(python3[^)]*\\): an established TCP connection with 127\\.0\\.0\\.1:${peer}, outside the application: one connection cannot be continued by several clones`);
    expect(made.stderr).toMatch(new RegExp(`template 'conn' cannot be cloned warm: ${blocker.source}; its clones need --cold`));
    expect(appshot(home, ['template', 'inspect', 'conn']).stdout).toMatch(new RegExp(`^clones: cold only \\(--cold\\): cannot be cloned warm: ${blocker.source}`, 'm'));

    const refused = appshot(home, ['template', 'clone', 'conn']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(new RegExp(`made 0 of 1 clones of template 'conn'; the remaining 1 was not made: template 'conn' cannot be cloned warm: ${blocker.source}; clone it with --cold`));
    expect(ps(home)).toEqual([]);

    // Cold: the command starts again (its count from 1), and connects anew.
    const cold = appshotAsync(home, ['template', 'clone', 'conn', '--cold']);
    await waitFor(cold.err, /clone 'conn-1' of template 'conn' is running/);
    await waitFor(cold.out, new RegExp(`ready \\d+ ${ENTRIES}`), 30_000);
    const sys = systemPorts(home, port).get('conn-1')!;
    expect((await ask(sys, 3)).answered).toBe(1);
    cold.child.kill('SIGTERM');
    await cold.done;
    for (const s of held) s.destroy();
  });

  it('a mapped file changed since: clone names the file (exit 3), nothing is left; --cold works', async () => {
    const home = makeHome();
    const port = await freePort();
    // Outside the home: a file there is taken for the home's own (the clone's home's).
    const data = join(mkdtempSync(join(testRoot(), 'data-')), 'mapped.bin');
    writeFileSync(data, Buffer.alloc(65536, 7));
    const file = join(home, 'map.snap');
    await warmedUp(home, ['--no-identity'], port, file, [`map=${data}`]);
    expect(appshot(home, ['template', 'create', 'map', '--from', file]).code).toBe(0);
    expect(appshot(home, ['template', 'inspect', 'map']).stdout).toMatch(/^clones: warm/m);
    appendFileSync(data, 'more');
    const refused = appshot(home, ['template', 'clone', 'map', '-n', '2']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(
      new RegExp(`made 0 of 2 clones of template 'map'; the remaining 2 were not made: template 'map' cannot be cloned warm: the file ${data}, which process \\d+ \\(python3[^)]*\\) maps: it changed since the snapshot \\(size, modification time or inode differ\\); its pages the image does not hold would come from the new file; clone it with --cold`),
    );
    expect(ps(home)).toEqual([]);
    expect(tablesJson(home).filter((r) => r.aid.startsWith('map-'))).toEqual([]);
    const cold = appshotAsync(home, ['template', 'clone', 'map', '--cold']);
    await waitFor(cold.out, new RegExp(`ready \\d+ ${ENTRIES}`), 30_000);
    cold.child.kill('SIGTERM');
    await cold.done;
    rmSync(dirname(data), { recursive: true, force: true });
  });
});

describe("a warm clone's paths", () => {
  it('a file the process had open under a REDIR rule is reopened at the clone\'s own copy; a file at its stdout becomes the clone command\'s output', async () => {
    const home = makeHome();
    const port = await freePort();
    const root = mkdtempSync(join(testRoot(), 'warm-paths-'));
    const data = join(root, 'data');
    mkdirSync(data);
    const log = join(data, 'answers.log');
    const out = join(root, 'out.log');
    const file = join(home, 'paths.snap');
    await warmedUp(home, ['--no-identity'], port, file, [`log=${log}`, `stdout=${out}`]);
    const twice = 'answered 1\nanswered 2\n';
    expect(readFileSync(log, 'utf8')).toBe(twice);
    const rules = join(root, 'paths.rules');
    writeFileSync(rules, `DEFINE <APPL-ID> AS PROPERTY application-id\nREDIR PATH "${data}" TO "${root}/clones/<APPL-ID>"\n`);
    const made = appshot(home, ['template', 'create', 'paths', '--from', file, '--rules', rules]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toMatch(/clones of template 'paths' continue the 1 process\(es\)/);

    const h = appshotAsync(home, ['template', 'clone', 'paths', '-n', '2']);
    await waitFor(h.err, /all 2 clones of template 'paths' are running/);
    const ports = systemPorts(home, port);
    for (const p of ports.values()) expect((await ask(p, 5)).answered).toBe(3);
    // Their output: the clone command's (not the template's log at its offset).
    await waitFor(() => String(h.out().match(/^answered 3$/gm)?.length ?? 0), /^2$/);
    for (const aid of ['paths-1', 'paths-2']) expect(readFileSync(join(root, 'clones', aid, 'answers.log'), 'utf8')).toBe(`${twice}answered 3\n`);
    expect(readFileSync(log, 'utf8')).toBe(twice);
    expect(readFileSync(out, 'utf8')).toBe(twice);
    h.child.kill('SIGTERM');
    await h.done;
    rmSync(root, { recursive: true, force: true });
  });
});

describe.each(MODES)("a warm clone's own kernel objects (%s)", (_mode, flags) => {
  it('a SysV segment attached at the snapshot: each clone continues its own copy, attached at the same address', async () => {
    const home = makeHome();
    const src = appshotAsync(home, ['run', ...flags, '--aid', 'seg', '--', CKPTSYSV, '30']);
    await waitFor(src.out, /^tick .* 5$/m);
    const file = join(home, 'seg.snap');
    expect(appshot(home, ['snapshot', 'seg', '-o', file, '--stop']).code).toBe(0);
    await src.done;
    const ticks = (out: string) => [...out.matchAll(/^tick \d+ (-?\d+) (0x[0-9a-f]+) (\d+)$/gm)].map((m) => ({ shmid: m[1], at: m[2], count: Number(m[3]) }));
    const saved = ticks(src.out()).pop()!;
    expect(appshot(home, ['template', 'create', 'seg', '--from', file]).code).toBe(0);
    expect(appshot(home, ['template', 'inspect', 'seg']).stdout).toMatch(/shm \d+ +│? *duplicate/);
    const h = appshotAsync(home, ['template', 'clone', 'seg', '-n', '2']);
    await waitFor(() => String(ticks(h.out()).length), /^([2-9]\d|\d{3,})$/);
    const seen = ticks(h.out());
    // The saved virtual ID and address, in both; each count from the saved one on, twice: two segments.
    expect(new Set(seen.map((t) => `${t.shmid} ${t.at}`))).toEqual(new Set([`${saved.shmid} ${saved.at}`]));
    const counts = seen.map((t) => t.count);
    expect(Math.min(...counts)).toBe(saved.count + 1);
    for (let c = saved.count + 1; c <= saved.count + 5; c++) expect(counts.filter((x) => x === c).length).toBe(2);
    const rows = tablesJson(home, ['--type', 'shm']).filter((r) => r.aid.startsWith('seg-'));
    expect(rows.map((r) => r.aid).sort()).toEqual(['seg-1', 'seg-2']);
    expect(new Set(rows.map((r) => r.system)).size).toBe(2);
    h.child.kill('SIGTERM');
    await h.done;
  });
});
