import { ErrorCodes, ValidationError } from './errors.ts';
import { preview } from './limits.ts';

/** The longest routing key RabbitMQ accepts, in bytes. */
export const MAX_ROUTING_KEY_BYTES = 255;
const SENDER_RE = /^[A-Za-z0-9_-]{1,64}$/;
const SEGMENT_RE = /^[A-Za-z0-9_-]+$/;
/** A whole valid type at once: the common case needs one test, not a split and one per segment. */
const TYPE_RE = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
const SUBSCRIPTION_NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** True when `name` is a valid durable subscription name: `[A-Za-z0-9_.-]{1,128}`. The hub and the SDK check with it. */
export function isSubscriptionName(name: unknown): name is string {
  return typeof name === 'string' && SUBSCRIPTION_NAME_RE.test(name);
}

/** Throws a ValidationError (INVALID_SENDER) unless `sender` is one segment `[A-Za-z0-9_-]{1,64}`. */
export function assertSender(sender: unknown): asserts sender is string {
  if (typeof sender !== 'string' || !SENDER_RE.test(sender)) {
    throw new ValidationError(ErrorCodes.INVALID_SENDER, `invalid sender ${preview(sender)}: expected 1-64 characters of A-Z a-z 0-9 _ -`, {
      details: { sender },
    });
  }
}

/**
 * Throws a ValidationError (INVALID_TYPE) unless `type` is one or more dot-separated segments of
 * `[A-Za-z0-9_-]+`. With `sender`, also checks that `<sender>.<type>` fits in a routing key.
 */
export function assertType(type: unknown, sender?: string): asserts type is string {
  if (typeof type !== 'string' || type.length === 0) {
    throw new ValidationError(ErrorCodes.INVALID_TYPE, `invalid type ${preview(type)}: must be a non-empty string`, {
      details: { type },
    });
  }
  if (!TYPE_RE.test(type)) {
    for (const segment of type.split('.')) {
      if (SEGMENT_RE.test(segment)) continue;
      throw new ValidationError(
        ErrorCodes.INVALID_TYPE,
        `invalid type ${preview(type)}: segment ${preview(segment)} must be 1+ characters of A-Z a-z 0-9 _ -`,
        { details: { type, segment } },
      );
    }
  }
  // A valid type is ASCII: its length is its size in bytes.
  const senderBytes = sender === undefined ? 0 : Buffer.byteLength(sender) + 1;
  if (senderBytes + type.length > MAX_ROUTING_KEY_BYTES) {
    throw new ValidationError(
      ErrorCodes.INVALID_TYPE,
      `invalid type ${JSON.stringify(type.slice(0, 40))}…: routing key <sender>.<type> exceeds ${MAX_ROUTING_KEY_BYTES} bytes`,
      { details: { type, sender } },
    );
  }
}

/** The routing key of an event: `<sender>.<type>`. Validates both parts. */
export function routingKeyOf(sender: string, type: string): string {
  assertSender(sender);
  assertType(type, sender);
  return `${sender}.${type}`;
}

/**
 * Splits a routing key `<sender>.<type>` into its parts, validating both. The first segment is the
 * sender; the rest is the type, which must have at least one segment.
 */
export function parseRoutingKey(routingKey: string): { sender: string; type: string } {
  const dot = routingKey.indexOf('.');
  if (dot <= 0 || dot === routingKey.length - 1) {
    throw new ValidationError(ErrorCodes.INVALID_EVENT, `invalid routing key ${preview(routingKey)}: expected <sender>.<type>`, {
      details: { routingKey },
    });
  }
  const sender = routingKey.slice(0, dot);
  const type = routingKey.slice(dot + 1);
  assertSender(sender);
  assertType(type, sender);
  return { sender, type };
}
