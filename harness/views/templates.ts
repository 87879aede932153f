import type { Template } from '../../ts/template.js';
import { type CellFormat, renderRows } from './table.js';

/** What `appshot template inspect` shows: every resource with the class it
 * was given and why, then what the rules personalize (in CSV the resources
 * alone). */
export function renderTemplate(tpl: Template, clones: string[], format: CellFormat): string {
  const m = tpl.meta;
  const rows = tpl.resources.map((r) => {
    const size = r.size !== undefined ? `${r.size} bytes` : r.publicPort ? `public ${r.publicPort}` : '';
    return [r.name, r.class, size, r.why];
  });
  const table = renderRows(['resource', 'class', 'size', 'why'], rows, format, { widths: [null, null, null, 72] });
  if (format === 'csv') return table;
  const lines = [
    `template '${tpl.name}', made ${tpl.createdAt}`,
    `snapshot: ${tpl.snapshot.file} (application '${m.aid}', taken ${m.createdAt} on ${m.host})`,
    `command: ${m.command.join(' ')}`,
    `clones: ${clonesAre(tpl)}`,
    `rules: ${tpl.rulesFile ?? '(none: every resource classified by appshot)'}`,
    table,
  ];
  for (const r of tpl.rules.redirects) lines.push(`redirect ${r.from.text} -> ${r.to.text} (line ${r.from.line})`);
  for (const e of tpl.rules.env) lines.push(`environment ${e.name}=${e.value.text} (line ${e.value.line})`);
  lines.push(`shared segments: ${tpl.shared.length ? tpl.shared.map((s) => `shm ${s.vrid} is system segment ${s.srid}`).join(', ') : 'none'}`);
  lines.push(`running clones: ${clones.length ? clones.join(', ') : 'none'}`);
  return lines.join('\n');
}

/** How the template's clones start: warm (continuing the image's
 * processes) or cold (the command again), and why. */
export function cloneMode(tpl: Template): 'warm' | 'cold' {
  return tpl.warm?.able ? 'warm' : 'cold';
}

function clonesAre(tpl: Template): string {
  const w = tpl.warm;
  if (!tpl.meta.whole) return 'cold: the snapshot holds the IPC state only (--ipc-only), so each clone starts the command';
  if (!w) return 'cold: the template was made before templates kept their image; make it again to clone warm';
  if (w.able)
    return `warm: each clone continues the ${w.processes} process(es) of the image, memory mapped copy-on-write from ${tpl.image!.file} (${(tpl.image!.size / 2 ** 20).toFixed(1)} MiB); --cold starts the command instead`;
  return `cold only (--cold): cannot be cloned warm: ${w.blockers.map((b) => `${b.resource}: ${b.why}`).join('; ')}`;
}

export interface TemplateListRow {
  name: string;
  snapshot: string;
  classes: Record<string, number>;
  sharedBytes: number;
  /** How clones start: warm (continuing the image's processes) or cold. */
  mode: 'warm' | 'cold';
  clones: string[];
}

export function renderTemplateList(rows: TemplateListRow[], format: CellFormat): string {
  if (!rows.length && format !== 'csv') return 'no templates; make one with appshot template create NAME --from SNAPSHOT';
  const cells = rows.map((r) => [
    r.name,
    r.snapshot,
    r.mode,
    Object.entries(r.classes)
      .map(([c, n]) => `${n} ${c}`)
      .join(', '),
    `${(r.sharedBytes / 2 ** 20).toFixed(1)} MiB`,
    r.clones.length ? r.clones.join(', ') : '-',
  ]);
  return renderRows(['template', 'snapshot', 'clones', 'resources', 'shared', 'running clones'], cells, format);
}
