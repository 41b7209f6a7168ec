import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  replaceSummary,
  SUMMARY_END,
  SUMMARY_START,
  type SummaryMeta,
  type SummaryRow,
  spread,
  summaryMarkdown,
  summarySvg,
} from './summary.ts';

const rows: SummaryRow[] = [
  { path: 'raw amqplib', perSec: spread([18000, 17000, 19500]), ratio: spread([1, 1, 1]), p50: spread([0.3]), p99: spread([2.5]), lost: 0 },
  {
    path: 'Herald <router> & "hub"',
    perSec: spread([5400, 5100, 5800]),
    ratio: spread([0.31, 0.29, 0.33]),
    p50: spread([2.1, 1.9]),
    p99: spread([16.6, 12.25, 40]),
    hubRssMiB: 268,
    lost: 0,
  },
  { path: 'NATS JetStream', perSec: spread([]), ratio: spread([]), p50: spread([]), p99: spread([]), lost: 3 },
];

const meta: SummaryMeta = {
  command: 'npm run bench',
  date: new Date('2026-12-07T14:40:00Z'),
  machine: { cores: 2, node: 'v20.20.0', rabbitmq: '3.10.7', nats: '2.9.10', PostgreSQL: '15.4' },
  rounds: 3,
  flatCount: 30000,
  pacedSeconds: 10,
  seconds: 412,
  load: [1.5, 2.25],
  commit: 'abc1234',
};

/**
 * A strict enough well-formedness check for what summarySvg writes: one root, tags nested and
 * closed, attributes quoted, every `&` an entity, no stray `<` or `>` in text.
 */
function assertWellFormedXml(xml: string): void {
  const stack: string[] = [];
  let roots = 0;
  const tokens = xml.split(/(<[^<>]*>)/);
  for (const tok of tokens) {
    if (tok.startsWith('<')) {
      const m = /^<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<&]*(?:&(?:amp|lt|gt|quot|apos);[^"<&]*)*")*)\s*(\/?)>$/.exec(tok);
      assert.ok(m, `malformed tag ${tok}`);
      const [, closing, name, , selfClosing] = m;
      if (closing) assert.equal(stack.pop(), name, `</${name}> closes another element`);
      else {
        if (stack.length === 0) roots += 1;
        if (!selfClosing) stack.push(name!);
      }
    } else {
      assert.ok(!/[<>]/.test(tok), `stray angle bracket in ${JSON.stringify(tok)}`);
      assert.ok(!/&(?!(?:amp|lt|gt|quot|apos|#\d+);)/.test(tok), `bare & in ${JSON.stringify(tok)}`);
      if (stack.length === 0) assert.equal(tok.trim(), '', `text outside the root: ${JSON.stringify(tok)}`);
    }
  }
  assert.deepEqual(stack, [], 'every element closed');
  assert.equal(roots, 1, 'one root element');
}

describe('bench summary', () => {
  it('spread: median of odd and even counts, min and max, non-finite values ignored', () => {
    assert.deepEqual(spread([3, 1, 2]), { median: 2, min: 1, max: 3 });
    assert.deepEqual(spread([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4 });
    assert.deepEqual(spread([5, Number.NaN, Number.POSITIVE_INFINITY]), { median: 5, min: 5, max: 5 });
    assert.ok(Number.isNaN(spread([]).median));
  });

  it('the table has a row per path with median [min–max], ratio, latencies, RSS and loss', () => {
    const md = summaryMarkdown(rows, meta, 'benchmarks.svg');
    assert.ok(md.startsWith(`${SUMMARY_START}\n`) && md.endsWith(`${SUMMARY_END}\n`));
    assert.match(md, /\| raw amqplib \| 18,000 \[17,000–19,500\] \| 1\.00 \| 0\.30 \/ 2\.50 \| — \| 0 \|/);
    assert.match(md, /\| 5,400 \[5,100–5,800\] \| 0\.31 \[0\.29–0\.33\] \| 2\.00 \/ 16\.6 \[12\.3–40\.0\] \| 268 MiB \| 0 \|/);
    assert.match(md, /\| NATS JetStream \| — \| — \| — \/ — \| — \| 3 \|/);
    assert.match(md, /`npm run bench`, run of 2026-12-07 14:40 UTC \(412 s\) at commit `abc1234`, on 2 cores/);
    assert.match(
      md,
      /Node\.js v20\.20\.0, RabbitMQ 3\.10\.7, NATS 2\.9\.10, PostgreSQL 15\.4; 1-minute load average 1\.50 at the start, 2\.25 at the end/,
    );
    assert.match(md, /!\[[^\]]+\]\(benchmarks\.svg\)/);
    const header = md.split('\n').find((l) => l.startsWith('| path'))!;
    for (const line of md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| ---'))) {
      assert.equal(line.replace(/\\\|/g, '').split('|').length, header.split('|').length, `cells of ${line}`);
    }
  });

  it('the chart is well-formed SVG with an explicit background and every figure shown', () => {
    const svg = summarySvg(rows);
    assertWellFormedXml(svg);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="800" height="\d+"/);
    assert.match(svg, /<rect width="800" height="\d+" fill="#ffffff"\/>/, 'an opaque background, for dark themes');
    assert.match(svg, />Herald &lt;router&gt; &amp; &quot;hub&quot;</, 'labels escaped');
    for (const figure of ['>1.00<', '>0.31<', '>0.30 / 2.50 ms<', '>2.00 / 16.6 ms<', '>— / — ms<'])
      assert.ok(svg.includes(figure), figure);
    // The longest ratio bar belongs to the largest ratio; widths are non-negative numbers.
    const widths = [...svg.matchAll(/<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="14"/g)].map((m) => Number(m[1]));
    assert.equal(widths.length, 2, 'one ratio bar per path with a figure');
    assert.ok(widths[0]! > widths[1]! && widths[1]! > 0, String(widths));
  });

  it('replaces only the block between the markers, and inserts it under the title the first time', () => {
    const page = '# Benchmarks\n\nIntro line one\nline two.\n\n## Details\n\nKept.\n';
    const first = replaceSummary(page, summaryMarkdown(rows, meta, 'benchmarks.svg'));
    assert.ok(first.startsWith('# Benchmarks\n\nIntro line one\nline two.\n\n<!-- bench:summary:start -->'), first.slice(0, 120));
    assert.ok(first.endsWith(`${SUMMARY_END}\n\n## Details\n\nKept.\n`));
    const again = replaceSummary(first, `${SUMMARY_START}\nnew\n${SUMMARY_END}\n`);
    assert.equal(again, `# Benchmarks\n\nIntro line one\nline two.\n\n${SUMMARY_START}\nnew\n${SUMMARY_END}\n\n## Details\n\nKept.\n`);
    assert.equal(replaceSummary(again, `${SUMMARY_START}\nnew\n${SUMMARY_END}\n`), again, 'idempotent');
    assert.equal(replaceSummary('', 'B\n'), 'B\n\n');
  });
});
