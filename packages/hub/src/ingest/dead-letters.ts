import { ErrorCodes, Headers, HeraldError } from '@herald/core';
import type { Message, Options } from 'amqplib';
import type { DeadLetter } from '../store/types.ts';

/** A header or property value as JSON can hold it: Buffers become UTF-8 strings, bigints decimal strings. */
function jsonSafe(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (depth > 8) return String(value);
  if (Array.isArray(value)) return value.map((v) => jsonSafe(v, depth + 1));
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = jsonSafe(v, depth + 1);
    return out;
  }
  return value;
}

/** Why a message is not an event: the ValidationError's message and code, or a generic one. */
export function deadReason(err: unknown): { reason: string; code: string } {
  if (err instanceof HeraldError) return { reason: err.message, code: err.code };
  return { reason: err instanceof Error ? err.message : String(err), code: ErrorCodes.INVALID_EVENT };
}

/** The dead letter kept in the store for a message the hub could not take as an event. */
export function toDeadLetter(msg: Message, err: unknown, at: number = Date.now()): DeadLetter {
  const { reason, code } = deadReason(err);
  const props = jsonSafe(msg.properties) as Record<string, unknown>;
  const messageId = typeof msg.properties.messageId === 'string' ? msg.properties.messageId : undefined;
  return {
    reason,
    code,
    exchange: msg.fields.exchange,
    routingKey: msg.fields.routingKey,
    messageId,
    properties: props,
    body: msg.content,
    at,
  };
}

/**
 * The publish of a dead letter to `herald.dead`: the original body and properties, plus the
 * x-herald-dead-* and x-herald-original-* headers. `user_id` and `expiration` are dropped: RabbitMQ
 * would refuse a user_id that is not the hub's, and a dead letter must not expire.
 */
export function deadLetterPublish(msg: Message, letter: DeadLetter): { routingKey: string; content: Buffer; options: Options.Publish } {
  const p = msg.properties;
  const headers: Record<string, unknown> = {
    ...(p.headers ?? {}),
    [Headers.DEAD_REASON]: letter.reason,
    [Headers.DEAD_CODE]: letter.code,
    [Headers.ORIGINAL_EXCHANGE]: letter.exchange,
    [Headers.ORIGINAL_ROUTING_KEY]: letter.routingKey,
  };
  const options: Options.Publish = { persistent: true, headers };
  if (p.messageId !== undefined) options.messageId = p.messageId;
  if (p.appId !== undefined) options.appId = p.appId;
  if (p.type !== undefined) options.type = p.type;
  if (p.timestamp !== undefined) options.timestamp = p.timestamp;
  if (p.contentType !== undefined) options.contentType = p.contentType;
  if (p.contentEncoding !== undefined) options.contentEncoding = p.contentEncoding;
  if (p.correlationId !== undefined) options.correlationId = p.correlationId;
  // The routing key is kept when RabbitMQ could route it (it accepted it once); it is also in a header.
  return { routingKey: msg.fields.routingKey, content: msg.content, options };
}
