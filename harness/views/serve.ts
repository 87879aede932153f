import { type ServeState, serveStates } from '../../ts/serve.js';
import { type CellFormat, renderRows } from './table.js';

/** `appshot ps`: each template served (`appshot template serve`), its
 * instances and why each was started, and its latest retirements and why. */

export interface ServeRow {
  state: ServeState;
  /** Whether its serving command runs (else it was killed: its instances
   * run on until the next serve of the template adopts them or gc ends them). */
  running: boolean;
}

export function serveRows(home: string, f: { aid?: string }): ServeRow[] {
  return serveStates(home).filter(
    ({ state }) => f.aid === undefined || state.instances.some((i) => i.aid === f.aid) || state.retired.some((r) => r.aid === f.aid),
  );
}

const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19);

function limits(s: ServeState): string {
  return `${s.min}-${s.max}, idle ${s.idleS} s${s.conns ? `, conns ${s.conns}` : ''}`;
}

/** One line per instance and per retirement, one for a template served by none. */
export function renderServe(rows: ServeRow[], format: CellFormat): string {
  const table: string[][] = [];
  for (const { state: s, running } of rows) {
    const who = running ? `pid ${s.pid}` : `killed (pid ${s.pid}): its instances run on; 'appshot gc' ends them`;
    const head = [s.template, String(s.public), who, limits(s)];
    if (!s.instances.length && !s.retired.length) table.push([...head, '', '', '', '']);
    for (const i of s.instances) {
      const state = i.retiring ? 'retiring' : i.listeningMs !== undefined || i.adopted ? 'serving' : 'starting';
      table.push([...head, i.aid, state, clock(i.startedMs), i.why]);
    }
    for (const r of s.retired) table.push([...head, r.aid, 'retired', clock(r.endedMs), r.why]);
  }
  return renderRows(['TEMPLATE', 'PUBLIC', 'SERVED BY', 'MIN-MAX', 'INSTANCE', 'STATE', 'SINCE', 'WHY'], table, format);
}
