import { DEAD_EXCHANGE, DEAD_QUEUE, EVENTS_EXCHANGE, INGEST_EXCHANGE } from './envelope.ts';

/**
 * How the hub moves events from `herald.ingest` to `herald.events` (DESIGN.md §2): `router` (the
 * hub stores, then forwards) or `archive` (an exchange-to-exchange binding delivers directly).
 */
export type HubMode = 'router' | 'archive';

/** Every hub mode, for validating configuration. */
export const HUB_MODES: readonly HubMode[] = Object.freeze(['router', 'archive']);

/**
 * The RabbitMQ queue type of Herald's durable queues (HERALD_QUEUE_TYPE): `classic` (one node) or
 * `quorum` (replicated over a RabbitMQ cluster, DESIGN.md §7).
 */
export type QueueType = 'classic' | 'quorum';

/** Every queue type, for validating configuration. */
export const QUEUE_TYPES: readonly QueueType[] = Object.freeze(['classic', 'quorum']);

const QUORUM_ARGUMENTS = Object.freeze({ 'x-queue-type': 'quorum' });
const NO_ARGUMENTS = Object.freeze({});

/**
 * The declare arguments that make a durable queue of `type`: none for classic, as Herald's queues
 * were always declared, so that existing queues stay equivalent; `x-queue-type: quorum` for
 * quorum. Quorum queues refuse exclusive, auto-delete and non-durable queues and `x-max-priority`;
 * `x-single-active-consumer`, `x-max-length` and `x-overflow: drop-head` work with both types.
 */
export function queueTypeArguments(type: QueueType): Readonly<Record<string, string>> {
  return type === 'quorum' ? QUORUM_ARGUMENTS : NO_ARGUMENTS;
}

/** An exchange of the wire contract. All of Herald's exchanges are durable topic exchanges. */
export interface ExchangeDeclaration {
  readonly name: string;
  readonly type: 'topic';
  readonly durable: true;
}

/** A queue of the wire contract. */
export interface QueueDeclaration {
  readonly name: string;
  readonly durable: true;
}

/** A binding from exchange `source` to a queue or an exchange `destination`. */
export interface BindingDeclaration {
  readonly destinationKind: 'queue' | 'exchange';
  readonly destination: string;
  readonly source: string;
  readonly pattern: string;
}

/** A description of broker objects, without I/O: the client and the hub each apply it their way. */
export interface Topology {
  readonly exchanges: readonly ExchangeDeclaration[];
  readonly queues: readonly QueueDeclaration[];
  readonly bindings: readonly BindingDeclaration[];
}

/**
 * The hub's queue on `herald.dead` (`#`): every dead letter, the SDK subscribers' included, which
 * the hub keeps in its dead letters. `herald.dead` (the queue) stays for whoever reads it directly.
 */
export const DEAD_STORE_QUEUE = 'herald.dead.store';

const exchange = (name: string): ExchangeDeclaration => Object.freeze({ name, type: 'topic', durable: true });

/**
 * The archive mode's binding herald.ingest → herald.events (`#`). A router hub forwards events
 * itself, so in router mode this binding must be absent or every event would be delivered twice.
 */
export const ARCHIVE_BINDING: BindingDeclaration = Object.freeze({
  destinationKind: 'exchange',
  destination: EVENTS_EXCHANGE,
  source: INGEST_EXCHANGE,
  pattern: '#',
});

const DEAD_BINDING: BindingDeclaration = Object.freeze({
  destinationKind: 'queue',
  destination: DEAD_QUEUE,
  source: DEAD_EXCHANGE,
  pattern: '#',
});

/**
 * What a receiver depends on: `herald.events` to bind its queue to, and the dead letters
 * (`herald.dead` exchange and queue) to send what its handler gives up on. Declaring this never
 * changes how events flow from ingest, so any subscriber may do it whatever the hub's mode.
 */
export const RECEIVER_TOPOLOGY: Topology = Object.freeze({
  exchanges: Object.freeze([exchange(EVENTS_EXCHANGE), exchange(DEAD_EXCHANGE)]),
  queues: Object.freeze([Object.freeze({ name: DEAD_QUEUE, durable: true as const })]),
  bindings: Object.freeze([DEAD_BINDING]),
});

/**
 * The wire topology of DESIGN.md §2 for a hub mode: the exchanges `herald.ingest`, `herald.events`
 * and `herald.dead`, the queue `herald.dead` bound with `#`, and in archive mode the binding
 * herald.ingest → herald.events. The hub's own queues (`herald.ingest`, `herald.store`) belong to
 * the hub and are not here. Throws on an unknown mode rather than guessing one.
 */
export function wireTopology(mode: HubMode = 'router'): Topology {
  if (!HUB_MODES.includes(mode)) throw new TypeError(`unknown hub mode ${JSON.stringify(mode)}: expected router or archive`);
  return Object.freeze({
    exchanges: Object.freeze([exchange(INGEST_EXCHANGE), ...RECEIVER_TOPOLOGY.exchanges]),
    queues: RECEIVER_TOPOLOGY.queues,
    bindings: Object.freeze(mode === 'archive' ? [DEAD_BINDING, ARCHIVE_BINDING] : [DEAD_BINDING]),
  });
}
