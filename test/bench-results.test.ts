import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { latestResults, resultFiles, writeResults } from '../bench/results.js';
import { makeHome } from './helpers.js';

const files = (name: string) => ({ json: `{"run": "${name}"}\n`, md: `![chart](${name}.svg)\n`, svg: `<svg>${name}</svg>\n` });

describe('bench results (npm run bench)', () => {
  it('a later run of the same day gets the next name and never overwrites one; the latest is found by date, then run', () => {
    const dir = join(makeHome(), 'results');
    expect(latestResults(dir)).toBeUndefined();
    const first = writeResults(dir, '2026-12-01', files);
    const second = writeResults(dir, '2026-12-01', files);
    expect(first).toBe(join(dir, '2026-12-01'));
    expect(second).toBe(join(dir, '2026-12-01-2'));
    expect(readFileSync(`${first}.json`, 'utf8')).toContain('"2026-12-01"');
    expect(readFileSync(`${second}.md`, 'utf8')).toBe('![chart](2026-12-01-2.svg)\n');
    // A name whose chart alone is there (kept by hand) is not taken either.
    writeFileSync(join(dir, '2026-12-01-3.svg'), 'kept');
    for (let i = 0; i < 8; i++) writeResults(dir, '2026-12-01', files);
    expect(readFileSync(join(dir, '2026-12-01-3.svg'), 'utf8')).toBe('kept');
    expect(readdirSync(dir).filter((f) => f.endsWith('.json')).length).toBe(10);
    expect(latestResults(dir)).toBe(join(dir, '2026-12-01-11.json')); // 11 after 9 and 10, not after 1
    writeResults(dir, '2026-11-30', files);
    expect(latestResults(dir)).toBe(join(dir, '2026-12-01-11.json'));
    writeResults(dir, '2026-12-02', files);
    expect(latestResults(dir)).toBe(join(dir, '2026-12-02.json'));
    expect(resultFiles(dir)[0]).toBe(join(dir, '2026-11-30.json'));
  });
});
