import {
  ARCHIVE_BINDING,
  type BindingDeclaration,
  ErrorCodes,
  EVENTS_EXCHANGE,
  HeraldError,
  type HubMode,
  INGEST_EXCHANGE,
  type QueueType,
  queueTypeArguments,
  type Topology,
  wireTopology,
} from '@herald/core';
import { type Channel, connect, type Options } from 'amqplib';

/** The router mode's queue on `herald.ingest` (durable, single active consumer). */
export const ROUTER_QUEUE = 'herald.ingest';
/** The archive mode's queue on `herald.events`, copied into the log. */
export const ARCHIVE_QUEUE = 'herald.store';
/** Binds everything. */
export const ALL = '#';

/**
 * Declares a topology description from core: exchanges, queues (of `queueType`), bindings, in that
 * order. Idempotent. Rejects with INVALID_CONFIG (queueTypeConflict) when a queue exists with the
 * other type.
 */
export async function applyTopology(ch: Channel, topology: Topology, queueType: QueueType = 'classic'): Promise<void> {
  for (const e of topology.exchanges) await ch.assertExchange(e.name, e.type, { durable: e.durable });
  for (const q of topology.queues) await declareQueue(ch, q.name, queueType);
  for (const b of topology.bindings) await bind(ch, b);
}

async function bind(ch: Channel, b: BindingDeclaration): Promise<void> {
  if (b.destinationKind === 'queue') await ch.bindQueue(b.destination, b.source, b.pattern);
  else await ch.bindExchange(b.destination, b.source, b.pattern);
}

/**
 * Declares a durable queue of `queueType` with `args` besides. A queue that exists with the other
 * type makes RabbitMQ answer PRECONDITION_FAILED (and close the channel): rejected with the
 * INVALID_CONFIG error of queueTypeConflict; any other refusal as RabbitMQ gave it.
 */
export async function declareQueue(
  ch: Channel,
  name: string,
  queueType: QueueType,
  args: Options.AssertQueue['arguments'] = {},
): Promise<void> {
  try {
    await ch.assertQueue(name, { durable: true, arguments: { ...args, ...queueTypeArguments(queueType) } });
  } catch (err) {
    throw queueTypeConflict(err, queueType) ?? err;
  }
}

/**
 * When `err` is RabbitMQ's answer to declaring a queue of `wanted` type over one of the other type
 * (`inequivalent arg 'x-queue-type' for queue 'q' in vhost 'v'`), the one line that says what to do
 * (INVALID_CONFIG, so the hub exits as for any bad setting); undefined for any other error.
 */
export function queueTypeConflict(err: unknown, wanted: QueueType): HeraldError | undefined {
  const text = err instanceof Error ? err.message : String(err);
  const m = /inequivalent arg 'x-queue-type' for queue '([^']*)' in vhost '([^']*)'/.exec(text);
  if (!m) return undefined;
  const [, queue, vhost] = m;
  const current = wanted === 'quorum' ? 'classic' : 'quorum';
  return new HeraldError(
    ErrorCodes.INVALID_CONFIG,
    `queue ${queue} in vhost ${vhost} is a ${current} queue but HERALD_QUEUE_TYPE is ${wanted}, and RabbitMQ cannot change a queue's type: ` +
      `set HERALD_QUEUE_TYPE=${current}, or move: stop the publishers, let a hub of the old type empty the queue, then ` +
      `\`rabbitmqctl delete_queue --if-empty --vhost ${vhost} ${queue}\` and start the hub again`,
    { cause: err, details: { setting: 'HERALD_QUEUE_TYPE', queue, vhost } },
  );
}

/**
 * Declares what every mode shares (DESIGN.md §2, core's wireTopology without the archive binding):
 * the three topic exchanges and the dead-letter queue. Rejects (and RabbitMQ closes the channel)
 * when an existing exchange or queue was declared with other arguments.
 */
export async function declareShared(ch: Channel, queueType: QueueType = 'classic'): Promise<void> {
  await applyTopology(ch, wireTopology('router'), queueType);
}

/** Router mode: queue `herald.ingest` takes every ingest message. */
export async function declareRouterQueue(ch: Channel, queueType: QueueType = 'classic'): Promise<void> {
  await declareQueue(ch, ROUTER_QUEUE, queueType, { 'x-single-active-consumer': true });
  await ch.bindQueue(ROUTER_QUEUE, INGEST_EXCHANGE, ALL);
}

/** Router mode: removes the archive binding herald.ingest → herald.events, so nothing is delivered twice. */
export async function removeArchiveBinding(ch: Channel): Promise<void> {
  await ch.unbindExchange(ARCHIVE_BINDING.destination, ARCHIVE_BINDING.source, ARCHIVE_BINDING.pattern);
}

/** Archive mode: queue `herald.store` copies everything delivered on `herald.events`, then the archive binding is added. */
export async function declareArchive(ch: Channel, queueType: QueueType = 'classic'): Promise<void> {
  await declareQueue(ch, ARCHIVE_QUEUE, queueType);
  await ch.bindQueue(ARCHIVE_QUEUE, EVENTS_EXCHANGE, ALL);
  await bind(ch, ARCHIVE_BINDING);
}

/**
 * Declares the hub's own queues of `mode` (herald.dead, and herald.ingest or herald.store) as
 * `queueType` over a short connection, each on a channel of its own, so that a hub that will wait
 * as a standby reports a queue of the other type at start too, not only once it takes the lease.
 * Rejects with queueTypeConflict's INVALID_CONFIG; any other failure is left to ingest's start,
 * which reports it in its own words.
 */
export async function probeQueueTypes(url: string, mode: HubMode, queueType: QueueType): Promise<void> {
  const conn = await connect(url, { noDelay: true, timeout: 10_000 }).catch(() => undefined);
  if (!conn) return;
  conn.on('error', () => undefined);
  try {
    const own: [string, Options.AssertQueue['arguments']][] = [
      ['herald.dead', {}],
      mode === 'router' ? [ROUTER_QUEUE, { 'x-single-active-consumer': true }] : [ARCHIVE_QUEUE, {}],
    ];
    for (const [name, args] of own) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      try {
        await declareQueue(ch, name, queueType, args);
      } catch (err) {
        if (err instanceof HeraldError) throw err;
      } finally {
        await ch.close().catch(() => undefined);
      }
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
}
