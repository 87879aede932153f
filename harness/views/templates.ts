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
    `rules: ${tpl.rulesFile ?? '(none: every resource classified by appshot)'}`,
    table,
  ];
  for (const r of tpl.rules.redirects) lines.push(`redirect ${r.from.text} -> ${r.to.text} (line ${r.from.line})`);
  for (const e of tpl.rules.env) lines.push(`environment ${e.name}=${e.value.text} (line ${e.value.line})`);
  lines.push(`shared segments: ${tpl.shared.length ? tpl.shared.map((s) => `shm ${s.vrid} is system segment ${s.srid}`).join(', ') : 'none'}`);
  lines.push(`running clones: ${clones.length ? clones.join(', ') : 'none'}`);
  return lines.join('\n');
}

export interface TemplateListRow {
  name: string;
  snapshot: string;
  classes: Record<string, number>;
  sharedBytes: number;
  clones: string[];
}

export function renderTemplateList(rows: TemplateListRow[], format: CellFormat): string {
  if (!rows.length && format !== 'csv') return 'no templates; make one with appshot template create NAME --from SNAPSHOT';
  const cells = rows.map((r) => [
    r.name,
    r.snapshot,
    Object.entries(r.classes)
      .map(([c, n]) => `${n} ${c}`)
      .join(', '),
    `${(r.sharedBytes / 2 ** 20).toFixed(1)} MiB`,
    r.clones.length ? r.clones.join(', ') : '-',
  ]);
  return renderRows(['template', 'snapshot', 'resources', 'shared', 'running clones'], cells, format);
}
