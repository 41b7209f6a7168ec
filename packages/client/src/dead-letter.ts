import { DEAD_EXCHANGE, ErrorCodes, Headers, HeraldError } from '@herald/core';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';

/** Why an event is dead: the reason, a stable code, and how many handler attempts were made. */
export interface DeathCause {
  readonly reason: string;
  readonly code: string;
  readonly attempts: number;
}

/** The cause of death for what a handler threw (or a delivery that could not be read). */
export function deathCause(err: unknown, attempts: number): DeathCause {
  const code = err instanceof HeraldError ? err.code : 'HANDLER_FAILED';
  const reason = err instanceof Error ? err.message || err.name : String(err);
  return { reason: reason.slice(0, 4000), code, attempts };
}

/**
 * The publish options of a dead letter: the original properties and headers, plus the x-herald-dead-*
 * headers. `user_id` is dropped because RabbitMQ rejects a user_id that is not the publishing
 * connection's user, and the subscriber is usually not the original publisher; `expiration` is
 * dropped so the dead letter stays until someone looks at it.
 */
export function deadLetterOptions(message: Pick<ConsumeMessage, 'fields' | 'properties'>, cause: DeathCause): Options.Publish {
  const { userId: _userId, expiration: _expiration, headers, ...rest } = message.properties;
  const options: Options.Publish = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined && v !== null) (options as Record<string, unknown>)[k] = v;
  options.persistent = true;
  options.headers = {
    ...(headers ?? {}),
    [Headers.DEAD_REASON]: cause.reason,
    [Headers.DEAD_CODE]: cause.code,
    [Headers.ATTEMPTS]: cause.attempts,
    [Headers.ORIGINAL_EXCHANGE]: message.fields.exchange,
    [Headers.ORIGINAL_ROUTING_KEY]: message.fields.routingKey,
  };
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
