import { type ProcHeader, filesById, readProcessSection } from './checkpoint.js';
import type { SnapMeta } from './snapshot.js';
import { SNAP_VERSION, SnapReader } from './snapfile.js';
import type { MsgRecord } from './sysv/msg.js';
import type { SemRecord } from './sysv/sem.js';
import type { ShmRecord } from './sysv/shm.js';
import type { FwdRow } from './tabledb.js';
import * as S from '../tables/schema.js';

/** What a snapshot holds, read section by section with every checksum
 * checked: what `snapshot inspect` shows and a template is classified from. */
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
  /** A whole image's processes (PROC sections), parents before children. */
  processes: ProcessReport[];
}

export interface ProcessReport {
  vpid: number;
  /** The parent's vpid, 0 when it is outside the application. */
  ppid: number;
  command: string;
  threads: number;
  mappings: { count: number; storedBytes: number };
  descriptors: { fd: number; kind: string }[];
}

/** A process as inspect shows it, its descriptors' kinds from the FILES section. */
function processReport(p: ProcHeader, files: Map<string, { kind?: string }>): ProcessReport {
  const mappings = p.mappings ?? [];
  return {
    vpid: p.vpid,
    ppid: p.ppid ?? 0,
    command: p.cmdline?.length ? p.cmdline.join(' ') : p.comm,
    threads: p.threads?.length ?? 0,
    mappings: { count: mappings.length, storedBytes: mappings.reduce((n, m) => n + Number(m.bytes ?? 0), 0) },
    descriptors: (p.fds ?? []).map((f) => ({ fd: f.fd, kind: files.get(String(f.ofd))?.kind ?? 'unknown' })),
  };
}

const octal = (mode: number) => '0' + mode.toString(8);

/** What a snapshot holds, every checksum checked, nothing restored. */
export function inspectSnapshot(file: string): SnapshotReport {
  const r = new SnapReader(file);
  try {
    const report: SnapshotReport = { file, version: SNAP_VERSION, meta: undefined as unknown as SnapMeta, sections: [], sems: [], segments: [], queues: [], ports: [], processes: [] };
    let files = new Map<string, { kind?: string }>();
    for (let s = r.next(); s; s = r.next()) {
      report.sections.push({ index: s.index, kind: s.kind, offset: s.offset, length: s.length });
      if (s.kind === 'meta') report.meta = r.json<SnapMeta>(s);
      else if (s.kind === 'rows') {
        for (const row of r.json<FwdRow[]>(s))
          if (row.type === S.RT.port) report.ports.push({ proto: S.decodePortId(row.vrid).proto, virtual: S.decodePortId(row.vrid).port, system: S.decodePortId(row.srid).port });
      } else if (s.kind === 'sem') {
        for (const x of r.json<SemRecord[]>(s)) report.sems.push({ vrid: x.vrid, key: x.vkey, nsems: x.values.length, mode: octal(x.mode) });
      } else if (s.kind === 'shm') {
        const { header, bytes, sum } = r.headerOf<ShmRecord>(s);
        r.skipBytes(s, bytes, sum);
        report.segments.push({ vrid: header.vrid, key: header.vkey, size: header.size, mode: octal(header.mode), ...(header.attached ? { attached: header.attached } : {}) });
      } else if (s.kind === 'msg') {
        const q = r.json<MsgRecord>(s);
        const bytes = q.messages.reduce((n, m) => n + Buffer.from(m.data, 'base64').length, 0);
        report.queues.push({ vrid: q.vrid, key: q.vkey, messages: q.messages.length, bytes, mode: octal(q.mode) });
      } else if (s.kind === 'files') files = filesById(readProcessSection(r, s));
      else if (s.kind === 'proc') report.processes.push(processReport(readProcessSection<ProcHeader>(r, s), files));
      else if (s.kind === 'shared') readProcessSection(r, s);
    }
    return report;
  } finally {
    r.close();
  }
}
