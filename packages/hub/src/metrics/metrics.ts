import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DispatcherStats } from '../dispatcher/index.ts';
import type { SubscriptionView } from '../subscriptions/index.ts';
import { countByFlow, DEFAULT_MAX_FLOWS, type Flow, FlowCounts, type Rates, RateWindow } from './flows.ts';

/** How full one in-memory receiver is (its fullest consumer's live buffer). */
export interface ReceiverDepth {
  readonly queue: string;
  readonly messages: number;
  readonly limit: number;
}

/** What the gauges read at each scrape, from the parts of a running hub (undefined: that part is not running). */
export interface MetricsSources {
  headOffset(): bigint | undefined;
  subscriptions(): Promise<readonly SubscriptionView[]> | undefined;
  /** Standby consumers of a subscription (waiting behind the active one). */
  standbys(subscription: string): number;
  receivers(): Promise<readonly ReceiverDepth[]> | undefined;
  dispatcher(): DispatcherStats | undefined;
  amqpConnected(): boolean;
  storeConnected(): boolean;
}

/** A flow in /api/v1/stats. */
export interface FlowStats {
  readonly sender: string;
  readonly type: string;
  readonly in: number;
  readonly out: number;
  readonly rateIn: Rates;
  readonly rateOut: Rates;
  readonly lastSeen: string | null;
}

/** /api/v1/stats. */
export interface StatsSnapshot {
  readonly at: string;
  readonly totals: { readonly in: number; readonly out: number; readonly dead: number; readonly rateIn: Rates; readonly rateOut: Rates };
  readonly flows: readonly FlowStats[];
  readonly subscriptions: readonly {
    readonly name: string;
    readonly state: 'active' | 'sleeping';
    readonly consumer: string | null;
    readonly standbys: number;
    readonly lagEvents: number;
    readonly lagSeconds: number;
    readonly delivered: number;
    readonly rate: Rates;
  }[];
  readonly receivers: readonly (ReceiverDepth & { readonly fill: number })[];
  readonly pauses: { readonly active: number; readonly held: number };
  readonly replays: { readonly active: number };
  readonly headOffset: string | null;
  readonly amqpConnected: boolean;
  readonly storeConnected: boolean;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The hub's metrics (DESIGN.md §9): what the event path counts as it goes (one map lookup per run of
 * a flow, plain numbers: no label hashing on the hot path), turned into Prometheus series only when
 * scraped, and the same as JSON with rates for the dashboard. Gauges read the hub's parts at scrape
 * time through `sources`.
 */
export class HubMetrics {
  readonly registry = new Registry();
  readonly flows: FlowCounts;
  private readonly delivered = new Map<string, number>();
  private readonly dead = new Map<string, number>();
  private readonly appendSeconds: Histogram;
  private readonly batchEvents: Histogram;
  private readonly forwardLatency: Histogram;
  private readonly window = new RateWindow();
  private timer: NodeJS.Timeout | undefined;
  private sources: MetricsSources | undefined;

  constructor(options: { maxFlows?: number | undefined; defaultMetrics?: boolean } = {}) {
    this.flows = new FlowCounts(options.maxFlows ?? DEFAULT_MAX_FLOWS);
    const registers = [this.registry];
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    const self = this;
    const flowCounter = (name: string, help: string, value: (f: Flow) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['sender', 'type'],
        registers,
        collect() {
          this.reset();
          for (const f of self.flows.all()) {
            const v = value(f);
            if (v > 0) this.inc({ sender: f.sender, type: f.type }, v);
          }
        },
      });
    flowCounter('herald_events_ingested_total', 'Events stored in the log, by sender and type (past the cap: other).', (f) => f.in);
    flowCounter(
      'herald_events_forwarded_total',
      'Events published to herald.events, by sender and type (past the cap: other).',
      (f) => f.out,
    );
    new Counter({
      name: 'herald_events_delivered_total',
      help: 'Events delivered to consumers of a durable subscription.',
      labelNames: ['subscription'],
      registers,
      collect() {
        this.reset();
        for (const [subscription, n] of self.delivered) if (n > 0) this.inc({ subscription }, n);
      },
    });
    new Counter({
      name: 'herald_dead_letters_total',
      help: 'Dead letters, by reason.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of self.dead) this.inc({ reason }, n);
      },
    });
    this.appendSeconds = new Histogram({
      name: 'herald_store_append_seconds',
      help: 'Time of one append to the log (one transaction).',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.batchEvents = new Histogram({
      name: 'herald_store_batch_events',
      help: 'Events per append to the log.',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers,
    });
    this.forwardLatency = new Histogram({
      name: 'herald_forward_latency_seconds',
      help: 'From the event time set by its publisher to its publish to herald.events being confirmed.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => Promise<void> | void) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          return collect(this);
        },
      });
    gauge('herald_log_head_offset', 'The highest offset in the log.', [], (g) => {
      const head = self.sources?.headOffset();
      g.set(head === undefined ? 0 : Number(head));
    });
    // One list of the subscriptions per scrape serves the three subscription gauges: the first
    // collected reads it, the others take it.
    let views: Promise<readonly SubscriptionView[]> | undefined;
    const subscriptions = () => {
      views ??= (self.sources?.subscriptions() ?? Promise.resolve([])).finally(() => setImmediate(() => (views = undefined)));
      return views;
    };
    gauge('herald_subscription_lag_events', 'Matching events above the acknowledged offset.', ['subscription'], async (g) => {
      g.reset();
      for (const v of await subscriptions()) g.set({ subscription: v.name }, v.lagEvents);
    });
    gauge('herald_subscription_lag_seconds', 'Age of the oldest unacknowledged matching event.', ['subscription'], async (g) => {
      g.reset();
      for (const v of await subscriptions()) g.set({ subscription: v.name }, v.lagSeconds);
    });
    gauge(
      'herald_subscription_consumers',
      'Consumers of a subscription: the active one (0 when it sleeps: none attached, or its connection broke) and standbys.',
      ['subscription', 'state'],
      async (g) => {
        g.reset();
        for (const v of await subscriptions()) {
          g.set({ subscription: v.name, state: 'active' }, v.state === 'active' ? 1 : 0);
          g.set({ subscription: v.name, state: 'standby' }, self.sources?.standbys(v.name) ?? 0);
        }
      },
    );
    let depths: Promise<readonly ReceiverDepth[]> | undefined;
    const receivers = () => {
      depths ??= (self.sources?.receivers() ?? Promise.resolve([])).finally(() => setImmediate(() => (depths = undefined)));
      return depths;
    };
    gauge(
      'herald_receiver_queue_messages',
      'Live events buffered by an in-memory receiver (its fullest consumer), named herald.sub.<hash> after its selector.',
      ['queue'],
      async (g) => {
        g.reset();
        for (const r of await receivers()) g.set({ queue: r.queue }, r.messages);
      },
    );
    gauge(
      'herald_receiver_queue_limit',
      'The most live events an in-memory receiver buffers per consumer (HERALD_RECEIVER_MAX_LENGTH); beyond, the consumer reads the log.',
      ['queue'],
      async (g) => {
        g.reset();
        for (const r of await receivers()) g.set({ queue: r.queue }, r.limit);
      },
    );
    gauge('herald_pauses_active', 'Pauses that hold events.', [], (g) => g.set(self.sources?.dispatcher()?.holding ?? 0));
    gauge('herald_pause_held_events', 'Events held by pauses and not released yet.', [], (g) => {
      const d = self.sources?.dispatcher();
      g.set(d === undefined ? 0 : Math.max(0, d.held - d.released));
    });
    gauge('herald_replays_active', 'Replays into the flow pending or running.', [], (g) => g.set(self.sources?.dispatcher()?.replays ?? 0));
    gauge('herald_amqp_connected', '1 while the hub is connected to RabbitMQ.', [], (g) => g.set(self.sources?.amqpConnected() ? 1 : 0));
    gauge('herald_store_connected', '1 while the store answers.', [], (g) => g.set(self.sources?.storeConnected() ? 1 : 0));
  }

  /** Starts the per-second snapshots the rates are read from, reading gauges from `sources`. */
  start(sources: MetricsSources): void {
    this.sources = sources;
    if (this.timer) return;
    this.tick();
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  // ---- the event path ----------------------------------------------------------------------------

  /** Events newly stored in the log. */
  stored(events: readonly { sender: string; type: string }[], now = Date.now()): void {
    countByFlow(this.flows, events, (f, n) => {
      f.in += n;
      f.lastIn = now;
    });
  }

  /** Events published to herald.events and confirmed; `time` is the publisher's event time. */
  forwarded(events: readonly { sender: string; type: string; time: number }[], now = Date.now()): void {
    countByFlow(this.flows, events, (f, n) => {
      f.out += n;
    });
    for (const e of events) this.forwardLatency.observe(Math.max(0, (now - e.time) / 1000));
  }

  /** One append to the log took `seconds` for `events` events. */
  appended(seconds: number, events: number): void {
    this.appendSeconds.observe(seconds);
    this.batchEvents.observe(events);
  }

  /** Events handed to a consumer of `subscription`. */
  deliveredTo(subscription: string, n: number): void {
    this.delivered.set(subscription, (this.delivered.get(subscription) ?? 0) + n);
  }

  /** A subscription is gone: its series go too. */
  forgetSubscription(subscription: string): void {
    this.delivered.delete(subscription);
  }

  /** A dead letter, by its reason (the bounded set of dead-letters.ts). */
  deadLetter(reason: string): void {
    this.dead.set(reason, (this.dead.get(reason) ?? 0) + 1);
  }

  // ---- reading -----------------------------------------------------------------------------------

  /** The Prometheus text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private counters(): Map<string, number> {
    const values = new Map<string, number>();
    let totalIn = 0;
    let totalOut = 0;
    for (const f of this.flows.all()) {
      values.set(`in\u0000${f.sender}\u0000${f.type}`, f.in);
      values.set(`out\u0000${f.sender}\u0000${f.type}`, f.out);
      totalIn += f.in;
      totalOut += f.out;
    }
    values.set('in', totalIn);
    values.set('out', totalOut);
    for (const [name, n] of this.delivered) values.set(`sub\u0000${name}`, n);
    return values;
  }

  private tick(): void {
    this.window.snapshot(this.counters(), Date.now());
  }

  /** What /api/v1/stats answers: counts, rates over the last 1, 10 and 60 s, and the gauges. */
  async stats(): Promise<StatsSnapshot> {
    const now = Date.now();
    const s = this.sources;
    const counters = this.counters();
    const rate = (key: string) => this.window.rates(key, counters.get(key) ?? 0, now);
    const [views, depths] = await Promise.all([s?.subscriptions() ?? [], s?.receivers() ?? []]);
    const d = s?.dispatcher();
    const head = s?.headOffset();
    let dead = 0;
    for (const n of this.dead.values()) dead += n;
    return {
      at: new Date(now).toISOString(),
      totals: { in: counters.get('in') ?? 0, out: counters.get('out') ?? 0, dead, rateIn: rate('in'), rateOut: rate('out') },
      flows: this.flows.all().map((f) => ({
        sender: f.sender,
        type: f.type,
        in: f.in,
        out: f.out,
        rateIn: rate(`in\u0000${f.sender}\u0000${f.type}`),
        rateOut: rate(`out\u0000${f.sender}\u0000${f.type}`),
        lastSeen: f.lastIn > 0 ? new Date(f.lastIn).toISOString() : null,
      })),
      subscriptions: views.map((v) => ({
        name: v.name,
        state: v.state,
        consumer: v.consumer ?? null,
        standbys: s?.standbys(v.name) ?? 0,
        lagEvents: v.lagEvents,
        lagSeconds: v.lagSeconds,
        delivered: this.delivered.get(v.name) ?? 0,
        rate: rate(`sub\u0000${v.name}`),
      })),
      receivers: depths.map((r) => ({ ...r, fill: r.limit > 0 ? Math.min(100, (r.messages / r.limit) * 100) : 0 })),
      pauses: { active: d?.holding ?? 0, held: d === undefined ? 0 : Math.max(0, d.held - d.released) },
      replays: { active: d?.replays ?? 0 },
      headOffset: head === undefined ? null : head.toString(),
      amqpConnected: s?.amqpConnected() ?? false,
      storeConnected: s?.storeConnected() ?? false,
    };
  }
}
