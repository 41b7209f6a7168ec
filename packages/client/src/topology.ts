import { ARCHIVE_BINDING, ErrorCodes, HeraldError, type HubMode, redactUrl, type Topology, wireTopology } from '@herald/core';
import { type Channel, connect } from 'amqplib';
import { normalizeConnection, normalizeMode } from './options.ts';

/**
 * Declares `topology` on `ch`, idempotently: exchanges, bindings between exchanges, queues, then
 * their bindings. Rejects (and RabbitMQ closes the channel) when an object exists with other
 * arguments, e.g. `herald.events` declared as a fanout. A queue that exists with another queue type
 * (the hub declares its queues as quorum queues with HERALD_QUEUE_TYPE=quorum, and binds them) is
 * taken as it is: RabbitMQ closed the channel, and the rest is left to the hub that declared it.
 */
export async function applyTopology(ch: Channel, topology: Topology): Promise<void> {
  for (const x of topology.exchanges) await ch.assertExchange(x.name, x.type, { durable: x.durable });
  for (const b of topology.bindings) if (b.destinationKind === 'exchange') await ch.bindExchange(b.destination, b.source, b.pattern);
  for (const q of topology.queues) {
    try {
      await ch.assertQueue(q.name, { durable: q.durable });
    } catch (err) {
      if (/inequivalent arg 'x-queue-type'/.test((err as Error).message)) return;
      throw err;
    }
  }
  for (const b of topology.bindings) if (b.destinationKind === 'queue') await ch.bindQueue(b.destination, b.source, b.pattern);
}

/** Options of declareTopology. */
export interface DeclareTopologyOptions {
  /** AMQP URL. Default: `HERALD_AMQP_URL`, else `amqp://guest:guest@127.0.0.1:5672`. */
  url?: string;
  /** The hub mode the broker is set up for. Default `router`. */
  mode?: HubMode;
}

/**
 * Declares Herald's wire topology (DESIGN.md §2) for a hub mode, over a short-lived connection:
 * the three exchanges, the dead-letter queue, and in archive mode the binding herald.ingest →
 * herald.events. In router mode it removes that binding if present, since a router hub forwards
 * events itself and the binding would deliver each one twice. Idempotent.
 *
 * Fails with a HeraldError: INVALID_CONFIG for a bad url or mode, UNAVAILABLE when RabbitMQ cannot
 * be reached (no retry: this is a one-shot setup step), CONFLICT when an object exists with other
 * arguments (RabbitMQ's reason is in the message and `cause`).
 */
export async function declareTopology(options: DeclareTopologyOptions = {}): Promise<void> {
  const mode = normalizeMode(options.mode);
  const settings = normalizeConnection({ ...(options.url === undefined ? {} : { url: options.url }) }, 'topology');
  let conn: Awaited<ReturnType<typeof connect>>;
  try {
    conn = await connect(settings.url, { noDelay: true, clientProperties: { connection_name: settings.connectionName } });
  } catch (cause) {
    throw new HeraldError(ErrorCodes.UNAVAILABLE, `cannot reach RabbitMQ at ${redactUrl(settings.url)}: ${(cause as Error).message}`, {
      cause,
    });
  }
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await applyTopology(ch, wireTopology(mode));
    await ch.close().catch(() => undefined); // closed already when a queue had another type
    if (mode === 'router') {
      const b = ARCHIVE_BINDING;
      const unbind = await conn.createChannel();
      unbind.on('error', () => undefined);
      // Unbinding what is not bound is a no-op in RabbitMQ, so this needs no check first.
      await unbind.unbindExchange(b.destination, b.source, b.pattern);
      await unbind.close();
    }
  } catch (cause) {
    throw new HeraldError(ErrorCodes.CONFLICT, `cannot declare Herald's topology (${mode} mode): ${(cause as Error).message}`, { cause });
  } finally {
    await conn.close().catch(() => undefined);
  }
}
