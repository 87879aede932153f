import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../ts/paths.js';

// The layout is the architecture (README, Layout): each folder may use only
// those below it. A folder's rank; an import from a lower rank to a higher
// one runs back up.
const TS_RANK: Record<string, number> = { tables: 0, ts: 1, harness: 2, bench: 2 };
const C_RANK: Record<string, number> = { tables: 0, 'native/core': 1, 'native/shim': 2, 'native/addon': 2, 'native/pool': 2, 'native/supervisor': 2 };

function filesUnder(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...filesUnder(rel, ext));
    else if (ext.test(name)) out.push(rel);
  }
  return out;
}

function folderOf(file: string, ranks: Record<string, number>): string | undefined {
  return Object.keys(ranks)
    .filter((f) => file === f || file.startsWith(f + '/'))
    .sort((a, b) => b.length - a.length)[0];
}

/** A file's imports of this repository's files, as repository paths. */
function importsOf(file: string, pattern: RegExp, toSource: (spec: string) => string): string[] {
  return [...readFileSync(join(ROOT, file), 'utf8').matchAll(pattern)]
    .map((m) => m[1])
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => relative(ROOT, resolve(ROOT, dirname(file), toSource(spec))));
}

// `from '...'` (static imports and re-exports), `import('...')`, `import '...'`.
const tsImports = (file: string) =>
  importsOf(file, /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)'([^']+)'/gm, (spec) => spec.replace(/\.js$/, '.ts'));
const cIncludes = (file: string) => importsOf(file, /#include\s+"([^"]+)"/g, (spec) => spec);

function backwards(files: string[], ranks: Record<string, number>, imports: (f: string) => string[]): string[] {
  const found: string[] = [];
  for (const file of files) {
    const from = folderOf(file, ranks)!;
    for (const target of imports(file)) {
      const to = folderOf(target, ranks);
      if (to !== undefined && to !== from && ranks[to] >= ranks[from]) found.push(`${file} -> ${target}`);
    }
  }
  return found;
}

describe('the layout', () => {
  const tsFiles = Object.keys(TS_RANK).flatMap((d) => filesUnder(d, /\.ts$/));
  const cFiles = Object.keys(C_RANK).flatMap((d) => filesUnder(d, /\.(c|cc|h)$/));

  it('has the TypeScript and C files it is read from (the scan is not empty)', () => {
    expect(tsFiles).toEqual(expect.arrayContaining(['ts/tabledb.ts', 'harness/cli.ts', 'tables/schema.ts']));
    expect(cFiles).toEqual(expect.arrayContaining(['native/core/tabledb.c', 'native/shim/sem.c', 'tables/schema.h']));
    expect(tsImports('harness/cli.ts')).toContain('ts/errors.ts');
    expect(cIncludes('native/shim/shim.h')).toContain('native/core/tabledb.h');
  });

  it('TypeScript: harness/ and bench/ use ts/, ts/ uses tables/, nothing imports upward or sideways between the top two', () => {
    expect(backwards(tsFiles, TS_RANK, tsImports)).toEqual([]);
  });

  it('C: the shim, the addon and the daemons use native/core/, which uses tables/, and none includes another', () => {
    expect(backwards(cFiles, C_RANK, cIncludes)).toEqual([]);
  });

  it('TypeScript modules import each other in no circle', () => {
    const graph = new Map(tsFiles.map((f) => [f, tsImports(f).filter((t) => tsFiles.includes(t))]));
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        circles.push([...path.slice(path.indexOf(f)), f].join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const t of graph.get(f)!) visit(t, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of tsFiles) visit(f, []);
    expect(circles).toEqual([]);
  });
});
