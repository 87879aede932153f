import Table from 'cli-table3';
import type { MsgRecord, SemRecord, ShmRecord, SnapMeta } from '../ts/snapshot.js';
import { SNAP_VERSION, SnapReader } from '../ts/snapfile.js';
import type { FwdRow } from '../ts/tables.js';
import * as S from './schema.js';

export interface SnapshotReport {
  file: string;
  version: number;
  meta: SnapMeta;
  /** Every section, in file order; each one's checksum held. */
  sections: { index: number; kind: string; offset: number; length: number }[];
  sems: { vrid: number; key: number; nsems: number; mode: string }[];
  segments: { vrid: number; key: number; size: number; mode: string; attached?: { rw: number; ro: number } }[];
  queues: { vrid: number; key: number; messages: number; bytes: number; mode: string }[];
  ports: { proto: string; virtual: number; system: number }[];
}

const octal = (mode: number) => '0' + mode.toString(8);

/** What a snapshot holds, every checksum checked, nothing restored. */
export function inspectSnapshot(file: string): SnapshotReport {
  const r = new SnapReader(file);
  try {
    const report: SnapshotReport = { file, version: SNAP_VERSION, meta: undefined as unknown as SnapMeta, sections: [], sems: [], segments: [], queues: [], ports: [] };
    for (let s = r.next(); s; s = r.next()) {
      report.sections.push({ index: s.index, kind: s.kind, offset: s.offset, length: s.length });
      if (s.kind === 'meta') report.meta = r.json<SnapMeta>(s);
      else if (s.kind === 'rows') {
        for (const row of r.json<FwdRow[]>(s))
          if (row.type === S.RT.port) report.ports.push({ proto: S.decodePortId(row.vrid).proto, virtual: S.decodePortId(row.vrid).port, system: S.decodePortId(row.srid).port });
      } else if (s.kind === 'sem') {
        for (const x of r.json<SemRecord[]>(s)) report.sems.push({ vrid: x.vrid, key: x.vkey, nsems: x.values.length, mode: octal(x.mode) });
      } else if (s.kind === 'shm') {
        const { header, bytes, sum } = r.shmHeader<ShmRecord>(s);
        r.shmSkip(s, bytes, sum);
        report.segments.push({ vrid: header.vrid, key: header.vkey, size: header.size, mode: octal(header.mode), ...(header.attached ? { attached: header.attached } : {}) });
      } else if (s.kind === 'msg') {
        const q = r.json<MsgRecord>(s);
        const bytes = q.messages.reduce((n, m) => n + Buffer.from(m.data, 'base64').length, 0);
        report.queues.push({ vrid: q.vrid, key: q.vkey, messages: q.messages.length, bytes, mode: octal(q.mode) });
      }
    }
    return report;
  } finally {
    r.close();
  }
}

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
