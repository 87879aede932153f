import Table from 'cli-table3';
import type { SnapshotReport } from '../../ts/snapcontents.js';

const hex = (n: number) => (n ? '0x' + (n >>> 0).toString(16).padStart(8, '0') : 'private');

export function renderSnapshot(rep: SnapshotReport): string {
  const m = rep.meta;
  const lines = [
    `${rep.file}: appshot snapshot, format ${rep.version}, ${rep.sections.length} sections, every checksum good`,
    `application '${m.aid}', taken ${m.createdAt} on ${m.host}`,
    `command: ${m.command.join(' ')}`,
    `working directory: ${m.cwd ?? '(no process ran)'}; first process vpid: ${m.firstVpid ?? '-'}`,
  ];
  if (m.publish.length) lines.push(`published: ${m.publish.map((p) => `${p.public}:${p.virtual}`).join(', ')}`);
  if (m.redirects?.length) lines.push(`redirected paths: ${m.redirects.map((r) => `${r.from} -> ${r.to}`).join(', ')}`);
  const table = new Table({ head: ['type', 'virtual', 'key', 'size', 'mode'], style: { head: [], border: [] } });
  for (const x of rep.sems) table.push(['sem', String(x.vrid), hex(x.key), `${x.nsems} semaphores`, x.mode]);
  for (const x of rep.segments) table.push(['shm', String(x.vrid), hex(x.key), `${x.size} bytes`, x.mode]);
  for (const x of rep.queues) table.push(['msg', String(x.vrid), hex(x.key), `${x.messages} messages, ${x.bytes} bytes`, x.mode]);
  for (const x of rep.ports) table.push(['port', `${x.virtual}/${x.proto}`, '', `system ${x.system}`, '']);
  return [...lines, table.toString()].join('\n');
}
