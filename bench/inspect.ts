/**
 * The table inspector at a million mappings: tables holding 1,000
 * applications x 1,000 mappings (tablefill); the wall time of
 * `appshot tables` to its first page, Node's start included; and
 * `--json` of every row streamed to /dev/null, its time and the process's
 * peak resident memory, beside the same for 100,000 rows: memory flat
 * means the million costs about what the hundred thousand does.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH, COMMAND_PATH, builtProgram } from '../ts/paths.js';
import { type Stage, sized } from './stage.js';
import type { InspectFigures } from './figures.js';

/** Runs of the first page (the median is kept). */
const PAGES = { default: 3, full: 5 };
const JSON_ROWS = [100_000, 1_000_000];


const env = (home: string) => ({ ...process.env, APPSHOT_HOME: home });

/** Runs the appshot command as a user does (bin/appshot) with args, output
 * discarded, sampling its resident memory. */
function measured(home: string, args: string[]): Promise<{ seconds: number; peakRssMiB: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(COMMAND_PATH, args, { env: env(home), stdio: ['ignore', 'ignore', 'inherit'] });
    let peak = 0;
    const sample = setInterval(() => {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'latin1'));
        if (m) peak = Math.max(peak, Number(m[1]));
      } catch {
        /* ended */
      }
    }, 5);
    child.on('close', (code) => {
      clearInterval(sample);
      if (code !== 0) reject(new Error(`appshot ${args.join(' ')} failed (${code})`));
      else resolve({ seconds: (performance.now() - start) / 1000, peakRssMiB: peak / 1024 });
    });
  });
}

export async function inspectorAtScale(home: string, runs: number): Promise<InspectFigures> {
  spawnSync(process.execPath, [CLI_PATH, 'run', '--', 'true'], { env: env(home) });
  const fill = spawnSync(builtProgram('tablefill'), [home, '1000', '1000', 'inspect'], { encoding: 'utf8' });
  if (fill.status !== 0) throw new Error(`tablefill failed: ${fill.stderr}`);
  const pages: number[] = [];
  for (let i = 0; i < runs; i++) pages.push((await measured(home, ['tables'])).seconds * 1000);
  pages.sort((a, b) => a - b);
  const json = [];
  for (const rows of JSON_ROWS) json.push({ rows, ...(await measured(home, ['tables', '--json', '--limit', String(rows)])) });
  return { mappings: 1_000_000, firstPageMs: pages[Math.floor(pages.length / 2)], json };
}

export const inspectorStage: Stage = {
  name: 'inspector',
  describe(full) {
    return `appshot tables over 1,000 applications x 1,000 mappings: the first page (${sized(full, PAGES)} runs), --json of ${JSON_ROWS.map((n) => n.toLocaleString('en-US')).join(' and ')} rows (tables of its own)`;
  },
  async run(ctx) {
    const home = mkdtempSync(join(tmpdir(), 'appshot-bench-inspect-'));
    try {
      return { inspector: await inspectorAtScale(home, sized(ctx.full, PAGES)) };
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  },
};
