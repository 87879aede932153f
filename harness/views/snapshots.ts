import type { SnapshotReport } from '../../ts/snapcontents.js';
import { type CellFormat, renderRows } from './table.js';

const hex = (n: number) => (n ? '0x' + (n >>> 0).toString(16).padStart(8, '0') : 'private');

/** What a snapshot holds: a few lines about it, then its objects and ports,
 * then a whole image's processes and their descriptors (in CSV the objects
 * and ports alone). */
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
  lines.push(
    m.whole
      ? `processes: ${rep.processes.length}, captured whole (a restore continues them)`
      : 'processes: not captured (IPC state only: a restore starts the command again)',
  );
  return [...lines, table, ...processTables(rep, format)].join('\n');
}

/** A whole image's processes, then every descriptor of each. */
function processTables(rep: SnapshotReport, format: CellFormat): string[] {
  if (!rep.processes.length) return [];
  const procs = rep.processes.map((p) => [String(p.vpid), String(p.ppid || '-'), String(p.threads), String(p.mappings.count), mibText(p.mappings.storedBytes), p.command]);
  const fds = rep.processes.flatMap((p) => p.descriptors.map((d) => [String(p.vpid), String(d.fd), d.kind]));
  return [
    '',
    renderRows(['vpid', 'parent', 'threads', 'mappings', 'stored', 'command'], procs, format),
    '',
    renderRows(['vpid', 'fd', 'kind'], fds, format),
  ];
}

function mibText(bytes: number): string {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}
