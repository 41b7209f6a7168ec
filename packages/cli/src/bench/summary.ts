/**
 * The side-by-side summary that `npm run bench` writes at the top of docs/benchmarks.md: a table
 * of every path measured in alternating rounds (median and min–max of the rounds, each round's
 * ratio to raw amqplib of the same round), the run's command, date and machine, and an SVG chart
 * of the same ratios and latencies. Pure functions: the program measures, these format.
 */

/** Median, min and max of a path's rounds. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The median, min and max of `xs` (NaN throughout for none: shown as a dash). */
export function spread(xs: readonly number[]): Spread {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

/** One path of the summary, over all rounds. */
export interface SummaryRow {
  /** What was measured, e.g. "Herald, hub in router mode (PostgreSQL)". */
  path: string;
  /** End to end flat out, events/s. */
  perSec: Spread;
  /** perSec ÷ raw amqplib's of the same round. */
  ratio: Spread;
  /** Latency at 1,000 events/s, ms. */
  p50: Spread;
  p99: Spread;
  /** Peak RSS of the hub serving this path over its runs, MiB; undefined when no hub is involved. */
  hubRssMiB?: number | undefined;
  /** Events lost over all of this path's runs (expected 0). */
  lost: number;
}

/** What the page says about the run itself. */
export interface SummaryMeta {
  /** The command, e.g. `npm run bench`. */
  command: string;
  /** When the run started. */
  date: Date;
  /** Cores, Node.js, RabbitMQ and NATS versions (and any more: shown in this order). */
  machine: { cores: number; node: string; rabbitmq: string; nats: string; [more: string]: string | number };
  rounds: number;
  /** Events per flat-out run, and seconds per run at 1,000 events/s. */
  flatCount: number;
  pacedSeconds: number;
  /** The run's wall time, s. */
  seconds: number;
  /** 1-minute load average when the run started and when it ended. */
  load: [number, number];
  /** The commit measured, if known. */
  commit?: string | undefined;
  /** A remark to show under the table (e.g. that the machine was busy). */
  note?: string | undefined;
}

export const SUMMARY_START = '<!-- bench:summary:start -->';
export const SUMMARY_END = '<!-- bench:summary:end -->';

const num = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '—';

/** Two significant decimals for latencies below 10 ms, one up to 100, none above. */
function ms(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return num(n, n < 10 ? 2 : n < 100 ? 1 : 0);
}

const withRange = (s: Spread, f: (n: number) => string) =>
  Number.isFinite(s.median) ? (s.min === s.max ? f(s.median) : `${f(s.median)} [${f(s.min)}–${f(s.max)}]`) : '—';

/** The Markdown block that goes between the markers (markers included). */
export function summaryMarkdown(rows: readonly SummaryRow[], meta: SummaryMeta, chart: string): string {
  const m = meta.machine;
  const more = Object.entries(m)
    .filter(([k]) => !['cores', 'node', 'rabbitmq', 'nats'].includes(k))
    .map(([k, v]) => `, ${k} ${v}`)
    .join('');
  const date = meta.date.toISOString().replace('T', ' ').slice(0, 16);
  const lines = [
    SUMMARY_START,
    '<!-- Written by `npm run bench` (bench/bench.ts): edits between these markers are replaced by the next run. -->',
    '',
    '## Side by side',
    '',
    `\`${meta.command}\`, run of ${date} UTC (${meta.seconds} s)${meta.commit ? ` at commit \`${meta.commit}\`` : ''}, on ${m.cores} cores, ` +
      `Node.js ${m.node}, RabbitMQ ${m.rabbitmq}, NATS ${m.nats}${more}; 1-minute load average ${num(meta.load[0], 2)} at the start, ` +
      `${num(meta.load[1], 2)} at the end. ${meta.rounds} ${meta.rounds === 1 ? 'round' : 'rounds'}; in each, every path once flat out (${num(meta.flatCount)} events) and ` +
      `once at 1,000 events/s (${meta.pacedSeconds} s), one path after the other, the order turned by one each round. ` +
      'Figures are the median of the rounds [min–max]; a ratio divides a path’s rate by raw amqplib’s in the same round.',
    '',
    '| path | end to end, events/s | ratio to raw amqplib | p50 / p99 at 1,000/s, ms | hub peak RSS | lost |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.path.replace(/\|/g, '\\|')} | ${withRange(r.perSec, (n) => num(n))} | ${withRange(r.ratio, (n) => num(n, 2))} | ` +
        `${ms(r.p50.median)} / ${withRange(r.p99, ms)} | ${r.hubRssMiB === undefined ? '—' : `${num(r.hubRssMiB)} MiB`} | ${num(r.lost)} |`,
    ),
    '',
    ...(meta.note ? [meta.note, ''] : []),
    `![Ratio to raw amqplib and latency at 1,000 events/s of each path](${chart})`,
    '',
    SUMMARY_END,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * `page` with its summary block replaced by `block`; without markers, the block goes after the
 * page's first heading and its paragraph (or at the top), and the rest is kept as it was.
 */
export function replaceSummary(page: string, block: string): string {
  const start = page.indexOf(SUMMARY_START);
  const end = page.indexOf(SUMMARY_END, start);
  if (start >= 0 && end >= 0) {
    let after = end + SUMMARY_END.length;
    if (page[after] === '\n') after += 1;
    return page.slice(0, start) + block + page.slice(after);
  }
  const title = /^# .*\n(?:\n?(?:[^#\n].*\n)+)?\n?/.exec(page);
  const at = title ? title[0].length : 0;
  const head = page.slice(0, at);
  return `${head}${head && !head.endsWith('\n\n') ? '\n' : ''}${block}\n${page.slice(at)}`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const COLORS = {
  background: '#ffffff',
  text: '#1f2328',
  muted: '#59636e',
  grid: '#d0d7de',
  ratio: '#0969da',
  p50: '#54aeff',
  p99: '#0550ae',
};

/**
 * The chart: for each path a bar of its ratio to raw amqplib (median, with a whisker from min to
 * max), then its p50 and p99 at 1,000 events/s as two bars. Explicit white background and dark
 * ink, so it reads the same in light and dark themes.
 */
export function summarySvg(rows: readonly SummaryRow[], title = 'Herald beside raw amqplib and NATS JetStream'): string {
  const width = 800;
  const labelW = 300;
  const barX = labelW + 10;
  const barW = width - barX - 90;
  const rowH = 22;
  const top = 40;
  const out: string[] = [];
  const text = (x: number, y: number, s: string, attrs = '') =>
    out.push(`<text x="${x}" y="${y}"${attrs ? ` ${attrs}` : ''}>${esc(s)}</text>`);
  const rect = (x: number, y: number, w: number, h: number, fill: string) =>
    out.push(`<rect x="${x.toFixed(1)}" y="${y}" width="${Math.max(0, w).toFixed(1)}" height="${h}" fill="${fill}"/>`);

  text(16, 24, title, 'font-size="15" font-weight="600"');
  // Part 1: ratio to raw amqplib.
  let y = top;
  text(16, y + 12, 'End to end flat out, ratio to raw amqplib in the same round (median, line: min–max)', `fill="${COLORS.muted}"`);
  y += 22;
  const ratioMax = Math.max(1, ...rows.map((r) => (Number.isFinite(r.ratio.max) ? r.ratio.max : 0))) * 1.05;
  const rx = (v: number) => barX + (barW * Math.max(0, v)) / ratioMax;
  const ratioTop = y;
  for (const r of rows) {
    text(barX - 8, y + 15, r.path, 'text-anchor="end"');
    if (Number.isFinite(r.ratio.median)) {
      rect(barX, y + 4, rx(r.ratio.median) - barX, 14, COLORS.ratio);
      out.push(
        `<line x1="${rx(r.ratio.min).toFixed(1)}" y1="${y + 11}" x2="${rx(r.ratio.max).toFixed(1)}" y2="${y + 11}" stroke="${COLORS.text}" stroke-width="1.5"/>`,
      );
    }
    text(Math.max(rx(r.ratio.median), rx(r.ratio.max)) + 6, y + 15, num(r.ratio.median, 2));
    y += rowH;
  }
  out.push(
    `<line x1="${rx(1).toFixed(1)}" y1="${ratioTop}" x2="${rx(1).toFixed(1)}" y2="${y}" stroke="${COLORS.grid}" stroke-dasharray="3 3"/>`,
  );
  // Part 2: latency at 1,000 events/s.
  y += 14;
  text(16, y + 12, 'Latency at 1,000 events/s, ms (medians of the rounds): p50 light, p99 dark', `fill="${COLORS.muted}"`);
  y += 22;
  const latMax = Math.max(1, ...rows.map((r) => (Number.isFinite(r.p99.median) ? r.p99.median : 0))) * 1.05;
  const lx = (v: number) => barX + (barW * Math.max(0, Number.isFinite(v) ? v : 0)) / latMax;
  for (const r of rows) {
    text(barX - 8, y + 17, r.path, 'text-anchor="end"');
    rect(barX, y + 3, lx(r.p50.median) - barX, 9, COLORS.p50);
    rect(barX, y + 13, lx(r.p99.median) - barX, 9, COLORS.p99);
    text(lx(r.p99.median) + 6, y + 17, `${ms(r.p50.median)} / ${ms(r.p99.median)} ms`);
    y += rowH + 4;
  }
  const height = y + 12;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}">`,
    `<rect width="${width}" height="${height}" fill="${COLORS.background}"/>`,
    `<g font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12" fill="${COLORS.text}">`,
    ...out,
    '</g>',
    '</svg>',
    '',
  ].join('\n');
}
