import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatSoakSummary, linearFit, percentile, type SoakSample, steadyRates, steadySpan, summarizeSoak } from './soak-stats.ts';

test('linearFit: the least-squares line, slope 0 when x does not vary', () => {
  const fit = linearFit([0, 1, 2, 3], [1, 3, 5, 7]);
  assert.equal(fit.slope, 2);
  assert.equal(fit.intercept, 1);
  // Noise around y = 10 - x/2: the line goes through the means.
  const noisy = linearFit([0, 2, 4, 6], [10.5, 8.5, 8.5, 6.5]);
  assert.equal(noisy.slope, -0.6);
  assert.ok(Math.abs(noisy.intercept - 10.3) < 1e-9);
  assert.deepEqual(linearFit([5, 5, 5], [1, 2, 3]), { slope: 0, intercept: 2 });
  assert.deepEqual(linearFit([], []), { slope: 0, intercept: 0 });
});

test('percentile: nearest rank over unsorted values, undefined for none', () => {
  const xs = [9, 1, 8, 2, 7, 3, 6, 4, 5, 10];
  assert.equal(percentile(xs, 50), 5);
  assert.equal(percentile(xs, 90), 9);
  assert.equal(percentile(xs, 99), 10);
  assert.equal(percentile(xs, 0), 1);
  assert.equal(percentile(xs, 100), 10);
  assert.equal(percentile([4], 99), 4);
  assert.equal(percentile([], 50), undefined);
  assert.deepEqual(xs, [9, 1, 8, 2, 7, 3, 6, 4, 5, 10], 'the input is not sorted in place');
});

const sample = (t: number, over: Partial<SoakSample> = {}): SoakSample => ({
  t,
  sent: 0,
  confirmed: 0,
  head: 0,
  received: 0,
  grpc: undefined,
  rssMiB: 100,
  delayP50Ms: 10,
  delayP99Ms: 12,
  delayMaxMs: 15,
  ingestMessages: 500,
  ...over,
});

/** A run of `seconds` at `rate` events/s with a window of 1,000, then a drain of one second. */
function run(seconds: number, rate: number, over: (t: number) => Partial<SoakSample> = () => ({})): SoakSample[] {
  const count = seconds * rate;
  const out = [sample(0, { sent: 1000, confirmed: 1000, ...over(0) })];
  for (let t = 1; t <= seconds; t++) {
    const received = t * rate;
    const sent = Math.min(count, received + 1000);
    out.push(sample(t, { sent, confirmed: sent, head: received, received, ...over(t) }));
  }
  out.push(sample(seconds + 1, { sent: count, confirmed: count, head: count, received: count, ...over(seconds + 1) }));
  return out;
}

test('steadyRates: from the first receipt to the last second before everything was sent', () => {
  const samples = [
    sample(0, { sent: 1000 }),
    sample(1, { sent: 1500, received: 0 }),
    sample(2, { sent: 2500, received: 1000 }),
    sample(3, { sent: 3500, received: 3000 }),
    sample(4.5, { sent: 4000, received: 3300 }),
    sample(5.5, { sent: 4000, received: 4000 }),
  ];
  // 1→2 starts before the first receipt; 4.5→5.5 is the drain after the last send.
  assert.deepEqual(steadySpan(samples, 4000), { from: 2, to: 4 });
  assert.deepEqual(steadyRates(samples, 4000), [2000, 200]);
  assert.equal(steadySpan([sample(0), sample(1)], 10), undefined);
  assert.deepEqual(steadyRates([sample(0), sample(1)], 10), []);
});

test('summarizeSoak: a flat run is flat, steady and lossless', () => {
  const samples = run(100, 1000, (t) => ({ rssMiB: 200 + (t % 3), delayP99Ms: t === 50 ? 80 : 12, delayMaxMs: t === 50 ? 120 : 15 }));
  const s = summarizeSoak(samples, 100_000, { confirmed: 100_000, missingInLog: 0, missingAtReceiver: 0, missingAtGrpc: undefined });
  assert.equal(s.events, 100_000);
  assert.equal(s.durationS, 101);
  assert.equal(s.rate.median, 1000);
  assert.equal(s.rate.min, 1000);
  assert.equal(s.rss.startMiB, 200);
  assert.equal(s.rss.maxMiB, 202);
  assert.ok(Math.abs(s.rss.perMinute) < 0.5, `perMinute ${s.rss.perMinute}`);
  assert.equal(s.rss.trend, 'flat');
  assert.equal(s.delayMs.p50, 10);
  assert.equal(s.delayMs.p99, 12);
  assert.equal(s.delayMs.worstP99, 80);
  assert.equal(s.delayMs.max, 120);
  assert.equal(s.backlog.max, 500);
  assert.equal(s.backlog.grows, false);
  assert.deepEqual(s.lost, { log: 0, receiver: 0, grpc: undefined });
  const text = formatSoakSummary(s);
  assert.match(text, /100,000 in 101\.0 s/);
  assert.match(text, /\(flat\)/);
  assert.match(text, /\(steady\)/);
  assert.doesNotMatch(text, /gRPC/);
});

test('summarizeSoak: memory and a backlog that climb in the second half are reported as growing', () => {
  // +1 MiB per second = +1 MiB per 1,000 events = 100 MiB per 100k events; the backlog +100 per second.
  const samples = run(100, 1000, (t) => ({ rssMiB: 200 + t, ingestMessages: 100 * t }));
  const s = summarizeSoak(samples, 100_000, { confirmed: 100_000, missingInLog: 2, missingAtReceiver: 3, missingAtGrpc: 1 });
  assert.ok(Math.abs(s.rss.perMinute - 60) < 1e-9, `perMinute ${s.rss.perMinute}`);
  assert.ok(Math.abs(s.rss.perHundredThousandEvents - 100) < 1e-6, `${s.rss.perHundredThousandEvents}`);
  assert.equal(s.rss.trend, 'grows');
  assert.equal(s.rss.endMiB, 301);
  assert.equal(s.backlog.max, 10_100);
  assert.ok(Math.abs(s.backlog.perMinute - 6000) < 1e-6);
  assert.equal(s.backlog.grows, true);
  assert.deepEqual(s.lost, { log: 2, receiver: 3, grpc: 1 });
  const text = formatSoakSummary(s);
  assert.match(text, /GROWS.*\n.*\n.*GROWS/);
  assert.match(text, /lost {8}log 2, receiver 3, gRPC subscription 1/);
});

test('summarizeSoak: memory released in the second half falls, and the backlog emptying does not grow', () => {
  const samples = run(100, 1000, (t) => ({ rssMiB: 400 - 2 * t, ingestMessages: Math.max(0, 5000 - 50 * t) }));
  const s = summarizeSoak(samples, 100_000, { confirmed: 100_000, missingInLog: 0, missingAtReceiver: 0, missingAtGrpc: undefined });
  assert.equal(s.rss.trend, 'falls');
  assert.ok(Math.abs(s.rss.perMinute + 120) < 1e-9, `perMinute ${s.rss.perMinute}`);
  assert.equal(s.backlog.max, 5000);
  assert.equal(s.backlog.grows, false);
  assert.match(formatSoakSummary(s), /MiB\/min \(falls\)/);
});

test('summarizeSoak: no samples and no figures leave the fields undefined rather than invent them', () => {
  const s = summarizeSoak([], 10, { confirmed: 0, missingInLog: 0, missingAtReceiver: 0, missingAtGrpc: undefined });
  assert.equal(s.durationS, 0);
  assert.equal(s.rate.overall, 0);
  assert.equal(s.rate.median, undefined);
  assert.equal(s.rss.maxMiB, undefined);
  assert.equal(s.delayMs.p99, undefined);
  assert.match(formatSoakSummary(s), /delay p50 – ms/);
});
