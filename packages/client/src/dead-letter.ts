import { DEAD_EXCHANGE, ErrorCodes, Headers, HeraldError } from '@herald/core';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';

/**
 * Why an event is dead: the reason, a stable code, how many handler attempts were made, when the
 * first and the last of them failed (epoch ms), and the queue it was consumed from.
 */
export interface DeathCause {
  readonly reason: string;
  readonly code: string;
  readonly attempts: number;
  readonly firstFailedAt: number;
  readonly lastFailedAt: number;
  readonly queue?: string | undefined;
}

/** When the attempts failed and where: each time defaults to now, the first to the last. */
export interface DeathContext {
  readonly firstFailedAt?: number | undefined;
  readonly lastFailedAt?: number | undefined;
  readonly queue?: string | undefined;
}

/** The cause of death for what a handler threw (or a delivery that could not be read). */
export function deathCause(err: unknown, attempts: number, context: DeathContext = {}): DeathCause {
  const code = err instanceof HeraldError ? err.code : 'HANDLER_FAILED';
  const reason = err instanceof Error ? err.message || err.name : String(err);
  const lastFailedAt = context.lastFailedAt ?? Date.now();
  const firstFailedAt = Math.min(context.firstFailedAt ?? lastFailedAt, lastFailedAt);
  return { reason: reason.slice(0, 4000), code, attempts, firstFailedAt, lastFailedAt, queue: context.queue };
}

/**
 * The publish options of a dead letter: the original properties and headers, plus the x-herald-dead-*
 * headers, x-herald-attempts, x-herald-first-failed-at / -last-failed-at and, when known,
 * x-herald-original-queue. `user_id` is dropped because RabbitMQ rejects a user_id that is not the
 * publishing connection's user, and the subscriber is usually not the original publisher; `expiration` is
 * dropped so the dead letter stays until someone looks at it; x-herald-dead-stored (the hub's mark
 * on dead letters it kept already) is dropped so the hub keeps this one.
 */
export function deadLetterOptions(message: Pick<ConsumeMessage, 'fields' | 'properties'>, cause: DeathCause): Options.Publish {
  const { userId: _userId, expiration: _expiration, headers, ...rest } = message.properties;
  const options: Options.Publish = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined && v !== null) (options as Record<string, unknown>)[k] = v;
  options.persistent = true;
  const { [Headers.DEAD_STORED]: _stored, ...original } = (headers ?? {}) as Record<string, unknown>;
  options.headers = {
    ...original,
    [Headers.DEAD_REASON]: cause.reason,
    [Headers.DEAD_CODE]: cause.code,
    [Headers.ATTEMPTS]: cause.attempts,
    [Headers.FIRST_FAILED_AT]: cause.firstFailedAt,
    [Headers.LAST_FAILED_AT]: cause.lastFailedAt,
    [Headers.ORIGINAL_EXCHANGE]: message.fields.exchange,
    [Headers.ORIGINAL_ROUTING_KEY]: message.fields.routingKey,
  };
  if (cause.queue !== undefined) options.headers[Headers.ORIGINAL_QUEUE] = cause.queue;
  return options;
}

/**
 * Publishes `message` to `herald.dead` (routing key unchanged) and resolves once RabbitMQ confirmed
 * it, so the caller may then ack the original without losing it. Rejects with PUBLISH_FAILED on a
 * nack or a closed channel; the original then stays unacknowledged and comes back on redelivery.
 */
export function publishDeadLetter(ch: ConfirmChannel, message: ConsumeMessage, cause: DeathCause): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: unknown) =>
      reject(
        new HeraldError(ErrorCodes.PUBLISH_FAILED, `cannot dead-letter ${message.fields.routingKey}: ${(err as Error).message}`, {
          cause: err,
        }),
      );
    try {
      ch.publish(DEAD_EXCHANGE, message.fields.routingKey, message.content, deadLetterOptions(message, cause), (err) =>
        err ? fail(err) : resolve(),
      );
    } catch (err) {
      fail(err);
    }
  });
}
