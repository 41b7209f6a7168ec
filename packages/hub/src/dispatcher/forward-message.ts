import { type AmqpProperties, Headers, TRACEPARENT, TRACESTATE, toAmqp } from '@herald/core';
import {
  fieldTableBytes,
  HEADERS_DROPPED_HEADER,
  isShortString,
  MAX_HEADER_TABLE_BYTES,
  MAX_SHORT_STRING_BYTES,
} from '../ingest/amqp-table.ts';
import type { StoredEvent } from '../store/types.ts';

/** The publish of a stored event to `herald.events`. */
export interface ForwardMessage {
  routingKey: string;
  content: Buffer;
  properties: AmqpProperties;
  /** Set when the event's own headers were left out, and why. */
  dropped?: string | undefined;
}

/** Per long-string entry: the name's length byte, the type tag and the value's 4-byte length. */
const ENTRY_BYTES = 1 + 1 + 4;
/**
 * The table's length, x-herald-time and x-herald-offset whole, and the names of x-herald-replay,
 * x-herald-subject and x-herald-causation-id (119 bytes), rounded up.
 */
const FIXED_BYTES = 256;

/**
 * True when the forward's header table could exceed what amqplib encodes, from string lengths
 * alone (UTF-8 takes at most 3 bytes per UTF-16 unit): no byte is counted for the events almost
 * every forward carries, whose headers are small. A header name over 85 units, or a value that is
 * not a string (a log written by an older hub), sends the event to the exact measure.
 */
function mayNotFit(event: StoredEvent, replay: string | undefined): boolean {
  let units = (event.subject?.length ?? 0) + (event.causationId?.length ?? 0) + (replay?.length ?? 0);
  let entries = 3;
  // The trace context's names are not among FIXED_BYTES: counted with its values.
  if (event.traceparent !== undefined) {
    units += TRACEPARENT.length + event.traceparent.length + TRACESTATE.length + (event.tracestate?.length ?? 0);
    entries += 2;
  }
  const headers = event.headers;
  for (const name in headers) {
    const value = headers[name];
    if (typeof value !== 'string' || name.length * 3 > MAX_SHORT_STRING_BYTES) return true;
    units += name.length + value.length;
    entries++;
  }
  return FIXED_BYTES + entries * ENTRY_BYTES + 3 * units > MAX_HEADER_TABLE_BYTES;
}

/**
 * The forward of a stored event: toAmqp with its offset (and replay id). When its header table
 * would not encode (more than MAX_HEADER_TABLE_BYTES as amqplib writes it, or a value or name it
 * cannot write) the reduced form of reducedForwardMessage is returned instead, so a publish that
 * would throw is not even tried. Measures bytes only for events whose headers could be that large.
 */
export function forwardMessage(event: StoredEvent, replay: string | undefined): ForwardMessage {
  const message: ForwardMessage = toAmqp(event, { offset: event.offset, replay });
  if (!mayNotFit(event, replay)) return message;
  const bytes = fieldTableBytes(message.properties.headers ?? {});
  if (bytes <= MAX_HEADER_TABLE_BYTES) return message;
  return reducedForwardMessage(
    event,
    replay,
    bytes === Number.POSITIVE_INFINITY
      ? 'its headers cannot be encoded as an AMQP table'
      : `its header table takes ${bytes} bytes, more than the ${MAX_HEADER_TABLE_BYTES} amqplib encodes`,
  );
}

/**
 * The forward of a stored event without its own headers, for when they cannot be published (`why`):
 * x-herald-offset (and x-herald-replay), x-herald-time, x-herald-subject, x-herald-causation-id and
 * the trace context when they still fit, and `x-herald-headers-dropped: "true"`; properties that do
 * not fit an AMQP short string are left out. The event stays whole in the log. Never throws.
 */
export function reducedForwardMessage(event: StoredEvent, replay: string | undefined, why: string): ForwardMessage {
  const base: Record<string, unknown> = { [Headers.OFFSET]: event.offset.toString(), [HEADERS_DROPPED_HEADER]: 'true' };
  if (replay !== undefined) base[Headers.REPLAY] = replay;
  if (Number.isSafeInteger(event.time)) base[Headers.TIME] = event.time;
  let headers = base;
  if (event.subject !== undefined || event.causationId !== undefined || event.traceparent !== undefined) {
    const more = { ...base };
    if (event.subject !== undefined) more[Headers.SUBJECT] = event.subject;
    if (event.causationId !== undefined) more[Headers.CAUSATION_ID] = event.causationId;
    if (event.traceparent !== undefined) more[TRACEPARENT] = event.traceparent;
    if (event.tracestate !== undefined) more[TRACESTATE] = event.tracestate;
    if (fieldTableBytes(more) <= MAX_HEADER_TABLE_BYTES) headers = more;
  }
  const properties: AmqpProperties = { deliveryMode: 2, headers };
  if (isShortString(event.id)) properties.messageId = event.id;
  if (isShortString(event.sender)) properties.appId = event.sender;
  if (isShortString(event.type)) properties.type = event.type;
  if (isShortString(event.contentType)) properties.contentType = event.contentType;
  if (isShortString(event.correlationId)) properties.correlationId = event.correlationId;
  const seconds = Math.floor(event.time / 1000);
  if (Number.isSafeInteger(seconds) && seconds >= 0) properties.timestamp = seconds;
  return { routingKey: `${event.sender}.${event.type}`, content: event.data, properties, dropped: why };
}
