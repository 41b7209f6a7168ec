import { ErrorCodes, LIMITS } from '@herald/core';
import fc from 'fast-check';
import { MAX_U64, PUBLISH_STREAM_LIMITS } from '../grpc/publish-stream.ts';
import { type BytesSpec, boundaryString, bytesSpec, deepJson, good } from './boundary.ts';
import type { Garble } from './grpc-inputs.ts';

// Streams for `herald.v1.Herald/PublishStream`: requests of events, each event valid, broken in one
// field with a value every edge must refuse (and the code it must be refused with), broken in one
// field with a hostile value the hub may store or refuse, or bytes that are not a PublishRequest;
// requests past 1,000 events, sequence numbers that pass 2^64 - 1, envelopes cut or garbled after
// encoding, and floods past the per-stream bounds of pending events and bytes.

/** A PublishRequest in proto-loader's object form; `data` as a BytesSpec until it is sent. */
export type EventFields = Readonly<Record<string, unknown>> & { readonly data?: BytesSpec | undefined };

/**
 * One event of a request. `good`: stored (or duplicate, when replayed). `bad`: refused with `code`,
 * `why` says which rule it breaks. `hostile`: stored or refused, either with its reason. `raw`: bytes
 * in place of the PublishRequest; `code` set when they certainly do not decode.
 */
export type EventInput =
  | { readonly good: EventFields }
  | { readonly bad: EventFields; readonly code: string; readonly why: string }
  | { readonly hostile: EventFields }
  | { readonly raw: Uint8Array | RawEvent; readonly code?: string | undefined };

/** Raw event bytes built from a valid event's encoding with one field of the wrong wire type appended. */
export interface RawEvent {
  readonly base: EventFields;
  /** The field number and the wire type it is sent with, and the bytes after the tag. */
  readonly field: number;
  readonly wire: number;
  readonly payload: Uint8Array;
}

/** One PublishStreamRequest: its events, numbered from the stream's next sequence number. */
export interface RequestInput {
  readonly events: readonly EventInput[];
  /** Repeats the request's last event until it holds this many (floods and oversize requests; cheap to print and shrink). */
  readonly repeatTo?: number | undefined;
}

/** A whole stream: the first sequence number, the requests in order; `garble` changes the first request's encoded bytes. */
export interface StreamInput {
  readonly firstSeq: bigint;
  readonly requests: readonly RequestInput[];
  readonly garble?: Garble | undefined;
  /** The client stops reading answers until it has written everything (a client that never reads). */
  readonly slowReader?: boolean | undefined;
}

const MAX_BODY = LIMITS.eventBytes.value;
const SHORT = LIMITS.shortStringBytes.value;

/** A valid event: what the mutations start from. */
const goodEvent: fc.Arbitrary<EventFields> = fc.record(
  {
    id: fc.uuid({ version: [4, 7] }),
    sender: good.sender,
    type: good.type,
    data: fc.jsonValue({ maxDepth: 2 }).map((v) => ({ bytes: new Uint8Array(Buffer.from(JSON.stringify(v) ?? 'null')) })),
    contentType: fc.constantFrom('application/json', 'text/plain', 'application/octet-stream'),
    timeMs: fc.integer({ min: 0, max: 4_102_444_800_000 }).map(String),
    subject: fc.string({ maxLength: 20 }).filter((s) => !s.includes('\u0000')),
    headers: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/), fc.stringMatching(/^[ -~]{0,20}$/), { maxKeys: 3 }),
  },
  { requiredKeys: ['id', 'sender', 'type', 'data'] },
);

/** Values no edge may take, each with the field it replaces and the code of the refusal. */
const BAD: readonly { readonly field: string; readonly value: unknown; readonly code: string; readonly why: string }[] = [
  { field: 'sender', value: '', code: ErrorCodes.INVALID_SENDER, why: 'empty sender' },
  { field: 'sender', value: 'a\u0000b', code: ErrorCodes.INVALID_SENDER, why: 'NUL in the sender' },
  { field: 'sender', value: 's'.repeat(65), code: ErrorCodes.INVALID_SENDER, why: 'sender of 65 characters' },
  { field: 'sender', value: 's'.repeat(100_000), code: ErrorCodes.INVALID_SENDER, why: 'sender of 100,000 characters' },
  { field: 'sender', value: 'bill ing', code: ErrorCodes.INVALID_SENDER, why: 'space in the sender' },
  { field: 'sender', value: 'Счёт', code: ErrorCodes.INVALID_SENDER, why: 'Cyrillic sender' },
  { field: 'type', value: '', code: ErrorCodes.INVALID_TYPE, why: 'empty type' },
  { field: 'type', value: 'invoice..paid', code: ErrorCodes.INVALID_TYPE, why: 'empty type segment' },
  { field: 'type', value: 'invoice.\u0000', code: ErrorCodes.INVALID_TYPE, why: 'NUL in the type' },
  { field: 'type', value: 'a.*', code: ErrorCodes.INVALID_TYPE, why: 'wildcard in the type' },
  {
    field: 'type',
    value: Array.from({ length: 200 }, (_, i) => `s${i % 10}`).join('.'),
    code: ErrorCodes.INVALID_TYPE,
    why: 'type past a routing key',
  },
  { field: 'id', value: 'not-a-uuid', code: ErrorCodes.INVALID_EVENT, why: 'id that is not a UUID' },
  { field: 'id', value: '\u0000', code: ErrorCodes.INVALID_EVENT, why: 'NUL id' },
  { field: 'id', value: 'a'.repeat(100_000), code: ErrorCodes.INVALID_EVENT, why: 'id of 100,000 characters' },
  { field: 'timeMs', value: '-1', code: ErrorCodes.INVALID_EVENT, why: 'negative time' },
  { field: 'timeMs', value: '-9223372036854775808', code: ErrorCodes.INVALID_EVENT, why: 'time of -2^63' },
  { field: 'timeMs', value: String(LIMITS.maxEventTime.value + 1), code: ErrorCodes.INVALID_EVENT, why: 'time past 9999-12-31' },
  { field: 'timeMs', value: '9223372036854775807', code: ErrorCodes.INVALID_EVENT, why: 'time of 2^63 - 1' },
  { field: 'contentType', value: 'c'.repeat(SHORT + 1), code: ErrorCodes.INVALID_EVENT, why: 'content type past 255 bytes' },
  {
    field: 'correlationId',
    value: 'é'.repeat(Math.ceil(SHORT / 2) + 1),
    code: ErrorCodes.INVALID_EVENT,
    why: 'correlation id past 255 bytes',
  },
  { field: 'causationId', value: 'x\u0000', code: ErrorCodes.INVALID_EVENT, why: 'NUL in the causation id' },
  { field: 'subject', value: 'a\u0000b', code: ErrorCodes.INVALID_EVENT, why: 'NUL in the subject' },
  { field: 'headers', value: { ['h'.repeat(SHORT + 1)]: 'v' }, code: ErrorCodes.INVALID_EVENT, why: 'header name past 255 bytes' },
  { field: 'headers', value: { 'x-herald-offset': '1' }, code: ErrorCodes.INVALID_EVENT, why: 'header of the wire contract' },
  { field: 'headers', value: { h: 'a\u0000b' }, code: ErrorCodes.INVALID_EVENT, why: 'NUL in a header value' },
  { field: 'headers', value: { h: 'v'.repeat(70_000) }, code: ErrorCodes.INVALID_EVENT, why: 'headers past the AMQP header table' },
  { field: 'traceparent', value: 'not-a-traceparent', code: ErrorCodes.INVALID_EVENT, why: 'malformed traceparent' },
  { field: 'data', value: { fill: 0x7b, length: MAX_BODY + 1 }, code: ErrorCodes.EVENT_TOO_LARGE, why: 'body one byte past the limit' },
];

const badEvent: fc.Arbitrary<EventInput> = fc
  .tuple(goodEvent, fc.constantFrom(...BAD))
  .map(([e, b]) => ({ bad: { ...e, [b.field]: b.value }, code: b.code, why: b.why }));

/** A hostile value in one field: the boundary strings, deep JSON bodies, bytes that are not UTF-8, 64-bit extremes. */
const hostileEvent: fc.Arbitrary<EventInput> = fc
  .tuple(
    goodEvent,
    fc.oneof(
      fc.record({
        field: fc.constantFrom(
          'id',
          'sender',
          'type',
          'contentType',
          'subject',
          'correlationId',
          'causationId',
          'traceparent',
          'tracestate',
        ),
        value: boundaryString,
      }),
      fc.record({
        field: fc.constant('data'),
        value: fc.oneof(
          bytesSpec([4096, MAX_BODY]),
          deepJson.map((j) => ({ bytes: new Uint8Array(Buffer.from(j.text)) })),
        ),
      }),
      fc.record({
        field: fc.constant('timeMs'),
        value: fc.constantFrom('0', String(LIMITS.maxEventTime.value), '8640000000000000', '18446744073709551615', '9007199254740993'),
      }),
      fc.record({ field: fc.constant('headers'), value: fc.dictionary(boundaryString, boundaryString, { minKeys: 1, maxKeys: 3 }) }),
    ),
  )
  .map(([e, { field, value }]) => ({ hostile: { ...e, [field]: value } }));

/** Field numbers of PublishRequest and wire types each is not: a varint where a string goes, a string where a varint goes. */
const wrongType: fc.Arbitrary<EventInput> = fc
  .record({
    base: goodEvent,
    field: fc.constantFrom(1, 2, 3, 4, 6, 10, 11, 99),
    wire: fc.constantFrom(0, 1, 2, 5),
    payload: fc.oneof(
      fc.constantFrom(new Uint8Array([0x05]), new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]), new Uint8Array([0x80])),
      fc.uint8Array({ minLength: 0, maxLength: 12 }),
    ),
  })
  .map((raw) => ({ raw }));

/** Bytes that are no PublishRequest: a length past the end, a varint of eleven bytes, wire type 7, random bytes. */
const rawEvent: fc.Arbitrary<EventInput> = fc.oneof(
  fc
    .constantFrom(
      new Uint8Array([0x22, 0x7f, 0x01]),
      new Uint8Array([0x30, ...new Array(10).fill(0xff), 0x01]),
      new Uint8Array([0x0f]),
      new Uint8Array([0x12]),
    )
    .map((raw) => ({ raw, code: ErrorCodes.INVALID_REQUEST })),
  fc.uint8Array({ minLength: 1, maxLength: 48 }).map((raw) => ({ raw })),
);

const eventInput: fc.Arbitrary<EventInput> = fc.oneof(
  { weight: 10, arbitrary: goodEvent.map((e) => ({ good: e })) },
  { weight: 4, arbitrary: badEvent },
  { weight: 4, arbitrary: hostileEvent },
  { weight: 1, arbitrary: wrongType },
  { weight: 1, arbitrary: rawEvent },
);

/** At most one body past 4 KiB per request: two of 1 MiB pass grpc-js's message bound, which ends the stream, not the event. */
const oneLargeBody = (events: readonly EventInput[]) => events.filter((e) => eventBytes(e) > 64 * 1024).length <= 1;

const request: fc.Arbitrary<RequestInput> = fc
  .array(eventInput, { minLength: 1, maxLength: 8 })
  .filter(oneLargeBody)
  .map((events) => ({ events }));

const LIMIT = PUBLISH_STREAM_LIMITS.eventsPerRequest;

/** A request past the bound of events per request: it ends the stream. */
const oversize: fc.Arbitrary<RequestInput> = fc
  .tuple(goodEvent, fc.constantFrom(LIMIT + 1, LIMIT + 2, 5000))
  .map(([e, n]) => ({ events: [{ good: e }], repeatTo: n }));

/** Broken values under 1 KB (no large body): a thousand of them still make a request grpc-js takes. */
const smallBad: fc.Arbitrary<EventInput> = fc
  .tuple(goodEvent, fc.constantFrom(...BAD.filter((b) => b.field !== 'data' && JSON.stringify(b.value).length < 1024)))
  .map(([e, b]) => ({ bad: { ...e, [b.field]: b.value }, code: b.code, why: b.why }));

/** A request right at the bound: answered event by event. */
const atLimit: fc.Arbitrary<RequestInput> = fc
  .oneof(
    goodEvent.map((e): EventInput => ({ good: e })),
    smallBad,
  )
  .map((e) => ({ events: [e], repeatTo: LIMIT }));

/** First sequence numbers: small, at 2^32, 2^53 and 2^63, and right below 2^64 (a long stream passes it). */
const firstSeq = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: 0n, max: 1000n }) },
  { weight: 2, arbitrary: fc.constantFrom(1n << 32n, (1n << 53n) + 1n, 1n << 63n, MAX_U64 - 3n, MAX_U64) },
);

/** What a flood carries: past 5,000 pending events (small events), or past 32 MiB pending (1 MiB bodies). */
export type FloodShape = 'events' | 'bytes';

/** A flood of `e`: every event is answered once; with `slowReader` the client reads no answer until its writes stall. */
export function floodOf(e: EventFields, shape: FloodShape, slowReader: boolean): StreamInput {
  const pending = PUBLISH_STREAM_LIMITS.pendingEvents;
  const bytes = PUBLISH_STREAM_LIMITS.pendingBytes;
  const event = shape === 'events' ? e : { ...e, contentType: 'text/plain', data: { fill: 0x61, length: MAX_BODY } };
  const requests = shape === 'events' ? Math.ceil((pending + LIMIT) / LIMIT) : Math.ceil(bytes / MAX_BODY) + 4;
  return {
    firstSeq: 1n,
    slowReader,
    requests: Array.from({ length: requests }, () => ({ events: [{ good: event }], repeatTo: shape === 'events' ? LIMIT : 1 })),
  };
}

const flood: fc.Arbitrary<StreamInput> = fc
  .tuple(goodEvent, fc.constantFrom<FloodShape>('events', 'bytes'), fc.boolean())
  .map(([e, shape, slow]) => floodOf(e, shape, slow));

const garble: fc.Arbitrary<Garble> = fc.oneof(
  fc.nat(64).map((truncate) => ({ truncate })),
  fc.record({ flip: fc.nat(64), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.uint8Array({ minLength: 1, maxLength: 16 }).map((append) => ({ append })),
);

/**
 * PublishStream streams: mostly a few requests of mixed events, some with a request past the bound
 * or at it, about one in 400 a flood (the flood tests send each kind every run).
 */
export const publishStreamInput: fc.Arbitrary<StreamInput> = fc.oneof(
  {
    weight: 400,
    arbitrary: fc.record({
      firstSeq,
      requests: fc.array(request, { minLength: 1, maxLength: 4 }),
      garble: fc.oneof({ weight: 19, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: garble }),
    }),
  },
  {
    weight: 20,
    arbitrary: fc.record({
      firstSeq: fc.bigInt({ min: 0n, max: 1000n }),
      requests: fc.tuple(request, oversize, request).map((r) => [...r]),
    }),
  },
  { weight: 10, arbitrary: atLimit.map((r) => ({ firstSeq: 1n, requests: [r] })) },
  { weight: 1, arbitrary: flood },
);

/** The events of a request with `repeatTo` applied. */
export function eventsOf(r: RequestInput): readonly EventInput[] {
  const last = r.events.at(-1);
  if (r.repeatTo === undefined || last === undefined || r.events.length >= r.repeatTo) return r.events;
  return [...r.events, ...new Array<EventInput>(r.repeatTo - r.events.length).fill(last)];
}

/** About how many bytes an event's body takes (to keep large bodies one to a request). */
function eventBytes(e: EventInput): number {
  const fields = 'good' in e ? e.good : 'bad' in e ? e.bad : 'hostile' in e ? e.hostile : undefined;
  const data = fields?.data;
  if (!data) return 0;
  return 'bytes' in data ? data.bytes.length : data.length;
}

/** `n` as a protobuf varint (up to 2^64 - 1). */
export function varint(n: bigint | number): Buffer {
  let v = BigInt(n);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

/** The bytes of one PublishStreamRequest, written by hand so that an event can be any bytes: field 1 `seq`, field 2 one event each. */
export function streamRequestBytes(seq: bigint, events: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0x08]), varint(seq)];
  for (const e of events) parts.push(Buffer.from([0x12]), varint(e.length), e);
  return Buffer.concat(parts);
}

/** The bytes of a RawEvent: the valid event's encoding, then the field with the wrong wire type. */
export function rawEventBytes(raw: RawEvent, encoded: Buffer): Buffer {
  const tag = varint(raw.field * 8 + raw.wire);
  const payload = Buffer.from(raw.payload);
  // A length-delimited field gets its length; the others carry the payload as their value (as long as it is).
  const body = raw.wire === 2 ? Buffer.concat([varint(payload.length), payload]) : payload;
  return Buffer.concat([encoded, tag, body]);
}
