import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMAND_PATH, ROOT } from '../ts/paths.js';
import { kernelSems, makeHome } from './helpers.js';

// Every ```sh block of the README runs as written (issue 17): each in a
// fresh home and an empty directory, with `appshot` on PATH as `npm link`
// puts it there. A block preceded by `<!-- readme-test: not run: WHY -->`
// is skipped; that set is held to the one below.

interface Example {
  /** The heading of the section the block is in. */
  section: string;
  script: string;
  notRun: string | null;
}

function examples(): Example[] {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const out: Example[] = [];
  let section = '';
  let notRun: string | null = null;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const heading = /^#+ (.*)$/.exec(line);
    if (heading) section = heading[1];
    const marker = /^<!-- readme-test: not run: (.*) -->$/.exec(line);
    if (marker) notRun = marker[1];
    else if (line === '```sh') {
      const body: string[] = [];
      for (i++; lines[i] !== '```'; i++) body.push(lines[i]);
      out.push({ section, script: body.join('\n') + '\n', notRun });
      notRun = null;
    } else if (line.trim()) notRun = null; // a marker names the block right after it
  }
  return out;
}

/** Runs one example with sh -e, in dir, under home, `appshot` on PATH. */
function runExample(script: string, home: string, dir: string): { code: number | null; stdout: string; stderr: string } {
  const bin = join(home, '..', 'bin');
  mkdirSync(bin, { recursive: true });
  symlinkSync(COMMAND_PATH, join(bin, 'appshot')); // as npm link installs it
  const env = { ...process.env, APPSHOT_HOME: home, PATH: `${bin}:${process.env.PATH}` };
  delete env.APPSHOT_AID;
  delete env.LD_PRELOAD;
  const r = spawnSync('sh', ['-e', '-c', script], { cwd: dir, env, encoding: 'utf8', timeout: 170_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** What each runnable example must print, by the section it is in. */
const EXPECT: Record<string, (r: { stdout: string; stderr: string }, dir: string) => void> = {
  'In 30 seconds': (r) => {
    const first = /^first: key 0x1234 is semaphore set (\d+)$/m.exec(r.stdout);
    const second = /^second: key 0x1234 is semaphore set (\d+)$/m.exec(r.stdout);
    expect(first, r.stdout).not.toBeNull();
    expect(second, r.stdout).not.toBeNull();
    // The listing while both ran: virtual key 0x1234 in each, one of them remapped.
    const keys = r.stdout.split('\n').filter((l) => /\bsemkey\b/.test(l));
    expect(keys.filter((l) => /\b(first|second)\b.*0x00001234/.test(l)).length, r.stdout).toBe(2);
    expect(keys.filter((l) => /0x617[0-9a-f]{5}\b/.test(l)).length, r.stdout).toBeGreaterThanOrEqual(1);
    // Both ended: no set with key 0x1234, nor a remapped one of theirs, is left.
    expect(kernelSems().filter((s) => s.key === 0x1234)).toEqual([]);
  },
  Paths: (r, dir) => {
    expect(r.stdout).toBe('I am web-1\nI am web-2\n');
    expect(readFileSync(join(dir, 'data', 'web-1', 'name'), 'utf8')).toBe('I am web-1\n');
    expect(spawnSync('test', ['-e', '/srv/app/data']).status).not.toBe(0);
  },
  'Templates: many warm instances from one snapshot': (r) => {
    expect(r.stdout).toMatch(/^snapshot of 'warm' written to warm\.snap: .*1 process\(es\) ended/m);
    expect(r.stdout).toMatch(/^template 'web' made from warm\.snap: 3 resources .*1 multiplex/m);
    expect(r.stdout).toMatch(/port 8080\/tcp\s*│?\s*multiplex/);
    // The pool handed one connection to each clone: each served its own folder.
    const served = r.stdout.split('\n').filter((l) => l.startsWith('this is web-'));
    expect(served.sort()).toEqual(['this is web-1', 'this is web-2', 'this is web-3']);
  },
  'Statically linked and Go programs': (r) => {
    // Each copy was reached inside its own application at virtual port 8080;
    // the remapped one's getpid, a static program's, answered with its vpid.
    const one = /^one: pid (\d+)$/m.exec(r.stdout);
    const two = /^two: pid (\d+)$/m.exec(r.stdout);
    expect(one, r.stdout).not.toBeNull();
    expect(two, r.stdout).not.toBeNull();
    expect(Number(two![1])).toBeGreaterThanOrEqual(0x10000000);
  },
};

describe('the README examples', () => {
  const all = examples();

  it('are the ones this test knows: each runnable one has its check, and only the build block is not run', () => {
    expect(all.filter((e) => e.notRun).map((e) => e.section)).toEqual(['appshot']);
    expect(all.filter((e) => !e.notRun).map((e) => e.section).sort()).toEqual(Object.keys(EXPECT).sort());
  });

  for (const e of all.filter((x) => !x.notRun))
    it(`runs as written: ${e.section}`, { timeout: 180_000 }, () => {
      const home = join(makeHome(), 'home');
      const dir = join(home, '..', 'work');
      mkdirSync(dir);
      const r = runExample(e.script, home, dir);
      expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      EXPECT[e.section]?.(r, dir);
    });
});
