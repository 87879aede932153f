/**
 * Instances on demand (`appshot template serve`, harness/serve.ts): a
 * template of python3's http.server, snapshotted whole, served behind a
 * public port.
 *
 * 1. First byte of the first response from a pool at zero instances: from
 *    the client's connect to the first byte of the answer to GET /who.txt,
 *    the clone made warm (the template's process continued; the default) and
 *    cold (--cold: the command started again), beside the cold start of the
 *    same server without appshot (spawn python3 until the first byte of its
 *    answer). Between rounds the pool retires its instance (--idle 0.3), so
 *    each round starts at zero. Target (issue 19): warm <= 50 ms.
 * 2. A load that doubles every step (1, 2, 4, ... clients, each sending one
 *    request per connection, back to back; 2 s steps, 10 s with --full)
 *    against a pool of --conns 2, --max 8: per step the requests, the
 *    connections refused or failed (target 0), the latency and the most
 *    instances the pool had.
 *
 * `node dist/bench/serve.js [--full]` runs it alone.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { appshot, cliEnv } from './app.js';
import { CLI_PATH } from '../ts/paths.js';
import type { ReportTable } from './figures.js';
import { type Stage, sized } from './stage.js';

const SIZES = {
  default: { rounds: 5, steps: [1, 2, 4, 8, 16], stepS: 2 },
  full: { rounds: 20, steps: [1, 2, 4, 8, 16, 32], stepS: 10 },
};
const TARGET_FIRST_BYTE_MS = 50;

/** python3 itself, not a wrapper found first on PATH (pyenv's shim is a
 * shell script that costs more than the start being measured). */
function python(): string {
  const r = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : 'python3';
}
const BODY = 'served by a clone\n';

const cli = (home: string, args: string[]): string => appshot(home, args).stdout;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, () => s.close(() => resolve(true)));
  });
}

async function freePort(): Promise<number> {
  for (;;) {
    const p = 40000 + Math.floor(Math.random() * 10000);
    if (await portFree(p)) return p;
  }
}

/** Output of a child, waited on by pattern. */
class Watched {
  text = '';
  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d) => (this.text += d));
    child.stderr?.on('data', (d) => (this.text += d));
  }
  async until(re: RegExp, n = 1, ms = 30_000): Promise<void> {
    const end = Date.now() + ms;
    while ((this.text.match(new RegExp(re.source, 'g')) ?? []).length < n) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} in:\n${this.text.slice(-2000)}`);
      await sleep(5);
    }
  }
}

/** The template 'web': python3 -m http.server on a virtual port, snapshotted whole. */
async function makeTemplate(home: string): Promise<{ vport: number; www: string }> {
  const www = join(home, 'www');
  mkdirSync(www);
  writeFileSync(join(www, 'who.txt'), BODY);
  const vport = await freePort();
  // Published when snapshotted: a warm clone's listener is then the pool's (see harness/serve.ts).
  const run = new Watched(spawn(process.execPath, [CLI_PATH, 'run', '--aid', 'web0', '--publish', `${await freePort()}:${vport}`, '--', python(), '-u', '-m', 'http.server', String(vport), '--bind', '127.0.0.1', '--directory', www], { env: cliEnv(home), stdio: ['ignore', 'pipe', 'pipe'] }));
  await run.until(/Serving HTTP/);
  cli(home, ['snapshot', 'web0', '-o', join(home, 'web.snap'), '--stop']);
  await new Promise((r) => run.child.once('close', r));
  cli(home, ['template', 'create', 'web', '--from', join(home, 'web.snap')]);
  return { vport, www };
}

/** One GET of who.txt on a new connection: ms to the first byte, to the end, or the error. */
function get(port: number): Promise<{ firstMs: number; totalMs: number; ok: boolean; error?: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let firstMs = -1;
    let got = '';
    const s = connect(port, '127.0.0.1');
    s.setTimeout(30_000, () => s.destroy(new Error('timed out')));
    s.on('connect', () => s.write('GET /who.txt HTTP/1.0\r\n\r\n'));
    s.on('data', (d) => {
      if (firstMs < 0) firstMs = performance.now() - t0;
      got += d;
    });
    s.on('end', () => resolve({ firstMs, totalMs: performance.now() - t0, ok: got.startsWith('HTTP/1.0 200') && got.endsWith(BODY) }));
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ firstMs, totalMs: performance.now() - t0, ok: false, error: e.code ?? e.message }));
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};
const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-');

function startServe(home: string, pub: number, vport: number, extra: string[]): Watched {
  return new Watched(spawn(process.execPath, [CLI_PATH, 'template', 'serve', 'web', '--publish', `${pub}:${vport}`, ...extra], { env: cliEnv(home), stdio: ['ignore', 'ignore', 'pipe'] }));
}

async function endServe(w: Watched): Promise<void> {
  w.child.kill('SIGTERM');
  await new Promise((r) => (w.child.exitCode !== null ? r(null) : w.child.once('exit', r)));
}

/** First byte at zero instances, `rounds` times, the pool retiring its instance between. */
async function firstBytes(home: string, vport: number, rounds: number, cold: boolean): Promise<{ ms: number[]; warm: boolean }> {
  const pub = await freePort();
  const w = startServe(home, pub, vport, ['--idle', '0.3', ...(cold ? ['--cold'] : [])]);
  const ms: number[] = [];
  try {
    await w.until(/serving \d+:\d+/);
    for (let i = 1; i <= rounds; i++) {
      const r = await get(pub);
      if (!r.ok) throw new Error(`the first request of round ${i} failed: ${r.error ?? 'a wrong answer'}\n${w.text.slice(-2000)}`);
      ms.push(r.firstMs);
      await w.until(/retired web-\d+/, i); // back at zero instances
    }
  } finally {
    await endServe(w);
  }
  return { ms, warm: /started web-\d+ \(warm/.test(w.text) };
}

/** The same server started natively: spawn to the first byte of its answer. */
async function nativeStarts(www: string, rounds: number): Promise<number[]> {
  const ms: number[] = [];
  const py = python();
  for (let i = 0; i < rounds; i++) {
    const port = await freePort();
    const t0 = performance.now();
    const child = spawn(py, ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', www], { stdio: 'ignore' });
    try {
      for (;;) {
        const r = await get(port);
        if (r.ok) {
          ms.push(r.firstMs + (performance.now() - t0 - r.totalMs));
          break;
        }
        await sleep(1);
      }
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
  }
  return ms;
}

interface Step {
  clients: number;
  requests: number;
  failed: number;
  errors: string[];
  p50: number;
  p99: number;
  instances: number;
}

/** Clients added to double the load each step; each sends requests back to back. */
async function doublingLoad(home: string, vport: number, steps: number[], stepS: number): Promise<Step[]> {
  const pub = await freePort();
  const w = startServe(home, pub, vport, ['--conns', '2', '--max', '8', '--idle', '5']);
  const out: Step[] = [];
  let stop = false;
  let current: { lat: number[]; failed: number; errors: Set<string> } = { lat: [], failed: 0, errors: new Set() };
  const client = async () => {
    while (!stop) {
      const r = await get(pub);
      if (stop) break;
      if (r.ok) current.lat.push(r.totalMs);
      else {
        current.failed++;
        current.errors.add(r.error ?? 'wrong answer');
      }
    }
  };
  const workers: Promise<void>[] = [];
  try {
    await w.until(/serving \d+:\d+/);
    for (const clients of steps) {
      while (workers.length < clients) workers.push(client());
      current = { lat: [], failed: 0, errors: new Set() };
      let most = 0;
      for (const end = Date.now() + stepS * 1000; Date.now() < end; ) {
        await sleep(250);
        try {
          const st = JSON.parse(readFileSync(join(home, 'serve', 'web.json'), 'utf8')) as { instances: unknown[] };
          most = Math.max(most, st.instances.length);
        } catch {
          /* being replaced */
        }
      }
      out.push({ clients, requests: current.lat.length + current.failed, failed: current.failed, errors: [...current.errors], p50: pct(current.lat, 50), p99: pct(current.lat, 99), instances: most });
    }
  } finally {
    stop = true;
    await Promise.all(workers);
    await endServe(w);
  }
  return out;
}

export interface ServeFigures {
  firstByte: { warm: number[]; warmWasWarm: boolean; cold: number[]; native: number[] };
  load: Step[];
  stepS: number;
}

export async function serveFigures(home: string, full: boolean, progress: (s: string) => void = () => {}): Promise<ServeFigures> {
  const s = sized(full, SIZES);
  const { vport, www } = await makeTemplate(home);
  const warm = await firstBytes(home, vport, s.rounds, false);
  progress(`first byte at zero instances, ${warm.warm ? 'warm' : 'cold (warm clones are not in this tree)'}: p50 ${fmt(pct(warm.ms, 50))} ms`);
  const cold = await firstBytes(home, vport, s.rounds, true);
  progress(`first byte at zero instances, --cold: p50 ${fmt(pct(cold.ms, 50))} ms`);
  const native = await nativeStarts(www, s.rounds);
  progress(`python3 -m http.server started natively, to its first byte: p50 ${fmt(pct(native, 50))} ms`);
  const load = await doublingLoad(home, vport, s.steps, s.stepS);
  for (const l of load) progress(`${l.clients} client(s): ${l.requests} requests, ${l.failed} failed, p50 ${fmt(l.p50)} ms, up to ${l.instances} instance(s)`);
  return { firstByte: { warm: warm.ms, warmWasWarm: warm.warm, cold: cold.ms, native }, load, stepS: s.stepS };
}

export function serveTables(f: ServeFigures): ReportTable[] {
  const row = (what: string, ms: number[], target: string) => [what, String(ms.length), fmt(pct(ms, 50)), fmt(Math.max(...ms)), target];
  const warmWhat = f.firstByte.warmWasWarm ? 'serve, warm clone' : 'serve, default clone (cold: warm clones are not in this tree)';
  const met = pct(f.firstByte.warm, 50) <= TARGET_FIRST_BYTE_MS;
  return [
    {
      title: `First byte of the first response from a pool at zero instances (python3 http.server; target warm <= ${TARGET_FIRST_BYTE_MS} ms)`,
      head: ['start', 'rounds', 'p50 ms', 'max ms', 'target'],
      rows: [
        row(warmWhat, f.firstByte.warm, `<= ${TARGET_FIRST_BYTE_MS} ms: ${met ? 'met' : 'missed'}`),
        row('serve --cold', f.firstByte.cold, ''),
        row('python3 started natively', f.firstByte.native, ''),
      ],
    },
    {
      title: `A load doubling every ${f.stepS} s against serve --conns 2 --max 8 (target: no connection refused)`,
      head: ['clients', 'requests', 'failed', 'p50 ms', 'p99 ms', 'instances (most)', 'errors'],
      rows: f.load.map((l) => [String(l.clients), String(l.requests), String(l.failed), fmt(l.p50), fmt(l.p99), String(l.instances), l.errors.join(' ')]),
    },
  ];
}

export const serveStage: Stage = {
  name: 'serve',
  describe(full) {
    const s = sized(full, SIZES);
    return `template serve of python3 http.server: first byte at zero instances, warm and --cold, against a native start (${s.rounds} rounds each); a load doubling every ${s.stepS} s from 1 to ${s.steps.at(-1)} clients (refused connections, pool size)`;
  },
  async run(ctx) {
    const home = mkdtempSync(join(tmpdir(), 'appshot-bench-serve-'));
    try {
      return { tables: serveTables(await serveFigures(home, ctx.full, ctx.progress)) };
    } finally {
      spawnSync(process.execPath, [CLI_PATH, 'gc'], { env: cliEnv(home), stdio: 'ignore' });
      rmSync(home, { recursive: true, force: true });
    }
  },
};

async function main(): Promise<void> {
  const full = process.argv.includes('--full');
  const home = mkdtempSync(join(tmpdir(), 'appshot-bench-serve-'));
  try {
    const f = await serveFigures(home, full, (s) => process.stderr.write(`serve: ${s}\n`));
    for (const t of serveTables(f)) process.stdout.write(`${t.title}\n${[t.head, ...t.rows].map((r) => r.join(' | ')).join('\n')}\n\n`);
    process.stdout.write(JSON.stringify(f) + '\n');
  } finally {
    spawnSync(process.execPath, [CLI_PATH, 'gc'], { env: cliEnv(home), stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    process.stderr.write(`appshot bench: ${e instanceof Error ? e.message : e}\n`);
    process.exit(1);
  });
}
