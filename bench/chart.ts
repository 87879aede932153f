/**
 * A horizontal bar chart as plain SVG, written by hand (a chart library
 * would be a dependency for forty lines). Each panel has one row per
 * figure: its bar on a log axis (ratios near 1 and ratios of 10 or 0.03
 * both stay readable), a black tick at its target, and the figure in text
 * beside it; a bar is green when it meets its target, red when it misses
 * it, grey when it has none.
 */

export interface Bar {
  label: string;
  value: number;
  /** Where the target is on the axis; null when there is none. */
  tick: number | null;
  met: boolean | null;
  /** The figure as a person reads it, written beside the bar. */
  text: string;
}

export interface Panel {
  title: string;
  /** Under the axis: what its numbers mean. */
  axis: string;
  bars: Bar[];
  /** The axis starts here: smaller values are drawn as a stub (their text says what they are). */
  from: number;
  /** A dashed reference line (1 for "as fast as native"). */
  reference?: number;
}

const FONT = 12;
const CHAR = 6.7; // average width of a 12 px sans-serif character, for layout
const ROW = 22;
const BAR = 14;
const PLOT = 480;
const TEXT = 190;
const COLOR = { met: '#2e7d32', missed: '#c62828', none: '#9e9e9e' };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const colorOf = (met: boolean | null) => (met === null ? COLOR.none : met ? COLOR.met : COLOR.missed);

/** 1, 2 and 5 times powers of ten from lo to hi. */
function gridValues(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); 10 ** e <= hi; e++)
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(2)));
    }
  return out;
}

/** The axis end: the next 1-2-5 value past everything drawn. */
function axisEnd(panel: Panel): number {
  const top = Math.max(...panel.bars.flatMap((b) => [b.value, b.tick ?? 0]), panel.reference ?? 0) * 1.05;
  for (let e = Math.floor(Math.log10(top)); ; e++) for (const m of [1, 2, 5]) if (m * 10 ** e >= top) return m * 10 ** e;
}

function drawPanel(panel: Panel, labelW: number, top: number): { svg: string; height: number } {
  const lo = panel.from;
  const hi = axisEnd(panel);
  const x = (v: number) => Math.round(10 * (labelW + (PLOT * Math.log(Math.max(v, lo) / lo)) / Math.log(hi / lo))) / 10;
  const rowsTop = top + 26;
  const bottom = rowsTop + panel.bars.length * ROW;
  const out: string[] = [`<text x="8" y="${top + 16}" font-weight="bold" font-size="${FONT + 2}">${esc(panel.title)}</text>`];
  for (const v of gridValues(lo, hi)) {
    out.push(`<line x1="${x(v)}" y1="${rowsTop}" x2="${x(v)}" y2="${bottom}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${x(v)}" y="${bottom + 14}" text-anchor="middle" fill="#555">${v}</text>`);
  }
  if (panel.reference !== undefined)
    out.push(`<line x1="${x(panel.reference)}" y1="${rowsTop}" x2="${x(panel.reference)}" y2="${bottom}" stroke="#555" stroke-dasharray="4 3"/>`);
  panel.bars.forEach((b, i) => {
    const y = rowsTop + i * ROW;
    const label = b.label.length * CHAR > labelW - 16 ? b.label.slice(0, Math.floor((labelW - 16) / CHAR) - 1) + '…' : b.label;
    const end = Math.max(x(b.value), labelW + 2);
    out.push(`<g><title>${esc(`${b.label}: ${b.text}`)}</title>`);
    out.push(`<text x="${labelW - 8}" y="${y + ROW / 2 + 4}" text-anchor="end">${esc(label)}</text>`);
    out.push(`<rect x="${labelW}" y="${y + (ROW - BAR) / 2}" width="${end - labelW}" height="${BAR}" fill="${colorOf(b.met)}"/>`);
    if (b.tick !== null) out.push(`<line x1="${x(b.tick)}" y1="${y + 2}" x2="${x(b.tick)}" y2="${y + ROW - 2}" stroke="#000" stroke-width="2.5"/>`);
    out.push(`<text x="${Math.max(end, b.tick === null ? 0 : x(b.tick)) + 6}" y="${y + ROW / 2 + 4}">${esc(b.text)}</text></g>`);
  });
  out.push(`<text x="${labelW + PLOT / 2}" y="${bottom + 30}" text-anchor="middle" fill="#555">${esc(panel.axis)}</text>`);
  return { svg: out.join('\n'), height: bottom + 44 - top };
}

function legend(y: number): string {
  const items = [
    ['met its target', COLOR.met],
    ['missed it', COLOR.missed],
    ['no target', COLOR.none],
  ];
  const parts = items.map(([text, color], i) => `<rect x="${8 + i * 130}" y="${y - 10}" width="12" height="12" fill="${color}"/><text x="${24 + i * 130}" y="${y}">${text}</text>`);
  parts.push(`<line x1="${8 + 3 * 130 + 6}" y1="${y - 12}" x2="${8 + 3 * 130 + 6}" y2="${y + 3}" stroke="#000" stroke-width="2.5"/><text x="${24 + 3 * 130}" y="${y}">the target</text>`);
  return parts.join('\n');
}

export function barChart(title: string, panels: Panel[]): string {
  const longest = Math.max(...panels.flatMap((p) => p.bars.map((b) => b.label.length)));
  const labelW = Math.min(Math.ceil(longest * CHAR) + 16, 420);
  const width = labelW + PLOT + TEXT;
  const body: string[] = [`<text x="8" y="22" font-weight="bold" font-size="${FONT + 4}">${esc(title)}</text>`, legend(44)];
  let y = 56;
  for (const p of panels) {
    const { svg, height } = drawPanel(p, labelW, y);
    body.push(svg);
    y += height + 8;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="Helvetica, Arial, sans-serif" font-size="${FONT}">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
