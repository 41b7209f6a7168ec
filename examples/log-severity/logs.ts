// The log module of seed 002: a logger that publishes each record as an event of type
// `log.<severity>`, and consumers that count what they receive per type.
import { createPublisher, createSubscriber, type Subscriber } from '@herald/client';

export const SEVERITIES = ['debug', 'info', 'critical', 'error'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** One log record. `run` tells this run's records from anyone else's on the same sender. */
export interface LogRecord {
  readonly run: string;
  readonly seq: number;
  readonly message: string;
}

/** The event map: one type per severity, all with the same payload. */
export type LogEvents = { [S in Severity as `log.${S}`]: LogRecord };

export interface Logger {
  /** Publishes one record; resolves with the event id once RabbitMQ has it on disk. */
  log(severity: Severity, record: LogRecord): Promise<string>;
  /** Waits for every pending publish, then closes the connection. */
  close(): Promise<void>;
}

/**
 * A logger speaking for `sender`. Every record goes to `herald.ingest` with routing key
 * `<sender>.log.<severity>`; the hub stores it and forwards it to `herald.events`, where the
 * routing key takes it to exactly the queues whose selectors match: the severity is the route.
 */
export function createLogger(sender: string): Logger {
  const publisher = createPublisher<LogEvents>({ sender, connectionName: `${sender}-logger` });
  return {
    async log(severity, record) {
      const { id } = await publisher.publish(`log.${severity}`, record, { subject: `${record.run}/${record.seq}` });
      return id;
    },
    close: () => publisher.close(),
  };
}

/** A consumer of some severities: its selector is one pattern per severity, OR-ed. */
export interface LogConsumerSpec {
  readonly name: string;
  readonly severities: readonly Severity[];
}

/** The four consumers of seed 002. */
export const CONSUMERS: readonly LogConsumerSpec[] = [
  { name: 'all', severities: ['debug', 'info', 'critical', 'error'] },
  { name: 'debug-info', severities: ['debug', 'info'] },
  { name: 'critical', severities: ['critical'] },
  { name: 'error', severities: ['error'] },
];

export interface LogConsumer {
  readonly spec: LogConsumerSpec;
  readonly selector: readonly string[];
  /** Distinct events of this run received, per type (`log.debug` …). */
  counts(): Record<string, number>;
  /** Deliveries of an event already counted (at-least-once delivery: counted once, by id). */
  readonly duplicates: number;
  /** Events of other runs on the same sender, left out of the counts. */
  readonly foreign: number;
  /** Resolves once the queue is bound and consuming. */
  readonly ready: Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts one consumer. Its queue is server-named and exclusive: bound for as long as the consumer
 * runs, deleted when it stops, so nothing piles up between runs. `onCount` is called after each
 * new event, so the caller can wait for a positive signal instead of sleeping.
 */
export function startLogConsumer(sender: string, run: string, spec: LogConsumerSpec, onCount: () => void): LogConsumer {
  const selector = spec.severities.map((s) => `${sender}:log.${s}`);
  const seen = new Map<string, Set<string>>();
  let duplicates = 0;
  let foreign = 0;
  const subscriber: Subscriber = createSubscriber<LogEvents>({ selector, connectionName: `${sender}-consumer-${spec.name}` }, (event) => {
    if (event.payload().run !== run) {
      foreign++;
      return;
    }
    const ids = seen.get(event.type) ?? new Set<string>();
    seen.set(event.type, ids);
    if (ids.has(event.id)) duplicates++;
    else ids.add(event.id);
    onCount();
  });
  return {
    spec,
    selector,
    counts: () => Object.fromEntries([...seen].map(([type, ids]) => [type, ids.size])),
    get duplicates() {
      return duplicates;
    },
    get foreign() {
      return foreign;
    },
    ready: subscriber.queue,
    close: () => subscriber.close(),
  };
}
