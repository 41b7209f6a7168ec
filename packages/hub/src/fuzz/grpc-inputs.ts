import { LIMITS } from '@herald/core';
import fc from 'fast-check';
import { type BytesSpec, boundaryString, bytesSpec, good, nameString, selectorList, senderString, typeString } from './boundary.ts';

// Messages for `herald.v1.Herald`: Publish requests and Subscribe streams (open, acks, a second
// open, an ack first), valid and then broken one field at a time with the boundary values, and a
// few whose protobuf bytes are cut or garbled after encoding.

/** A change to the encoded bytes of the (first) message: what a broken client or proxy sends. */
export type Garble = { readonly truncate: number } | { readonly flip: number; readonly byte: number } | { readonly append: Uint8Array };

/** A Publish request in proto-loader's object form; `data` as a BytesSpec until it is sent. */
export interface PublishInput {
  readonly publish: Readonly<Record<string, unknown>> & { readonly data?: BytesSpec | undefined };
  readonly garble?: Garble | undefined;
}

/** A Subscribe stream: the messages the client sends, in order, then it half-closes. */
export interface SubscribeInput {
  readonly subscribe: readonly Readonly<Record<string, unknown>>[];
  readonly garble?: Garble | undefined;
}

export type GrpcInput = PublishInput | SubscribeInput;

/** `good` most of the time, else `bad` (one broken field per message on average). */
const field = <T>(goodValue: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 12, arbitrary: goodValue as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: bad });
/** An optional field: absent in about two of three messages. */
const optional = (a: fc.Arbitrary<unknown>) => fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });

/** int64 and uint64 as proto-loader takes them: decimal strings, at and past every bound. */
const longString = fc.constantFrom(
  '0',
  '-1',
  '1',
  '9000000000000000',
  String(LIMITS.maxEventTime.value),
  String(LIMITS.maxEventTime.value + 1),
  '8640000000000001',
  '-8640000000000001',
  '9223372036854775807',
  '-9223372036854775808',
  '18446744073709551615',
);

const MAX_BODY = LIMITS.eventBytes.value;

const headers = field(
  fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
  fc.dictionary(
    fc.oneof(
      fc.constantFrom('x-herald-time', 'x-herald-offset', 'x-herald-replay', 'h'.repeat(LIMITS.shortStringBytes.value + 1)),
      boundaryString,
    ),
    fc.oneof(
      boundaryString,
      fc.constantFrom(30_000, 70_000).map((n) => 'v'.repeat(n)),
    ),
    { minKeys: 1, maxKeys: 4 },
  ),
);

const publishRequest = fc.record({
  id: optional(field(fc.uuid({ version: [4, 7] }), boundaryString)),
  sender: field(good.sender, senderString),
  type: field(good.type, typeString),
  data: field(
    fc.jsonValue({ maxDepth: 2 }).map((v) => ({ bytes: new Uint8Array(Buffer.from(JSON.stringify(v) ?? 'null')) })),
    fc.oneof(
      bytesSpec([4096]),
      fc.constantFrom(MAX_BODY, MAX_BODY + 1).map((length) => ({ fill: 0x7b, length })),
    ),
  ),
  contentType: optional(field(fc.constantFrom('application/json', 'text/plain', 'application/octet-stream'), boundaryString)),
  timeMs: optional(field(fc.integer({ min: 0, max: 4_102_444_800_000 }).map(String), longString)),
  subject: optional(field(fc.string({ maxLength: 20 }), boundaryString)),
  correlationId: optional(field(fc.uuid(), boundaryString)),
  causationId: optional(field(fc.uuid(), boundaryString)),
  headers: optional(headers),
}) as fc.Arbitrary<PublishInput['publish']>;

/** Start: each position of the oneof, with its boundary values. */
const start = fc.oneof(
  fc.constant({ resume: true }),
  fc.constant({ new: true }),
  fc.constant({ earliest: true }),
  fc.oneof(fc.constantFrom('1', '2'), longString).map((offset) => ({ offset })),
  fc.oneof(fc.constant('0'), longString).map((timeMs) => ({ timeMs })),
  fc.constantFrom(0, 1, 10, 1000, 2 ** 31, 2 ** 32 - 1).map((last) => ({ last })),
);

/** Names that exist (created before the run), valid new ones, and hostile ones. */
const subscriptionName = field(fc.oneof(fc.constantFrom('fuzz-grpc', 'fuzz-grpc-billing'), good.name), nameString);

const open = fc
  .record({
    name: subscriptionName,
    selector: field(good.selectorList, selectorList),
    start: optional(start),
    maxInFlight: field(fc.constantFrom(0, 1, 10, 100), fc.constantFrom(10_000, 10_001, 2 ** 31, 2 ** 32 - 1)),
  })
  .map((o) => ({ open: o }));

const ack = field(fc.constantFrom('1', '2', '3'), longString).map((offset) => ({ ack: { offset } }));

const subscribeMessages = fc.oneof(
  { weight: 16, arbitrary: fc.tuple(open, fc.array(ack, { maxLength: 3 })).map(([o, acks]) => [o, ...acks]) },
  { weight: 1, arbitrary: fc.tuple(open, open).map(([a, b]) => [a, b]) },
  { weight: 1, arbitrary: fc.constantFrom<Record<string, unknown>[]>([], [{}]) },
  { weight: 1, arbitrary: fc.tuple(ack, open).map(([a, o]) => [a, o]) },
);

const garble: fc.Arbitrary<Garble> = fc.oneof(
  fc.nat(64).map((truncate) => ({ truncate })),
  fc.record({ flip: fc.nat(64), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.uint8Array({ minLength: 1, maxLength: 16 }).map((append) => ({ append })),
);
/** Garbled in about one message of twenty: each garbling is one kind of failure, not a thousand. */
const maybeGarble = fc.oneof({ weight: 19, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: garble });

/** Publish and Subscribe, about two to one. */
export const grpcInput: fc.Arbitrary<GrpcInput> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ publish: publishRequest, garble: maybeGarble }) },
  { weight: 1, arbitrary: fc.record({ subscribe: subscribeMessages, garble: maybeGarble }) },
);

/** The bytes `garble` makes of `bytes`. */
export function garbled(bytes: Buffer, g: Garble | undefined): Buffer {
  if (!g) return bytes;
  if ('truncate' in g) return bytes.subarray(0, Math.min(g.truncate, Math.max(0, bytes.length - 1)));
  if ('append' in g) return Buffer.concat([bytes, Buffer.from(g.append)]);
  const out = Buffer.from(bytes);
  if (out.length > 0) out[g.flip % out.length] = g.byte;
  return out;
}
