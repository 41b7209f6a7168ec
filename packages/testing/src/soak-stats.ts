/**
 * The arithmetic of `npm run soak` (scripts/soak.ts), apart from its processes so that it can be
 * tested: a least-squares line, percentiles, per-second rates and the summary of a run's samples.
 */

/** One per-second sample of a soak run. Counts are cumulative since the start of the run. */
export interface SoakSample {
  /** Seconds since the first publish. */
  t: number;
  /** Publishes sent, confirmed by RabbitMQ. */
  sent: number;
  confirmed: number;
  /** The log's head offset (`herald_log_head_offset` of the hub's /metrics). */
  head: number;
  /** Events the receiver queue on herald.events delivered (first deliveries). */
  received: number;
  /** Events the durable gRPC subscription delivered (first deliveries); undefined without one. */
  grpc: number | undefined;
  /** The hub's resident memory, MiB. */
  rssMiB: number | undefined;
  /** The hub's event-loop delay over the second before the sample (prom-client's histogram, reset at each scrape), ms. */
  delayP50Ms: number | undefined;
  delayP99Ms: number | undefined;
  delayMaxMs: number | undefined;
  /** Messages in herald.ingest (ready and unacknowledged) as the management API last counted them. */
  ingestMessages: number | undefined;
  /** CPU time of the hub process and of the soak's own (publishers, receiver, gRPC client) over the second before, % of one core. */
  hubCpuPct?: number | undefined;
  soakCpuPct?: number | undefined;
}

/** y = intercept + slope·x by least squares; slope 0 when x does not vary (or with fewer than two points). */
export function linearFit(xs: readonly number[], ys: readonly number[]): { slope: number; intercept: number } {
  const n = Math.min(xs.length, ys.length);
  if (n === 0) return { slope: 0, intercept: 0 };
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i] as number;
    sy += ys[i] as number;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    const dx = (xs[i] as number) - mx;
    sxx += dx * dx;
    sxy += dx * ((ys[i] as number) - my);
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

/** The p-th percentile (0–100) by nearest rank; undefined for no values. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((Math.min(100, Math.max(0, p)) / 100) * sorted.length);
  return sorted[Math.max(0, rank - 1)];
}

/**
 * The steady part of a run, as indexes of its first and last sample: from the first sample at which
 * the receiver had anything to the first one at which the publishers had sent everything (the drain
 * after it only empties the window). Undefined before the receiver got anything.
 */
export function steadySpan(samples: readonly SoakSample[], count: number): { from: number; to: number } | undefined {
  const from = samples.findIndex((s) => s.received > 0);
  if (from < 0) return undefined;
  let to = samples.length - 1;
  while (to > from && (samples[to - 1] as SoakSample).sent >= count) to--;
  return { from, to };
}

/** Events per second of the receiver's count between consecutive samples of the steady part (steadySpan()). */
export function steadyRates(samples: readonly SoakSample[], count: number): number[] {
  const span = steadySpan(samples, count);
  if (span === undefined) return [];
  const rates: number[] = [];
  for (let i = span.from + 1; i <= span.to; i++) {
    const a = samples[i - 1] as SoakSample;
    const b = samples[i] as SoakSample;
    if (b.t > a.t) rates.push((b.received - a.received) / (b.t - a.t));
  }
  return rates;
}

/** What a soak run found, from its samples and the final accounting. */
export interface SoakSummary {
  /** Events confirmed by RabbitMQ. */
  events: number;
  durationS: number;
  rate: { overall: number; median: number | undefined; min: number | undefined };
  rss: {
    startMiB: number | undefined;
    endMiB: number | undefined;
    maxMiB: number | undefined;
    /** Slopes of the line through the second half of the run's samples. */
    perHundredThousandEvents: number;
    perMinute: number;
    /** `flat` when the line's rise or fall over the second half is under 5% of the mean RSS there. */
    trend: 'flat' | 'grows' | 'falls';
  };
  delayMs: { p50: number | undefined; p99: number | undefined; worstP99: number | undefined; max: number | undefined };
  backlog: { max: number; perMinute: number; grows: boolean };
  lost: { log: number; receiver: number; grpc: number | undefined };
}

/** The final accounting of a run: of `confirmed` events, how many the log, the receiver and the gRPC subscription miss. */
export interface SoakAccounting {
  confirmed: number;
  missingInLog: number;
  missingAtReceiver: number;
  missingAtGrpc: number | undefined;
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
const defined = (xs: readonly (number | undefined)[]) => xs.filter((x): x is number => x !== undefined && Number.isFinite(x));

/**
 * Summarizes a run. The rates are those of steadyRates(); memory is fitted over the samples of the
 * second half (by time) of the steady part, against the receiver's count (MiB per 100,000 events) and against
 * time (MiB per minute); the event-loop delay is the median of the per-second p50 and p99, the
 * largest per-second p99 and the largest delay seen; the backlog (herald.ingest) is fitted over the
 * second half too and grows when that line rises by more than a tenth of its maximum, and by more
 * than 1,000 events, over that half.
 */
export function summarizeSoak(samples: readonly SoakSample[], count: number, accounting: SoakAccounting): SoakSummary {
  const last = samples[samples.length - 1];
  const durationS = last?.t ?? 0;
  const rates = steadyRates(samples, count);
  const span = steadySpan(samples, count);
  const steady = span === undefined ? [] : samples.slice(span.from, span.to + 1);
  const middle = ((steady[0]?.t ?? 0) + (steady[steady.length - 1]?.t ?? 0)) / 2;
  const half = steady.filter((s) => s.t >= middle);
  const rssHalf = half.filter((s) => s.rssMiB !== undefined);
  const rssValues = rssHalf.map((s) => s.rssMiB as number);
  const byEvents = linearFit(
    rssHalf.map((s) => s.received),
    rssValues,
  );
  const byTime = linearFit(
    rssHalf.map((s) => s.t),
    rssValues,
  );
  const halfSpan = rssHalf.length > 1 ? (rssHalf[rssHalf.length - 1] as SoakSample).t - (rssHalf[0] as SoakSample).t : 0;
  const rssRise = byTime.slope * halfSpan;
  const rssAll = defined(samples.map((s) => s.rssMiB));
  const backlogHalf = half.filter((s) => s.ingestMessages !== undefined);
  const backlogFit = linearFit(
    backlogHalf.map((s) => s.t),
    backlogHalf.map((s) => s.ingestMessages as number),
  );
  const backlogMax = Math.max(0, ...defined(samples.map((s) => s.ingestMessages)));
  const backlogRise = backlogFit.slope * halfSpan;
  const p50s = defined(samples.map((s) => s.delayP50Ms));
  const p99s = defined(samples.map((s) => s.delayP99Ms));
  const maxes = defined(samples.map((s) => s.delayMaxMs));
  return {
    events: accounting.confirmed,
    durationS,
    rate: { overall: durationS > 0 ? accounting.confirmed / durationS : 0, median: percentile(rates, 50), min: percentile(rates, 0) },
    rss: {
      startMiB: rssAll[0],
      endMiB: rssAll[rssAll.length - 1],
      maxMiB: rssAll.length === 0 ? undefined : Math.max(...rssAll),
      perHundredThousandEvents: byEvents.slope * 100_000,
      perMinute: byTime.slope * 60,
      trend: Math.abs(rssRise) < 0.05 * mean(rssValues) ? 'flat' : rssRise > 0 ? 'grows' : 'falls',
    },
    delayMs: {
      p50: percentile(p50s, 50),
      p99: percentile(p99s, 50),
      worstP99: p99s.length === 0 ? undefined : Math.max(...p99s),
      max: maxes.length === 0 ? undefined : Math.max(...maxes),
    },
    backlog: { max: backlogMax, perMinute: backlogFit.slope * 60, grows: backlogRise > Math.max(1000, backlogMax / 10) },
    lost: { log: accounting.missingInLog, receiver: accounting.missingAtReceiver, grpc: accounting.missingAtGrpc },
  };
}

const n0 = (x: number | undefined) => (x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));
const n1 = (x: number | undefined) => (x === undefined ? '–' : x.toFixed(1));
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;

/** The summary as the lines `npm run soak` prints. */
export function formatSoakSummary(s: SoakSummary): string {
  return [
    `events      ${n0(s.events)} in ${n1(s.durationS)} s`,
    `rate        ${n0(s.rate.overall)}/s overall; per second median ${n0(s.rate.median)}, min ${n0(s.rate.min)}`,
    `hub RSS     start ${n0(s.rss.startMiB)} MiB, end ${n0(s.rss.endMiB)}, max ${n0(s.rss.maxMiB)}; second half ${signed(s.rss.perHundredThousandEvents)} MiB per 100k events, ${signed(s.rss.perMinute)} MiB/min (${s.rss.trend === 'grows' ? 'GROWS' : s.rss.trend})`,
    `event loop  delay p50 ${n1(s.delayMs.p50)} ms, p99 ${n1(s.delayMs.p99)} ms (worst second ${n1(s.delayMs.worstP99)}), max ${n1(s.delayMs.max)} ms`,
    `backlog     herald.ingest max ${n0(s.backlog.max)}; second half ${signed(s.backlog.perMinute)}/min (${s.backlog.grows ? 'GROWS' : 'steady'})`,
    `lost        log ${s.lost.log}, receiver ${s.lost.receiver}${s.lost.grpc === undefined ? '' : `, gRPC subscription ${s.lost.grpc}`}`,
  ].join('\n');
}
