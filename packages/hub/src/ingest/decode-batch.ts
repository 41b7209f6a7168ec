import { ErrorCodes, fromAmqp, type HeraldEvent, ValidationError } from '@herald/core';
import type { Message } from 'amqplib';
import { type DeadDelivery, deadDelivery } from './dead-delivery.ts';
import { messageDeadLetter } from './dead-letters.ts';
import type { IngestOptions, SenderCheck } from './types.ts';

/** What decodeBatch checks each message against. */
export interface DecodeOptions {
  /** The largest event body taken in (HERALD_MAX_EVENT_BYTES). */
  maxBytes: number;
  /** The batch's receive time (ms): defaults an event's time, stamps its dead letters. */
  now: number;
  senderCheck: SenderCheck | undefined;
  inspect: IngestOptions['inspect'];
}

/** A batch of ingest messages read as events, and the dead letters of those that are not. */
export interface DecodedBatch {
  events: HeraldEvent[];
  /** The message of each event, in the same order. */
  received: Message[];
  dead: DeadDelivery[];
}

/**
 * Reads each message of `batch` as an event (DESIGN.md §1). One that is not an event, whose
 * `user_id` senderCheck refuses as its sender, or that the catalog's inspection refuses, becomes a
 * dead letter with its reason; the rest go on.
 */
export function decodeBatch(batch: readonly Message[], o: DecodeOptions): DecodedBatch {
  const out: DecodedBatch = { events: [], received: [], dead: [] };
  for (const msg of batch) {
    try {
      const event = fromAmqp(
        { routingKey: msg.fields.routingKey, content: msg.content, properties: msg.properties },
        { maxBytes: o.maxBytes, now: o.now },
      );
      const userId: unknown = msg.properties.userId;
      if (typeof userId === 'string' && userId !== '') checkSender(o.senderCheck, userId, event.sender);
      o.inspect?.(event, userId);
      out.events.push(event);
      out.received.push(msg);
    } catch (err) {
      out.dead.push(deadDelivery(messageDeadLetter(msg, err, o.now)));
    }
  }
  return out;
}

/** Throws a ValidationError (INVALID_EVENT) with senderCheck's reason when it refuses `userId` as `sender`. */
function checkSender(senderCheck: SenderCheck | undefined, userId: string, sender: string): void {
  if (senderCheck === undefined) return;
  const refused = senderCheck(userId, sender);
  if (refused !== undefined) throw new ValidationError(ErrorCodes.INVALID_EVENT, refused, { details: { userId, sender } });
}
