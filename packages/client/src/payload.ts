import { type DeliveredEvent, ErrorCodes, ValidationError } from '@herald/core';

/** The media type part of a content type, lower-cased: `Application/JSON; charset=utf-8` → `application/json`. */
function mediaType(contentType: string): string {
  return (contentType.split(';', 1)[0] ?? '').trim().toLowerCase();
}

/**
 * The data of an event as its publisher passed it: JSON bodies parsed, text as a string, other
 * bytes as they are (see EventOf.payload). Throws a ValidationError (INVALID_EVENT) naming the
 * event when a JSON body does not parse.
 */
export function payloadOf(event: Pick<DeliveredEvent, 'id' | 'data' | 'contentType'>): unknown {
  const type = mediaType(event.contentType);
  if (type === 'application/json' || type.endsWith('+json')) {
    try {
      return JSON.parse(event.data.toString('utf8'));
    } catch (cause) {
      throw new ValidationError(ErrorCodes.INVALID_EVENT, `event ${event.id}: its ${type} body is not valid JSON`, {
        cause,
        details: { id: event.id },
      });
    }
  }
  if (type.startsWith('text/')) return event.data.toString('utf8');
  return event.data;
}

/** The event with its payload() method: the same fields, one function shared by all. */
export function withPayload<T extends DeliveredEvent>(event: T): T & { payload(): unknown } {
  return { ...event, payload: readPayload };
}

function readPayload(this: DeliveredEvent): unknown {
  return payloadOf(this);
}
