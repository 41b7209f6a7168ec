import { EVENTS_EXCHANGE } from '@herald/core';
import type { CatalogType } from '../store/index.ts';

/** Where receivers find the events: the broker, without credentials. */
export interface AsyncApiServer {
  /** `host:port` */
  readonly host: string;
  /** The RabbitMQ vhost, `/` by default. */
  readonly vhost: string;
}

/** The broker of an AMQP URL, without user or password. */
export function serverOf(amqpUrl: string): AsyncApiServer {
  const u = new URL(amqpUrl);
  const port = u.port || (u.protocol === 'amqps:' ? '5671' : '5672');
  const vhost = u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/';
  return { host: `${u.hostname}:${port}`, vhost };
}

const isoOf = (ms: number) => new Date(ms).toISOString();

/** A key for an operation: the characters AsyncAPI allows in one (`[A-Za-z0-9_.-]`), unique in `taken`. */
function keyIn(taken: Record<string, unknown>, raw: string): string {
  const base = raw.replace(/[^A-Za-z0-9_.-]/g, '_');
  let key = base;
  for (let i = 2; key in taken; i++) key = `${base}.${i}`;
  return key;
}

/** The AMQP binding of a channel: a routing key on the topic exchange herald.events. */
function channelBinding(vhost: string) {
  return {
    amqp: {
      is: 'routingKey',
      exchange: { name: EVENTS_EXCHANGE, type: 'topic', durable: true, autoDelete: false, vhost },
      bindingVersion: '0.3.0',
    },
  };
}

/**
 * The catalog as an AsyncAPI 3.0 document: one channel per event type, addressed by its routing key
 * `<sender>.<type>` on the `herald.events` exchange of the RabbitMQ server; one message per channel
 * with the latest schema as its payload (JSON Schema draft-07) and the example; a `send` operation
 * per observed producer (the sender, one per publishing RabbitMQ user) and a `receive` operation
 * per observed consumer (durable subscriptions and exchanges).
 */
export function asyncApiDocument(
  types: readonly CatalogType[],
  server: AsyncApiServer,
  info: { title?: string; version?: string; cut?: boolean } = {},
) {
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  const messages: Record<string, unknown> = {};
  for (const t of types) {
    const id = `${t.sender}.${t.type}`;
    const entry = t.entry;
    const message: Record<string, unknown> = {
      name: id,
      title: `${t.sender}:${t.type}`,
      contentType: 'application/json',
      // The AMQP `type` property carries the event type.
      bindings: { amqp: { messageType: t.type, bindingVersion: '0.3.0' } },
    };
    if (entry?.description !== undefined) message.summary = entry.description;
    if (entry?.latest !== undefined)
      message.payload = { schemaFormat: 'application/schema+json;version=draft-07', schema: entry.latest.schema };
    if (entry?.example !== undefined) message.examples = [{ name: 'example', payload: entry.example }];
    const versionNote = entry?.latest === undefined ? 'no schema in the catalog' : `schema version ${entry.latest.version}`;
    message.description = `${versionNote}${entry?.validate ? '; validated at ingest (a violation is dead-lettered)' : ''}`;
    messages[id] = message;
    channels[id] = {
      address: id,
      title: `${t.sender}:${t.type}`,
      ...(entry?.description === undefined ? {} : { description: entry.description }),
      servers: [{ $ref: '#/servers/rabbitmq' }],
      messages: { event: { $ref: `#/components/messages/${id}` } },
      bindings: channelBinding(server.vhost),
    };
    const channelRef = { $ref: `#/channels/${id}` };
    const messageRefs = [{ $ref: `#/channels/${id}/messages/event` }];
    for (const p of t.producers) {
      const who = p.userId === '' ? p.sender : `${p.sender} (RabbitMQ user ${p.userId})`;
      operations[keyIn(operations, `${id}.send.${p.userId === '' ? p.sender : p.userId}`)] = {
        action: 'send',
        channel: channelRef,
        messages: messageRefs,
        title: `${who} publishes`,
        // Persistent messages; the routing key is the channel's address.
        bindings: { amqp: { deliveryMode: 2, bindingVersion: '0.3.0' } },
        description: `${p.events} events seen, first ${isoOf(p.firstSeen)}, last ${isoOf(p.lastSeen)}`,
      };
    }
    for (const c of t.consumers) {
      operations[keyIn(operations, `${id}.receive.${c.kind}.${c.name}`)] = {
        action: 'receive',
        channel: channelRef,
        messages: messageRefs,
        title: `${c.kind} ${c.name} receives`,
        bindings: { amqp: { ack: true, bindingVersion: '0.3.0' } },
        description: `seen first ${isoOf(c.firstSeen)}, last ${isoOf(c.lastSeen)}`,
      };
    }
  }
  return {
    asyncapi: '3.0.0',
    info: {
      title: info.title ?? 'Herald event catalog',
      version: info.version ?? '1',
      description: `The event types of a Herald hub. Events are published to ${EVENTS_EXCHANGE} with routing key <sender>.<type>, at least once, in offset order within a flow.${info.cut ? ' Cut: more types are in the catalog than one document takes (GET /api/v1/catalog lists them all).' : ''}`,
      ...(info.cut ? { 'x-herald-truncated': true } : {}),
    },
    defaultContentType: 'application/json',
    servers: {
      rabbitmq: {
        host: server.host,
        protocol: 'amqp',
        protocolVersion: '0.9.1',
        pathname: server.vhost === '/' ? '/' : `/${server.vhost}`,
      },
    },
    channels,
    operations,
    components: { messages },
  };
}
