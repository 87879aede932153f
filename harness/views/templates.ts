import Table from 'cli-table3';
import type { Template } from '../../ts/template.js';

/** What `appshot template inspect` shows: every resource with the class
 * FIG. 8 gave it and why, then what the rules personalize. */
export function renderTemplate(tpl: Template, clones: string[]): string {
  const m = tpl.meta;
  const lines = [
    `template '${tpl.name}', made ${tpl.createdAt}`,
    `snapshot: ${tpl.snapshot.file} (application '${m.aid}', taken ${m.createdAt} on ${m.host})`,
    `command: ${m.command.join(' ')}`,
    `rules: ${tpl.rulesFile ?? '(none: every resource classified by appshot)'}`,
  ];
  const table = new Table({ head: ['resource', 'class', 'size', 'why'], style: { head: [], border: [] }, wordWrap: true, colWidths: [null, null, null, 72] as unknown as number[] });
  for (const r of tpl.resources) {
    const size = r.size !== undefined ? `${r.size} bytes` : r.publicPort ? `public ${r.publicPort}` : '';
    table.push([r.name, r.class, size, r.why]);
  }
  lines.push(table.toString());
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

export function renderTemplateList(rows: TemplateListRow[]): string {
  if (!rows.length) return 'no templates; make one with appshot template create NAME --from SNAPSHOT';
  const table = new Table({ head: ['template', 'snapshot', 'resources', 'shared', 'running clones'], style: { head: [], border: [] } });
  for (const r of rows)
    table.push([
      r.name,
      r.snapshot,
      Object.entries(r.classes)
        .map(([c, n]) => `${n} ${c}`)
        .join(', '),
      `${(r.sharedBytes / 2 ** 20).toFixed(1)} MiB`,
      r.clones.length ? r.clones.join(', ') : '-',
    ]);
  return table.toString();
}
