/**
 * The figures each bench stage measures and the results of a run, in one
 * module below the stages, the run and the report, which all use them.
 */

export interface AllocRun {
  procs: number;
  allocations: number;
  seconds: number;
  per_second: number;
  waves: number;
  live: number;
  problems: string[];
}

export interface AllocFigures {
  procs: number;
  /** How long each run allocated. */
  seconds: number;
  nativePerSecond: number;
  shimPerSecond: number;
  /** Shim over native time per allocation: native rate / shim rate. */
  ratio: number;
  /** Whether each run's tables were checked with its sets alive (the
   * 64-process runs; a failed check fails the bench). */
  tablesChecked: boolean;
}

export interface CloneFigures {
  clones: number;
  sharedMiB: number;
  duplicateMiB: number;
  /** From the first clone begun to the last one started. */
  totalSeconds: number;
  readyMs: { p50: number; max: number };
  copyMs: { p50: number; max: number };
  /** Ready less copy: what the target bounds. */
  overheadMs: { p50: number; max: number };
}

export interface InfoCall {
  metric: string;
  label: string;
  nativeNs: number;
  shimNs: number;
  ratio: number;
  /** Under the shim beside another application's objects. */
  besideNs: number;
  besideRatio: number;
  target: number | null;
  met: boolean | null;
}

/** stress-ng's bogo ops per second by real time and by the stressor's CPU
 * time (usr + sys). Pinned to one CPU, the two agree on a quiet machine; on
 * a busy one, real time counts whatever else ran on that CPU, so the
 * verdict is on CPU time. Under the shim with --no-trap too: what of the
 * rest is the trap's (the seccomp filter every msgsnd and msgrcv passes). */
export interface StressFigures {
  stressor: string;
  seconds: number;
  native: { real: number; cpu: number };
  shim: { real: number; cpu: number };
  noTrap: { real: number; cpu: number };
  ratio: number;
  cpuRatio: number;
  noTrapCpuRatio: number;
  target: number;
  met: boolean;
}

export interface InfoFigures {
  objects: number;
  /** 'own': each run in an IPC namespace of its own; 'host': unshare was refused. */
  namespace: 'own' | 'host';
  calls: InfoCall[];
  stress: StressFigures | null;
}

export interface InspectFigures {
  mappings: number;
  firstPageMs: number;
  json: { rows: number; seconds: number; peakRssMiB: number }[];
}

export interface Percentiles {
  p50: number;
  p99: number;
}

export interface LookupFigures {
  mappings: number;
  label: string;
  hot: Percentiles & { mean: number };
  cold: Percentiles;
  /** The seconds tablefill took to write the rows added for this size. */
  fillSeconds: number;
  /** The resolution of a single timing: percentiles are multiples of it. */
  timerStepNs: number;
}

export interface PoolFigures {
  requestsPerConnection: number;
  /** Who steered the pool's connections: the kernel (the default, as
   * root), or the daemon's hand-off (APPSHOT_POOL_STEER=user; the default
   * before issue 21). Absent in results from before both were measured:
   * the daemon's. */
  steer?: 'user' | 'kernel';
  directRps: number;
  poolRps: number;
  ratio: number;
  errors: number;
}

export interface SnapFigures {
  where: string;
  bytes: number;
  sets: number;
  snapshotSeconds: number;
  restoreSeconds: number;
  snapshotGBps: number;
  restoreGBps: number;
  /** Shared memory's own rate each way: its bytes over the time its copy
   * took, as each command reports it (absent in results before 2026-12-03-3). */
  snapshotCopyGBps?: number;
  restoreCopyGBps?: number;
}

export interface CallFigure {
  metric: string;
  label: string;
  nativeNs: number;
  shimNs: number;
  ratio: number;
  target: number | null;
  met: boolean;
}

export interface LookupFigure {
  metric: string;
  label: string;
  p50Ns: number;
  p99Ns: number;
  p50Target: number | null;
  met: boolean;
}

export interface AbsoluteFigure {
  metric: string;
  label: string;
  ns: number;
  targetNs: number;
  met: boolean;
}

/** A size's lookups; the bound (and met) only at the size the issue sets it. */
export interface ScaleLookup extends LookupFigures {
  target: { p50Ns: number; p99Ns: number } | null;
  met: boolean | null;
}

export interface ScaleAlloc extends AllocFigures {
  targetPerSecond: number | null;
  met: boolean | null;
}

/** A table a stage adds to the report as it is, on the terminal and in
 * the markdown (for a stage with no table of its own here). */
export interface ReportTable {
  title: string;
  head: string[];
  rows: string[][];
}

/** What one stage measured, at which sizes, and how long it took. */
export interface StageRun {
  name: string;
  measures: string;
  seconds: number;
}

export interface Results {
  date: string;
  /** --full (every size and round) or the default run. */
  full: boolean;
  /** The stages in the order they ran. */
  stages: StageRun[];
  /** Rounds of the per-call drivers. */
  rounds: number;
  calls: CallFigure[];
  lookups: LookupFigure[];
  absolute: AbsoluteFigure[];
  scale: { lookups: ScaleLookup[]; allocation: ScaleAlloc[] };
  pool: PoolFigures[];
  snapshot: SnapFigures[];
  /** Whole-process snapshot and restore (bench/checkpoint.ts; its table is in tables). */
  checkpoint?: CheckpointFigures[];
  clone: CloneFigures[];
  /** Absent in results of before the info stage. */
  info?: InfoFigures;
  inspector: InspectFigures;
  /** The tables of stages that have none of their own below. */
  tables?: ReportTable[];
  raw: unknown;
}

export interface CheckpointFigures {
  mib: number;
  /** From starting the program to its "ready", and the part of that it spent writing its memory. */
  coldNativeMs: number;
  coldShimMs: number;
  buildMs: number;
  /** null when the engine is not there. */
  pauseMs: number | null;
  snapshotMs: number | null;
  snapshotWallMs: number | null;
  imageBytes: number | null;
  writeGBps: number | null;
  /** From starting `appshot restore` to the program's first wake-up; and the command's own figure. */
  restoreToRunningMs: number | null;
  restoreMs: number | null;
  /** The same with --map-pages (private memory mapped from the image). */
  mappedToRunningMs: number | null;
  mappedMs: number | null;
}
