/**
 * One stage of `npm run bench` (bench/run.ts): a scenario measured natively
 * (or directly) and under appshot in the same run. A bench file joins the
 * run by exporting a Stage and being named once in STAGES in bench/run.ts;
 * the stage picks its own sizes for the default run and for --full.
 */
import type { Results } from './report.js';

export interface BenchContext {
  /** --full: every size and round (about 20 minutes on 2 cores); else the
   * default run's fewer rounds and smaller sizes (at most 5 minutes). */
  full: boolean;
  /** A home of the run's own for the stages that share one (each may
   * also make its own); removed after the run. */
  home: string;
  /** A progress line of its own, under the stage's. */
  progress(line: string): void;
}

export interface Stage {
  /** Its name on its progress line and in the results JSON. */
  name: string;
  /** What it measures, at the sizes this run uses: its progress line. */
  describe(full: boolean): string;
  /** Its figures, merged into the run's results (report.ts shows them:
   * a stage with no table of its own there returns `tables`). */
  run(ctx: BenchContext): Promise<StageFigures>;
}

/** Part of the results; scale is merged one level down (two stages fill it). */
export type StageFigures = { [K in keyof Results]?: K extends 'scale' ? Partial<Results['scale']> : Results[K] };

/** Figures a stage's default run and --full take, picked by the run. */
export const sized = <T>(full: boolean, sizes: { default: T; full: T }): T => (full ? sizes.full : sizes.default);
