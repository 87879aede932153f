import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_PATH, builtProgram } from '../ts/paths.js';
import * as S from '../tables/schema.js';
import { appshot, makeHome } from './helpers.js';

// The first page of `appshot tables` (no filter, no sort) reads only the
// first rows of the translations, in C (native/addon/firstpage.cc), so only
// the pages holding them are checked before they are read (TABLECHECK_FIRST,
// native/core/tablecheck.h): its cost no longer grows with the table. These cases hold it to what the
// check is for: damage on a page it reads is refused, never followed.

const PAGE = 4096;
const DAMAGED = /appshot: the tables at .*tables\.mdb are damaged: page \d+ .*; .*Move the file aside/;
const TRACE = /\n\s+at |RangeError|TypeError|internal error/;

/** 4,000 rows over 20 kept applications: a fwd tree of many leaves. */
function filledHome(): { home: string; file: string; good: Buffer } {
  const home = makeHome();
  expect(appshot(home, ['run', '--', 'true']).code).toBe(0);
  expect(spawnSync(builtProgram('tablefill'), [home, '20', '200']).status).toBe(0);
  const file = join(home, S.TABLES_FILE);
  return { home, file, good: readFileSync(file) };
}

/** The fwd tree's leaves in key order, each with its row count, found from
 * the newest header page as LMDB finds them (the layout is tablecheck.c's). */
function fwdLeaves(b: Buffer): { pgno: number; rows: number }[] {
  const metaAt = b.readBigUInt64LE(152) > b.readBigUInt64LE(PAGE + 152) ? 0 : PAGE;
  const nodes = (pgno: number) => {
    const p = pgno * PAGE;
    const count = b.readUInt16LE(p + 20) >> 1;
    return Array.from({ length: count }, (_, i) => p + 24 + b.readUInt16LE(p + 24 + 2 * i));
  };
  const child = (node: number) => b.readUInt16LE(node) + b.readUInt16LE(node + 2) * 2 ** 16 + b.readUInt16LE(node + 4) * 2 ** 32;
  const mainRoot = Number(b.readBigUInt64LE(metaAt + 136));
  const rec = nodes(mainRoot)
    .map((n) => ({ n, name: b.toString('latin1', n + 8, n + 8 + b.readUInt16LE(n + 6)).replace(/\0$/, '') }))
    .find((x) => x.name === S.DB.fwd)!;
  const at = rec.n + 8 + b.readUInt16LE(rec.n + 6);
  const depth = b.readUInt16LE(at + 6);
  const walk = (pgno: number, level: number): { pgno: number; rows: number }[] =>
    level === depth ? [{ pgno, rows: nodes(pgno).length }] : nodes(pgno).flatMap((n) => walk(child(n), level + 1));
  return walk(Number(b.readBigUInt64LE(at + 40)), 1);
}

/** The first leaf whose rows all lie past the first n. */
function leafPast(leaves: { pgno: number; rows: number }[], n: number): number {
  let before = 0;
  for (const l of leaves) {
    if (before >= n) return l.pgno;
    before += l.rows;
  }
  throw new Error(`the tree holds only ${before} rows`);
}

/** A copy of the tables with one page's free-space bounds impossible. */
function withDamage(good: Buffer, pgno: number): Buffer {
  const bad = Buffer.from(good);
  bad.writeUInt16LE(0xfff0, pgno * PAGE + 20); // its lower bound past its upper
  return bad;
}

function run(home: string, args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const env = { ...process.env, APPSHOT_HOME: home };
  delete env.APPSHOT_AID;
  delete env.LD_PRELOAD;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe('the first page of appshot tables', () => {
  it('is refused when a page it reads is damaged, shown as before when only pages past it are, which --json, a filter and the last page still refuse', async () => {
    const { home, file, good } = filledHome();
    const shown = appshot(home, ['tables']);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^rows 1-50 of 4\d\d\d; the next page: --page 2$/m);
    // Read in C (the unsorted page) and through lmdb (a sort by AID keeps key order): the same page.
    expect(appshot(home, ['tables', '--sort', 'aid']).stdout).toBe(shown.stdout);
    const third = appshot(home, ['tables', '--page', '3', '--limit', '7']).stdout;
    expect(third).toMatch(/^rows 15-21 of 4\d\d\d; the next page: --page 4$/m);
    expect(appshot(home, ['tables', '--sort', 'aid', '--page', '3', '--limit', '7']).stdout).toBe(third);
    const leaves = fwdLeaves(good);
    expect(leaves.length).toBeGreaterThan(3);
    const last = leaves[leaves.length - 1].pgno;
    const refused = async (args: string[], pgno: number) => {
      const r = await run(home, args);
      expect(r.code, `appshot ${args.join(' ')}: ${r.stderr}`).toBe(4);
      expect(r.stderr).toMatch(DAMAGED);
      expect(r.stderr).toMatch(new RegExp(`damaged: page ${pgno} \\(database 'fwd'\\)`));
    };
    const damage = (pgno: number) => writeFileSync(file, withDamage(good, pgno), { mode: 0o600 });

    // The next leaf after the page's 50 rows and the one that says more follow.
    damage(leafPast(leaves, 51));
    const past = await run(home, ['tables']);
    expect(past.code, past.stderr).toBe(0);
    expect(past.stdout).toBe(shown.stdout);
    expect(past.stderr).toBe('');
    damage(last);
    expect((await run(home, ['tables', '--limit', '200'])).code).toBe(0);
    for (const args of [['tables', '--json'], ['tables', '--page', '80'], ['tables', '--aid', 'fill-00019']]) await refused(args, last);

    damage(leaves[0].pgno);
    await refused(['tables'], leaves[0].pgno);
    await refused(['tables', '--csv', '--limit', '5'], leaves[0].pgno);
    // A page as long as the first leaf reads into the second (the row that says more follow).
    damage(leaves[1].pgno);
    expect((await run(home, ['tables', '--csv', '--limit', '5'])).code).toBe(0);
    await refused(['tables', '--limit', String(leaves[0].rows)], leaves[1].pgno);
  });

  it('bytes flipped anywhere: the first page is shown or refused with exit 4, never a signal or a stack trace', async () => {
    const { good } = filledHome();
    const pages = good.length / PAGE;
    let seed = 21;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const cases = Array.from({ length: 32 }, () => {
      const page = 2 + Math.floor(rnd() * (pages - 2));
      const bad = Buffer.from(good);
      for (let j = 1 + Math.floor(rnd() * 8); j > 0; j--) bad[page * PAGE + Math.floor(rnd() * PAGE)] ^= 1 + Math.floor(rnd() * 255);
      const home = makeHome();
      writeFileSync(join(home, S.TABLES_FILE), bad, { mode: 0o600 });
      return { page, home };
    });
    for (let i = 0; i < cases.length; i += 4) {
      const results = await Promise.all(cases.slice(i, i + 4).map((c) => run(c.home, ['tables'])));
      results.forEach((r, k) => {
        const what = `page ${cases[i + k].page}: ${r.stderr}`;
        expect(r.signal, what).toBeNull();
        expect(r.stderr, what).not.toMatch(TRACE);
        if (r.code === 4) expect(r.stderr, what).toMatch(DAMAGED);
        else {
          expect(r.code, what).toBe(0);
          expect(r.stdout, what).toMatch(/^AID +type +virtual +system +key +creator +created$/m);
        }
      });
    }
  }, 120_000);
});
