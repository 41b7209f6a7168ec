import { randomBytes } from 'node:crypto';
import { type BaselineFigures, runBaseline } from './baseline.ts';
import { type HeraldFigures, type ReceiverResult, runHerald } from './herald-run.ts';
import { type BenchOptions, safeUrl } from './options.ts';
import { createPlan } from './plan.ts';

/**
 * The report of one run; `--json` prints exactly this. Fields beyond the contract
 * (sent, receivers[kind, selector, expected, received, lost, duplicates, reordered, latencyMs, throughput], ok)
 * are additions: never rename those.
 */
export interface BenchReport {
  /** The run id: in every event's data and in the names of the run's queues. */
  run: string;
  /** Confirmed publishes. */
  sent: number;
  receivers: ReceiverResult[];
  /** False when anything was lost, reordered, misrouted, or failed to publish. */
  ok: boolean;
  /** Publishes that failed. */
  failed: number;
  /** Confirmed publishes per sender × type. */
  sentBy: Record<string, Record<string, number>>;
  /** Herald publish throughput (first publish to last confirm) and duration. */
  publish: { throughput: number; durationMs: number };
  config: { senders: number; types: number; rate: number | 'max'; count?: number; durationMs?: number; size: number; seed: number };
  /** Raw amqplib on the same broker and load (with --baseline). */
  baseline?: BaselineFigures;
  /** Herald ÷ baseline: publish throughput, and end-to-end throughput of the `all` receiver. */
  ratios?: { publishThroughput: number; endToEndThroughput: number };
}

const ratio = (a: number, b: number) => (b > 0 ? Math.round((a / b) * 1000) / 1000 : 0);

/** Whether a run is clean: nothing lost, reordered, misrouted or failed. Duplicates are allowed (at least once). */
export function isOk(h: Pick<HeraldFigures, 'failed' | 'receivers'>, baseline?: BaselineFigures): boolean {
  const clean = h.failed === 0 && h.receivers.every((r) => r.lost === 0 && r.reordered === 0 && r.unexpected === 0);
  return clean && (baseline === undefined || (baseline.lost === 0 && baseline.reordered === 0));
}

/**
 * Runs the bench: the Herald part, then (with `baseline`) raw amqplib. Progress goes to `log`.
 * Throws NoDeliveryError when events do not reach herald.events, and whatever the broker throws
 * when it cannot be reached; the run's queues are deleted in every case.
 */
export async function runBench(opts: BenchOptions, log: (line: string) => void): Promise<BenchReport> {
  const plan = createPlan(opts.senders, opts.types, opts.seed);
  const runId = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const url = safeUrl(opts.url);
  log(
    `run ${runId} on ${url}: ${opts.senders} senders × ${opts.types} types, ${opts.count !== undefined ? `${opts.count} events` : `${(opts.durationMs ?? 0) / 1000} s`}, rate ${opts.rate}, ${opts.size} B`,
  );
  const herald = await runHerald(opts, plan, runId, log, url);
  let baseline: BaselineFigures | undefined;
  if (opts.baseline) baseline = await runBaseline(opts, plan, runId, log);
  const all = herald.receivers.find((r) => r.kind === 'all');
  const config: BenchReport['config'] = { senders: opts.senders, types: opts.types, rate: opts.rate, size: opts.size, seed: opts.seed };
  if (opts.count !== undefined) config.count = opts.count;
  if (opts.durationMs !== undefined) config.durationMs = opts.durationMs;
  const report: BenchReport = {
    run: runId,
    sent: herald.sent,
    receivers: herald.receivers,
    ok: isOk(herald, baseline),
    failed: herald.failed,
    sentBy: herald.sentBy,
    publish: herald.publish,
    config,
  };
  if (baseline) {
    report.baseline = baseline;
    report.ratios = {
      publishThroughput: ratio(herald.publish.throughput, baseline.publishThroughput),
      endToEndThroughput: ratio(all?.throughput ?? 0, baseline.endToEndThroughput),
    };
  }
  return report;
}

/** The report as a table for people. */
export function formatReport(r: BenchReport): string {
  const head = ['receiver', 'selector', 'expected', 'received', 'lost', 'dup', 'reorder', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'ev/s'];
  const rows = r.receivers.map((x) => [
    x.kind,
    x.selector.join(','),
    String(x.expected),
    String(x.received),
    String(x.lost),
    String(x.duplicates),
    String(x.reordered),
    x.latencyMs.p50.toFixed(2),
    x.latencyMs.p90.toFixed(2),
    x.latencyMs.p99.toFixed(2),
    x.latencyMs.max.toFixed(2),
    x.throughput.toFixed(0),
  ]);
  if (r.baseline) {
    const b = r.baseline;
    rows.push([
      'amqplib',
      '(one queue)',
      String(b.sent),
      String(b.received),
      String(b.lost),
      String(b.duplicates),
      String(b.reordered),
      b.latencyMs.p50.toFixed(2),
      b.latencyMs.p90.toFixed(2),
      b.latencyMs.p99.toFixed(2),
      b.latencyMs.max.toFixed(2),
      b.endToEndThroughput.toFixed(0),
    ]);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(head), ...rows.map(line), ''];
  out.push(`sent ${r.sent} (failed ${r.failed}); Herald publish ${r.publish.throughput.toFixed(0)} ev/s over ${r.publish.durationMs} ms`);
  if (r.baseline && r.ratios) {
    out.push(
      `amqplib publish ${r.baseline.publishThroughput.toFixed(0)} ev/s, end to end ${r.baseline.endToEndThroughput.toFixed(0)} ev/s; ` +
        `Herald/amqplib: publish ${r.ratios.publishThroughput}, end to end ${r.ratios.endToEndThroughput}`,
    );
  }
  out.push(r.ok ? 'ok: nothing lost or reordered' : 'NOT OK: events were lost, reordered, misrouted or failed to publish');
  return `${out.join('\n')}\n`;
}
