/**
 * Where a bench run's results go: bench/results/<date>.json, .md and .svg;
 * a later run of the same day <date>-2, <date>-3, ..., so no run overwrites
 * another. latestResults finds the newest (by date, then run of the day),
 * which `node dist/bench/report.js` prints and draws again.
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../ts/paths.js';

export const RESULTS_DIR = join(ROOT, 'bench', 'results');

const NAME = /^(\d{4}-\d{2}-\d{2})(?:-(\d+))?\.json$/;

/** The run of the day a results file is: 1 for <date>.json, n for <date>-n.json. */
function runOf(file: string): { date: string; run: number } | null {
  const m = NAME.exec(file);
  return m ? { date: m[1], run: m[2] ? Number(m[2]) : 1 } : null;
}

/** The results files in dir, oldest first. */
export function resultFiles(dir = RESULTS_DIR): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => ({ f, r: runOf(f) }))
    .filter((x): x is { f: string; r: { date: string; run: number } } => x.r !== null)
    .sort((a, b) => (a.r.date === b.r.date ? a.r.run - b.r.run : a.r.date < b.r.date ? -1 : 1))
    .map((x) => join(dir, x.f));
}

/** The newest results file in dir, or undefined when there is none. */
export function latestResults(dir = RESULTS_DIR): string | undefined {
  return resultFiles(dir).at(-1);
}

/**
 * Writes a run's files under the first free name of the day: the JSON is
 * claimed with O_EXCL, so two runs at once never take one name, and a name
 * whose markdown or chart is there (a file kept by hand) is skipped too.
 * content gets the name chosen (the markdown links the chart by it).
 * Returns the path without extension.
 */
export function writeResults(dir: string, date: string, content: (name: string) => { json: string; md: string; svg: string }): string {
  mkdirSync(dir, { recursive: true });
  for (let run = 1; ; run++) {
    const name = run === 1 ? date : `${date}-${run}`;
    const base = join(dir, name);
    if (existsSync(`${base}.md`) || existsSync(`${base}.svg`)) continue;
    let fd: number;
    try {
      fd = openSync(`${base}.json`, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    const files = content(name);
    try {
      writeSync(fd, files.json);
    } finally {
      closeSync(fd);
    }
    writeFileSync(`${base}.md`, files.md);
    writeFileSync(`${base}.svg`, files.svg);
    return base;
  }
}
