import { ErrorCodes, Headers, HeraldError, INGEST_EXCHANGE } from '@herald/core';
import { type ChannelModel, connect, type Options } from 'amqplib';
import { forwardMessage } from '../dispatcher/forward-message.ts';
import type { StoredDeadLetter } from '../store/index.ts';
import type { StoredEvent } from '../store/types.ts';

/** The header a re-sent message carries: the id of the dead letter it came from. */
export const REDRIVEN_HEADER = 'x-herald-redriven';

/** One publish of a redrive, and the dead letter it re-sends. */
export interface Resend {
  readonly letter: StoredDeadLetter;
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
}

/**
 * The AMQP properties to publish a dead letter again with: what the row kept, without the
 * sanitizing note, without `user_id` (RabbitMQ refuses one that is not the hub's own user: the
 * redrive is the hub's, on an admin's word), marked with the dead letter's id.
 */
export function redriveProperties(letter: StoredDeadLetter): Options.Publish {
  const {
    sanitized: _note,
    userId: _user,
    headers,
    ...rest
  } = letter.properties as Record<string, unknown> & {
    headers?: Record<string, unknown>;
  };
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined && v !== null) props[k] = v;
  return { ...props, persistent: true, headers: { ...(headers ?? {}), [REDRIVEN_HEADER]: letter.id.toString() } };
}

/** The hub's own dead letter as it came: its bytes, to herald.ingest under its routing key, or to `queue`. */
export function letterResend(letter: StoredDeadLetter, queue?: string): Resend {
  return {
    letter,
    exchange: queue === undefined ? INGEST_EXCHANGE : '',
    routingKey: queue ?? letter.routingKey,
    content: letter.body,
    options: redriveProperties(letter),
  };
}

/**
 * A subscriber's dead letter re-sent as the event the log holds under its id, as the hub forwards
 * it (forwardMessage: its bytes, properties, headers and offset), marked with the dead letter's id,
 * to `queue` only: nothing of the letter travels but its id. It goes through the default exchange
 * under the event's own routing key with `BCC: [queue]` (RabbitMQ routes it to that queue as well,
 * keeps the routing key and drops the header), so the receiver reads `<sender>.<type>` as from
 * herald.events. When a queue is named like that routing key (`routingKeyIsQueue`) it would get a
 * copy too: the routing key is then the queue's name, as for any message sent to a queue.
 */
export function eventResend(letter: StoredDeadLetter, event: StoredEvent, queue: string, routingKeyIsQueue: boolean): Resend {
  const message = forwardMessage(event, undefined);
  const headers: Record<string, unknown> = { ...(message.properties.headers ?? {}), [REDRIVEN_HEADER]: letter.id.toString() };
  const options: Options.Publish = { ...(message.properties as Options.Publish), persistent: true, headers };
  if (routingKeyIsQueue && message.routingKey !== queue) {
    headers[Headers.ORIGINAL_ROUTING_KEY] = message.routingKey;
    return { letter, exchange: '', routingKey: queue, content: message.content, options };
  }
  return { letter, exchange: '', routingKey: message.routingKey, content: message.content, options: { ...options, BCC: [queue] } };
}

/** Runs `fn` on a short connection of its own: UNAVAILABLE when RabbitMQ cannot be reached. */
export async function onConnection<T>(amqpUrl: string, fn: (conn: ChannelModel) => Promise<T>): Promise<T> {
  let conn: ChannelModel;
  try {
    conn = await connect(amqpUrl, { noDelay: true });
  } catch (err) {
    throw new HeraldError(ErrorCodes.UNAVAILABLE, `cannot reach RabbitMQ to redrive: ${(err as Error).message}`, { cause: err });
  }
  conn.on('error', () => undefined);
  try {
    return await fn(conn);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Whether a queue of that name exists (a passive declare, on a channel of its own: RabbitMQ closes it on a 404). */
export async function queueExists(conn: ChannelModel, name: string): Promise<boolean> {
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  try {
    await ch.checkQueue(name);
    await ch.close().catch(() => undefined);
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === 404) return false;
    throw new HeraldError(ErrorCodes.PUBLISH_FAILED, `cannot check queue ${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** Publishes each with confirms; resolves once RabbitMQ confirmed them all, else PUBLISH_FAILED. */
export async function publishConfirmed(conn: ChannelModel, resends: readonly Resend[]): Promise<void> {
  if (resends.length === 0) return;
  try {
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    await Promise.all(
      resends.map(
        (r) =>
          new Promise<void>((resolve, reject) => {
            ch.publish(r.exchange, r.routingKey, r.content, r.options, (err) => (err ? reject(err) : resolve()));
          }),
      ),
    );
    await ch.close().catch(() => undefined);
  } catch (err) {
    throw new HeraldError(ErrorCodes.PUBLISH_FAILED, `the redrive was not confirmed: ${(err as Error).message}`, { cause: err });
  }
}
