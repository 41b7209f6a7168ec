import { HeraldError, type HeraldEvent } from '@herald/core';
import type { Logger } from 'pino';
import type { HubConfig } from './config/index.ts';
import { createDispatcher, type Dispatcher } from './dispatcher/dispatcher.ts';
import { type FlowMetrics, LogFlow } from './dispatcher/flow.ts';
import { assertArchiveSwitchSafe } from './dispatcher/mode-switch.ts';
import { createIngest, type Ingest, type IngestMetrics, type IngestStats, type SenderCheck } from './ingest/ingest.ts';
import { unreachable } from './ingest/unreachable.ts';
import type { Store } from './store/types.ts';

/** Ingest's counters with the flow's. */
export interface EventPathStats extends IngestStats {
  /** Live events published to `herald.events` and confirmed. */
  forwarded: number;
  /** The highest offset out on `herald.events` (decimal); undefined when not forwarding. */
  dispatched: string | undefined;
}

export interface EventPathOptions {
  config: HubConfig;
  store: Store;
  logger: Logger;
  senderCheck?: SenderCheck | undefined;
  inspect?: ((event: HeraldEvent, userId: unknown) => void) | undefined;
  metrics?: (IngestMetrics & FlowMetrics) | undefined;
}

/**
 * The event path of DESIGN.md §4, in its stages: ingest (RabbitMQ → log) hands each stored run to
 * the flow (log → `herald.events`), which in router mode goes through the dispatcher (pauses and
 * replays). Built and started here, top to bottom, in the order the events travel; stopped in the
 * same order, so each stage finishes what the one before handed it.
 */
export class EventPath {
  /** Router mode: pauses and replays. */
  readonly dispatcher: Dispatcher | undefined;
  /** Log → herald.events, with the checkpoint (in archive mode only to finish what router mode left). */
  readonly flow: LogFlow;
  readonly ingest: Ingest;
  private readonly store: Store;
  private readonly config: HubConfig;

  constructor(o: EventPathOptions) {
    this.config = o.config;
    this.store = o.store;
    let flow: LogFlow | undefined;
    this.dispatcher =
      o.config.mode === 'router'
        ? createDispatcher({
            store: o.store,
            forward: (events, options) => (flow as LogFlow).send(events, options),
            logger: o.logger,
            limits: { maxTtlMs: Math.round(o.config.pauseMaxTtl * 1000), maxActive: o.config.maxPauses },
          })
        : undefined;
    flow = new LogFlow({ amqpUrl: o.config.amqpUrl, store: o.store, logger: o.logger, dispatcher: this.dispatcher, metrics: o.metrics });
    this.flow = flow;
    this.ingest = createIngest({
      config: o.config,
      store: o.store,
      logger: o.logger,
      outlet: flow,
      senderCheck: o.senderCheck,
      inspect: o.inspect,
      metrics: o.metrics,
    });
  }

  /**
   * Starts the stages from the last to the first: the dispatcher (its pauses and replays), the flow
   * (what the log holds above the checkpoint goes out first), then ingest. A switch to archive mode
   * while pauses hold is refused (CONFLICT): it would strand their events.
   */
  async start(): Promise<void> {
    if (this.config.mode === 'archive') await assertArchiveSwitchSafe(this.store);
    await this.dispatcher?.start();
    try {
      await this.flow.start();
    } catch (err) {
      throw err instanceof HeraldError ? err : unreachable(this.config.amqpUrl, err);
    }
    await this.ingest.start();
  }

  /** Stops the stages from the first to the last, each finishing what it was handed. */
  async stop(): Promise<void> {
    await this.ingest.stop().catch(() => undefined);
    await this.flow.stop().catch(() => undefined);
    await this.dispatcher?.stop().catch(() => undefined);
  }

  stats(): EventPathStats {
    const flow = this.flow.stats();
    return { ...this.ingest.stats(), forwarded: flow.forwarded, dispatched: flow.dispatched?.toString() };
  }
}
