import type { SnapshotReport } from '../../ts/snapcontents.js';
import { type CellFormat, renderRows } from './table.js';

const hex = (n: number) => (n ? '0x' + (n >>> 0).toString(16).padStart(8, '0') : 'private');

/** What a snapshot holds: a few lines about it, then its objects and ports
 * (in CSV the objects and ports alone). */
export function renderSnapshot(rep: SnapshotReport, format: CellFormat): string {
  const m = rep.meta;
  const rows: string[][] = [];
  for (const x of rep.sems) rows.push(['sem', String(x.vrid), hex(x.key), `${x.nsems} semaphores`, x.mode]);
  for (const x of rep.segments) rows.push(['shm', String(x.vrid), hex(x.key), `${x.size} bytes`, x.mode]);
  for (const x of rep.queues) rows.push(['msg', String(x.vrid), hex(x.key), `${x.messages} messages, ${x.bytes} bytes`, x.mode]);
  for (const x of rep.ports) rows.push(['port', `${x.virtual}/${x.proto}`, '', `system ${x.system}`, '']);
  const table = renderRows(['type', 'virtual', 'key', 'size', 'mode'], rows, format);
  if (format === 'csv') return table;
  const lines = [
    `${rep.file}: appshot snapshot, format ${rep.version}, ${rep.sections.length} sections, every checksum good`,
    `application '${m.aid}', taken ${m.createdAt} on ${m.host}`,
    `command: ${m.command.join(' ')}`,
    `working directory: ${m.cwd ?? '(no process ran)'}; first process vpid: ${m.firstVpid ?? '-'}`,
  ];
  if (m.publish.length) lines.push(`published: ${m.publish.map((p) => `${p.public}:${p.virtual}`).join(', ')}`);
  if (m.redirects?.length) lines.push(`redirected paths: ${m.redirects.map((r) => `${r.from} -> ${r.to}`).join(', ')}`);
  return [...lines, table].join('\n');
}
