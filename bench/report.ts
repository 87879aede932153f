/**
 * What `npm run bench` shows of its results: tables on the terminal, a
 * markdown summary and an SVG chart beside the JSON in bench/results.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { basename } from 'node:path';
import Table from 'cli-table3';
import { type Bar, type Panel, barChart } from './chart.js';
import { ALLOCATION, CLONE_TARGET_MS, INSPECTOR, LOOKUP_AT_SCALE, POOL_TARGET, SNAPSHOT_TARGET_GBPS } from './targets.js';
import type { CloneFigures, InfoFigures, InspectFigures, PoolFigures, Results, SnapFigures } from './figures.js';


/** The inspector's two bounds: the first page's time, and memory flat. */
export function inspectorMet(f: InspectFigures): { firstPage: boolean; flat: boolean } {
  const [small, large] = f.json;
  return { firstPage: f.firstPageMs <= INSPECTOR.firstPageMs, flat: large.peakRssMiB <= small.peakRssMiB * INSPECTOR.jsonMemoryGrowth };
}

function inspectorRows(f: InspectFigures): string[][] {
  const met = inspectorMet(f);
  return [
    ['first page of appshot tables, 1M mappings (the appshot command, wall time, Node start included)', `${f.firstPageMs.toFixed(0)} ms`, `≤ ${INSPECTOR.firstPageMs} ms`, verdict(met.firstPage)],
    ...f.json.map((j, i) => [
      `--json of ${j.rows.toLocaleString('en-US')} rows: time, peak memory`,
      `${j.seconds.toFixed(2)} s, ${j.peakRssMiB.toFixed(0)} MiB`,
      i === f.json.length - 1 ? `≤ ${INSPECTOR.jsonMemoryGrowth}x the memory of ${f.json[0].rows.toLocaleString('en-US')} rows` : '',
      i === f.json.length - 1 ? verdict(met.flat) : '',
    ]),
  ];
}

const verdict = (met: boolean | null) => (met === null ? '' : met ? 'met' : 'MISSED');
const allocLabel = (procs: number) => `allocation (semget IPC_PRIVATE), ${procs} process${procs === 1 ? '' : 'es'} at once`;
const poolLabel = (p: PoolFigures) =>
  `${p.requestsPerConnection === 1 ? 'a connection per request' : `${p.requestsPerConnection} requests per connection`}, ` +
  (p.steer === 'kernel' ? 'steered in the kernel (default)' : "the daemon's hand-off (APPSHOT_POOL_STEER=user)");
const cloneMet = (f: CloneFigures) => f.overheadMs.max <= CLONE_TARGET_MS;
const ms = (x: { p50: number; max: number }) => `${x.p50.toFixed(1)} ms, max ${x.max.toFixed(1)} ms`;
function cloneRows(r: Results): string[][] {
  return r.clone.map((f) => [String(f.clones), `${f.totalSeconds.toFixed(2)} s`, ms(f.readyMs), ms(f.copyMs), ms(f.overheadMs), `≤ ${CLONE_TARGET_MS} ms + copy`, verdict(cloneMet(f))]);
}
const CLONE_HEAD = ['clones', 'all made', 'ready, each', 'of it copying', 'ready less copy', 'target', ''];
/** *_INFO rows: the call, native, shim, ratio, target, verdict, and beside another application's objects. */
function infoRows(r: Results): string[][] {
  if (!r.info) return [];
  const rows = r.info.calls.map((c) => [
    c.label,
    time(c.nativeNs),
    time(c.shimNs),
    c.ratio.toFixed(2) + 'x',
    c.target ? `≤ ${c.target}x` : '',
    verdict(c.met),
    `${time(c.besideNs)}, ${c.besideRatio.toFixed(1)}x`,
  ]);
  const s = r.info.stress;
  if (s) {
    const name = `stress-ng --${s.stressor} 1, pinned, ${s.seconds} s: bogo ops/s`;
    rows.push([`${name} by CPU time`, perSecond(s.native.cpu), perSecond(s.shim.cpu), s.cpuRatio.toFixed(2) + 'x', `≥ ${s.target}x`, verdict(s.met), `--no-trap: ${perSecond(s.noTrap.cpu)}, ${s.noTrapCpuRatio.toFixed(2)}x`]);
    rows.push([`${name} by real time`, perSecond(s.native.real), perSecond(s.shim.real), s.ratio.toFixed(2) + 'x', '', '', `--no-trap: ${perSecond(s.noTrap.real)}`]);
  }
  return rows;
}
const INFO_HEAD = ['call', 'native', 'shim', 'shim / native', 'target', '', 'shim beside another application (stress-ng: --no-trap)'];
/** Shared memory's rate each way, which the target is about: over its own
 * copy, or (results from before that was reported) over the whole command. */
const copyGBps = (f: SnapFigures) => ({ snapshot: f.snapshotCopyGBps ?? f.snapshotGBps, restore: f.restoreCopyGBps ?? f.restoreGBps });
const snapMet = (f: SnapFigures) => Math.min(copyGBps(f).snapshot, copyGBps(f).restore) >= SNAPSHOT_TARGET_GBPS;
/** The target is to /dev/shm; a file on the disk waits for the device (fsync) and is shown beside it. */
const snapTargeted = (f: SnapFigures) => f.where === '/dev/shm';
const SNAP_HEAD = ['snapshot, whole command', 'restore, whole command', 'shared memory copied: snapshot, restore', 'target', ''];
function snapCells(f: SnapFigures): string[] {
  const c = copyGBps(f);
  return [
    `${f.snapshotSeconds.toFixed(2)} s, ${f.snapshotGBps.toFixed(2)} GB/s`,
    `${f.restoreSeconds.toFixed(2)} s, ${f.restoreGBps.toFixed(2)} GB/s`,
    `${c.snapshot.toFixed(2)} GB/s, ${c.restore.toFixed(2)} GB/s`,
    snapTargeted(f) ? `≥ ${SNAPSHOT_TARGET_GBPS} GB/s each way` : '',
    snapTargeted(f) ? verdict(snapMet(f)) : '',
  ];
}

/** 8.2 ns, 399 ns, 5.3 µs, 135 µs, 1.2 ms. */
function time(ns: number): string {
  if (ns < 100) return `${ns.toFixed(1)} ns`;
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e5) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(0)} µs`;
  return `${(ns / 1e6).toFixed(1)} ms`;
}
const perSecond = (n: number) => `${Math.round(n).toLocaleString('en-US')}/s`;

/** The terminal's tables; a run of some stages (--stage) prints theirs only. */
export function printTables(whole: Partial<Results>): string {
  const r = { calls: [], lookups: [], absolute: [], pool: [], snapshot: [], clone: [], ...whole, scale: { lookups: [], allocation: [], ...whole.scale } } as Results;
  const style = { head: [], border: [] };
  const calls = new Table({ head: ['call', 'shim / native', 'target', 'native', 'shim', ''], style });
  for (const c of r.calls) calls.push([c.label, c.ratio.toFixed(2) + 'x', c.target ? `≤ ${c.target}x` : '', time(c.nativeNs), time(c.shimNs), c.target ? verdict(c.met) : '']);
  for (const a of r.scale.allocation)
    calls.push([allocLabel(a.procs), a.ratio.toFixed(2) + 'x', a.targetPerSecond ? `≥ ${perSecond(a.targetPerSecond)}` : '', perSecond(a.nativePerSecond), perSecond(a.shimPerSecond), verdict(a.met)]);
  for (const l of r.lookups)
    calls.push([l.label, `p50 ${time(l.p50Ns)}, p99 ${time(l.p99Ns)}`, l.p50Target ? `p50 ≤ ${l.p50Target} ns` : '', '', '', l.p50Target ? verdict(l.met) : '']);
  for (const a of r.absolute) calls.push([a.label, time(a.ns), `≤ ${a.targetNs} ns`, '', '', verdict(a.met)]);

  const scale = new Table({ head: ['translation lookup, mappings', 'hot p50', 'hot p99', 'cold p50', 'cold p99', 'target (hot)', ''], style });
  for (const s of r.scale.lookups)
    scale.push([s.label, time(s.hot.p50), time(s.hot.p99), time(s.cold.p50), time(s.cold.p99), s.target ? `p50 ≤ ${s.target.p50Ns} ns, p99 ≤ ${s.target.p99Ns} ns` : '', verdict(s.met)]);

  const pool = new Table({ head: ['3 instances, 4 clients', 'pool / direct', 'target', 'direct req/s', 'pool req/s', ''], style });
  for (const p of r.pool) pool.push([poolLabel(p), p.ratio.toFixed(2) + 'x', `≥ ${POOL_TARGET}x`, p.directRps.toFixed(0), p.poolRps.toFixed(0), verdict(p.ratio >= POOL_TARGET)]);

  const snap = new Table({ head: [`${snapSize(r.snapshot[0])}, file on`, ...SNAP_HEAD], style });
  for (const f of r.snapshot) snap.push([f.where, ...snapCells(f)]);
  const clone = new Table({ head: CLONE_HEAD, style });
  for (const row of cloneRows(r)) clone.push(row);
  const info = new Table({ head: INFO_HEAD, style });
  for (const row of infoRows(r)) info.push(row);
  const inspector = new Table({ head: ['the table inspector', 'measured', 'target', ''], style });
  if (r.inspector) for (const row of inspectorRows(r.inspector)) inspector.push(row);
  const extra = (r.tables ?? []).map((x) => {
    const t = new Table({ head: x.head, style });
    for (const row of x.rows) t.push(row);
    return `${x.title}\n${t.toString()}`;
  });
  return [calls, scale, pool, snap, clone, info, inspector].filter((t) => t.length).map((t) => t.toString()).concat(extra).join('\n') + '\n';
}

/** 1 GiB shm + 10,000 sets. */
function snapSize(f: SnapFigures | undefined): string {
  if (!f) return 'shared memory and semaphore sets';
  const mib = f.bytes / 2 ** 20;
  return `${mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`} shm + ${(f.sets ?? 10_000).toLocaleString('en-US')} sets`;
}

/** Which stages ran, what each measured and how long it took (results of
 * before the stages say only their rounds). */
function stagesText(r: Results): string {
  const kind = r.full ? 'A --full run' : 'The default run (`npm run bench -- --full` for every size and round)';
  if (!r.stages) return `Each figure is the median of ${r.rounds} rounds, natively and under the shim in the same round.`;
  const total = r.stages.reduce((s, x) => s + x.seconds, 0);
  const lines = r.stages.map((s) => `- ${s.name}: ${s.measures}; ${s.seconds.toFixed(0)} s`);
  return [`${kind}, ${(total / 60).toFixed(1)} minutes; each figure a median over its rounds, natively and under the shim in the same round:`, '', ...lines].join('\n');
}

/** A markdown table from a header and rows. */
function mdTable(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

export function markdown(r: Results, chartFile: string): string {
  const cpu = cpus();
  const calls = r.calls.map((c) => [c.label, time(c.nativeNs), time(c.shimNs), c.ratio.toFixed(2) + 'x', c.target ? `≤ ${c.target}x` : '', c.target ? verdict(c.met) : '']);
  const alloc = r.scale.allocation.map((a) => [
    String(a.procs),
    perSecond(a.nativePerSecond),
    perSecond(a.shimPerSecond),
    a.ratio.toFixed(2) + 'x',
    a.targetPerSecond ? `≥ ${perSecond(a.targetPerSecond)}` : '',
    verdict(a.met),
    a.tablesChecked ? 'no ID twice (--verify and the rows)' : '',
  ]);
  const scale = r.scale.lookups.map((s) => [
    s.mappings.toLocaleString('en-US'),
    time(s.hot.p50),
    time(s.hot.p99),
    time(s.hot.mean),
    time(s.cold.p50),
    time(s.cold.p99),
    s.target ? `p50 ≤ ${s.target.p50Ns} ns, p99 ≤ ${s.target.p99Ns} ns` : '',
    verdict(s.met),
  ]);
  const lookups = [
    ...r.lookups.map((l) => [l.label, `p50 ${time(l.p50Ns)}, p99 ${time(l.p99Ns)}`, l.p50Target ? `p50 ≤ ${l.p50Target} ns` : '', l.p50Target ? verdict(l.met) : '']),
    ...r.absolute.map((a) => [a.label, time(a.ns), `≤ ${a.targetNs} ns`, verdict(a.met)]),
  ];
  const pool = r.pool.map((p) => [poolLabel(p), p.directRps.toFixed(0), p.poolRps.toFixed(0), p.ratio.toFixed(2) + 'x', `≥ ${POOL_TARGET}x`, verdict(p.ratio >= POOL_TARGET)]);
  const snap = r.snapshot.map((f) => [f.where, ...snapCells(f)]);
  return [
    `# appshot bench, ${r.date.slice(0, 10)}`,
    '',
    `${r.date}; ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, Linux ${release()}, Node ${process.version}.`,
    '',
    stagesText(r),
    '',
    `![shim / native per call, and the figures with absolute targets](${chartFile})`,
    '',
    '## Calls, shim against native',
    '',
    mdTable(['call', 'native', 'shim', 'shim / native', 'target', ''], calls),
    '',
    '## Allocation rate',
    '',
    `Processes of one application creating semaphore sets (\`semget(IPC_PRIVATE)\`) at once for about ${r.scale.allocation[0]?.seconds ?? 2} s, in waves of 8,192 live sets ` +
      '(removed, untimed, between waves). Total allocations per second; shim / native is the time per allocation; ' +
      `the target is ${ALLOCATION.shareOfNative * 100}% of the native rate of the same run.`,
    '',
    mdTable(['processes', 'native', 'shim', 'shim / native', 'target', '', 'checked'], alloc),
    '',
    '## Translation lookup at scale',
    '',
    "Absolute times (a lookup has no native counterpart). The application holds 1,000 mappings; other applications' rows fill the tables " +
      'to the total. Hot: a working set of 64 IDs in the per-thread cache. Cold: a random one of the 1,000 right after a commit (an LMDB read). ' +
      `The bound is the issue's, at ${LOOKUP_AT_SCALE.mappings.toLocaleString('en-US')} mappings, for the translation made on every call (hot). ` +
      `Single calls are timed with the TSC, which moves in steps of ${time(r.scale.lookups[0]?.timerStepNs ?? 0)} here: ` +
      'percentiles are multiples of that step; the hot mean is from a batch of 1M calls timed as a whole.',
    '',
    mdTable(['mappings', 'hot p50', 'hot p99', 'hot mean', 'cold p50', 'cold p99', 'target', ''], scale),
    '',
    '## Translation lookup in sembench',
    '',
    mdTable(['lookup', 'time', 'target', ''], lookups),
    '',
    '## Published-port pool (3 instances, 4 client threads)',
    '',
    mdTable(['load', 'direct req/s', 'pool req/s', 'pool / direct', 'target', ''], pool),
    '',
    `## Snapshot and restore (${snapSize(r.snapshot[0])})`,
    '',
    "Each command's own figure (not Node's start-up): the whole snapshot (processes stopped, rows and every object captured, the file in place) and the whole restore (every object made again and filled), each with the shared memory's bytes over its time; then shared memory's rate over its own copy, which the target is about.",
    '',
    mdTable(['file on', ...SNAP_HEAD], snap),
    '',
    `## Cloning a template (${r.clone[0]?.sharedMiB ?? 256} MiB shared, ${r.clone[0]?.duplicateMiB ?? 16} MiB duplicate)`,
    '',
    'N clones made and started one after another by one `appshot template clone -n N`; each clone is ready once every object is made and filled ' +
      'and its first process started. Times from the command itself (Node start-up left out); the median round by total time.',
    '',
    mdTable(CLONE_HEAD, cloneRows(r)),
    '',
    ...(r.info ? infoMarkdown(r.info, r) : []),
    '## The table inspector (1,000 applications x 1,000 mappings)',
    '',
    mdTable(['', 'measured', 'target', ''], inspectorRows(r.inspector)),
    '',
    ...(r.tables ?? []).flatMap((x) => [`## ${x.title}`, '', mdTable(x.head, x.rows), '']),
  ].join('\n');
}

function infoMarkdown(info: InfoFigures, r: Results): string[] {
  return [
    `## IPC_INFO and *_INFO with ${info.objects.toLocaleString('en-US')} objects of each family, and stress-ng msg`,
    '',
    `Each run in ${info.namespace === 'own' ? 'an IPC namespace of its own (unshare --ipc): the application is alone there' : 'the host\'s IPC namespace (unshare was refused)'}. ` +
      'The application holds that many semaphore sets, segments and queues (a message in each); each call is timed again and again with nothing ' +
      'changing (best mean of five rounds), and right after an object of its family was made and removed (median of single calls; under the shim a ' +
      "commit, after which the shim reads the application's rows again). Beside another application: one object of each family made in the namespace " +
      "first, so the shim reads each of the application's objects for the totals. stress-ng's msg stressor asks IPC_STAT, MSG_STAT_ANY, " +
      'IPC_INFO and MSG_INFO every 256 messages, with about 1,000 queues of its own; pinned to one CPU, its rate by real time counts whatever ' +
      'else ran on that CPU, so the verdict is on its rate by CPU time (usr + sys), which on a quiet machine is the same. The last column ' +
      "shows its rate under the shim with --no-trap: what of the difference is the trap's seccomp filter on every msgsnd and msgrcv.",
    '',
    mdTable(INFO_HEAD, infoRows(r)),
    '',
  ];
}

/** The ratio panel: every paired call and the allocation rates. */
function ratioBars(r: Results): Bar[] {
  return [
    ...r.calls.map((c) => ({ label: c.label, value: c.ratio, tick: c.target, met: c.target ? c.met : null, text: `${c.ratio.toFixed(2)}x${c.target ? ` (≤ ${c.target}x)` : ''}` })),
    ...r.scale.allocation.map((a) => ({ label: allocLabel(a.procs), value: a.ratio, tick: null, met: null, text: `${a.ratio.toFixed(2)}x` })),
    ...(r.info?.calls ?? [])
      .filter((c) => c.target)
      .map((c) => ({ label: `${c.label}, ${r.info!.objects.toLocaleString('en-US')} objects`, value: c.ratio, tick: c.target, met: c.met, text: `${c.ratio.toFixed(2)}x (≤ ${c.target}x)` })),
  ];
}

/** Figures held to an absolute bound, each drawn as measured over its
 * bound (a time) or bound over measured (a rate), so every tick is at 1. */
function targetBars(r: Results): Bar[] {
  const bar = (label: string, value: number, met: boolean, text: string): Bar => ({ label, value, tick: 1, met, text });
  const bars: Bar[] = [];
  for (const a of r.absolute) bars.push(bar(a.label, a.ns / a.targetNs, a.met, `${time(a.ns)} (≤ ${a.targetNs} ns)`));
  for (const l of r.lookups) if (l.p50Target) bars.push(bar(`${l.label}, p50`, l.p50Ns / l.p50Target, l.met, `${time(l.p50Ns)} (≤ ${l.p50Target} ns)`));
  for (const s of r.scale.lookups)
    if (s.target) {
      const name = `translation lookup at ${s.label} mappings (hot)`;
      bars.push(bar(`${name}, p50`, s.hot.p50 / s.target.p50Ns, s.hot.p50 <= s.target.p50Ns, `${time(s.hot.p50)} (≤ ${s.target.p50Ns} ns)`));
      bars.push(bar(`${name}, p99`, s.hot.p99 / s.target.p99Ns, s.hot.p99 <= s.target.p99Ns, `${time(s.hot.p99)} (≤ ${s.target.p99Ns} ns)`));
    }
  for (const a of r.scale.allocation)
    if (a.targetPerSecond) bars.push(bar(`${a.procs} processes allocating at once, total rate`, a.targetPerSecond / a.shimPerSecond, !!a.met, `${perSecond(a.shimPerSecond)} (≥ ${perSecond(a.targetPerSecond)})`));
  for (const p of r.pool) bars.push(bar(`published-port pool, ${poolLabel(p)}`, POOL_TARGET / p.ratio, p.ratio >= POOL_TARGET, `${p.ratio.toFixed(2)}x direct (≥ ${POOL_TARGET}x)`));
  const im = inspectorMet(r.inspector);
  bars.push(bar('appshot tables, first page over 1M mappings', r.inspector.firstPageMs / INSPECTOR.firstPageMs, im.firstPage, `${r.inspector.firstPageMs.toFixed(0)} ms (≤ ${INSPECTOR.firstPageMs} ms)`));
  for (const f of r.snapshot.filter(snapTargeted)) {
    const slower = Math.min(copyGBps(f).snapshot, copyGBps(f).restore);
    bars.push(bar(`shared memory copied by snapshot and restore, file on ${f.where}, slower way`, SNAPSHOT_TARGET_GBPS / slower, snapMet(f), `${slower.toFixed(2)} GB/s (≥ ${SNAPSHOT_TARGET_GBPS} GB/s)`));
  }
  const s = r.info?.stress;
  if (s) bars.push(bar(`stress-ng ${s.stressor}, pinned: bogo ops/s by CPU time against native`, s.target / s.cpuRatio, s.met, `${s.cpuRatio.toFixed(2)}x native (≥ ${s.target}x)`));
  for (const f of r.clone)
    bars.push(bar(`${f.clones} clone${f.clones === 1 ? '' : 's'}: slowest ready less copy`, f.overheadMs.max / CLONE_TARGET_MS, cloneMet(f), `${f.overheadMs.max.toFixed(1)} ms (≤ ${CLONE_TARGET_MS} ms)`));
  return bars;
}

export function chart(r: Results): string {
  const panels: Panel[] = [
    { title: 'Shim / native, per call (shorter is faster)', axis: 'shim time / native time (log scale; dashed: as fast as native)', bars: ratioBars(r), from: 0.5, reference: 1 },
    { title: 'Figures with an absolute target', axis: 'measured / bound for a time, bound / measured for a rate (log scale): past the tick at 1 is missed', bars: targetBars(r), from: 0.05 },
  ];
  return barChart(`appshot bench, ${r.date.slice(0, 10)}, ${cpus().length} cores`, panels);
}

/** `node dist/bench/report.js [FILE.json]`: the tables of a run (the
 * latest in bench/results unless FILE is given) printed again, and its
 * markdown and chart drawn again beside it. */
async function main(): Promise<void> {
  const { latestResults } = await import('./results.js');
  const file = process.argv[2] ?? latestResults();
  if (!file) throw new Error('no results in bench/results yet: run npm run bench first');
  const r: Results = JSON.parse(readFileSync(file, 'utf8'));
  const base = file.replace(/\.json$/, '');
  writeFileSync(`${base}.md`, markdown(r, `${basename(base)}.svg`));
  writeFileSync(`${base}.svg`, chart(r));
  process.stdout.write(printTables(r) + `${base}.md and .svg drawn from ${file}\n`);
}

if (process.argv[1] && basename(process.argv[1]) === 'report.js') await main();
