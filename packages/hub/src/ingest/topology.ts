import { ARCHIVE_BINDING, type BindingDeclaration, EVENTS_EXCHANGE, INGEST_EXCHANGE, type Topology, wireTopology } from '@herald/core';
import type { Channel } from 'amqplib';

/** The router mode's queue on `herald.ingest` (durable, single active consumer). */
export const ROUTER_QUEUE = 'herald.ingest';
/** The archive mode's queue on `herald.events`, copied into the log. */
export const ARCHIVE_QUEUE = 'herald.store';
/** Binds everything. */
export const ALL = '#';

/** Declares a topology description from core: exchanges, queues, bindings, in that order. Idempotent. */
export async function applyTopology(ch: Channel, topology: Topology): Promise<void> {
  for (const e of topology.exchanges) await ch.assertExchange(e.name, e.type, { durable: e.durable });
  for (const q of topology.queues) await ch.assertQueue(q.name, { durable: q.durable });
  for (const b of topology.bindings) await bind(ch, b);
}

async function bind(ch: Channel, b: BindingDeclaration): Promise<void> {
  if (b.destinationKind === 'queue') await ch.bindQueue(b.destination, b.source, b.pattern);
  else await ch.bindExchange(b.destination, b.source, b.pattern);
}

/**
 * Declares what every mode shares (DESIGN.md §2, core's wireTopology without the archive binding):
 * the three topic exchanges and the dead-letter queue. Rejects (and RabbitMQ closes the channel)
 * when an existing exchange or queue was declared with other arguments.
 */
export async function declareShared(ch: Channel): Promise<void> {
  await applyTopology(ch, wireTopology('router'));
}

/** Router mode: queue `herald.ingest` takes every ingest message. */
export async function declareRouterQueue(ch: Channel): Promise<void> {
  await ch.assertQueue(ROUTER_QUEUE, { durable: true, arguments: { 'x-single-active-consumer': true } });
  await ch.bindQueue(ROUTER_QUEUE, INGEST_EXCHANGE, ALL);
}

/** Router mode: removes the archive binding herald.ingest → herald.events, so nothing is delivered twice. */
export async function removeArchiveBinding(ch: Channel): Promise<void> {
  await ch.unbindExchange(ARCHIVE_BINDING.destination, ARCHIVE_BINDING.source, ARCHIVE_BINDING.pattern);
}

/** Archive mode: queue `herald.store` copies everything delivered on `herald.events`, then the archive binding is added. */
export async function declareArchive(ch: Channel): Promise<void> {
  await ch.assertQueue(ARCHIVE_QUEUE, { durable: true });
  await ch.bindQueue(ARCHIVE_QUEUE, EVENTS_EXCHANGE, ALL);
  await bind(ch, ARCHIVE_BINDING);
}
