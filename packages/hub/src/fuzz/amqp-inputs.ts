import { Headers, LIMITS } from '@herald/core';
import type { Options } from 'amqplib';
import fc from 'fast-check';
import {
  type BytesSpec,
  boundaryNumber,
  boundaryString,
  bytesOf,
  bytesSpec,
  deepJson,
  RawJson,
  senderString,
  typeString,
} from './boundary.ts';

// Messages a plain AMQP client can put on herald.ingest: a valid event, then mutated — routing key,
// every property RabbitMQ does not check itself (user_id it does), header tables with every field
// type amqplib encodes, `x-herald-*` headers with hostile values, and bodies.

/** Binary bytes in a header table (an AMQP `x` field), described so a report stays readable. */
export class Bin {
  constructor(readonly spec: BytesSpec) {}
  [fc.toStringMethod](): string {
    return 'bytes' in this.spec ? `bin([${[...this.spec.bytes].join(',')}])` : `bin(fill ${this.spec.fill} × ${this.spec.length})`;
  }
}

/** A header value in amqplib's terms (`{'!': type, value}` forces a field type), with Bin for bytes. */
export type FieldValue =
  | string
  | number
  | boolean
  | null
  | Bin
  | { '!': string; value: unknown }
  | FieldValue[]
  | { [k: string]: FieldValue };

/** The body: JSON text, raw text, bytes. */
export type BodySpec = { readonly json: unknown } | { readonly text: string } | BytesSpec;

/** One message as generated; `amqpMessage` turns it into what amqplib publishes. */
export interface AmqpInput {
  readonly routingKey: string;
  readonly body: BodySpec;
  readonly properties: Readonly<Record<string, unknown>>;
  readonly headers: Readonly<Record<string, FieldValue>>;
}

const HEADER_TABLE = LIMITS.headerTableBytes.value;
const MAX_BODY = LIMITS.eventBytes.value;

/** Sizes of binary header values: small, the 30 KB that once broke forwarding, and around amqplib's 64 KiB table. */
const BIN_SIZES = [1024, 30_000, 60_000, HEADER_TABLE - 600, HEADER_TABLE - 64, HEADER_TABLE + 1, 70_000, 140_000];

const int = (min: number, max: number) => fc.integer({ min, max });
/** A typed field whose value is mostly in range for its type, sometimes not (amqplib then refuses). */
const typed = (type: string, inRange: fc.Arbitrary<unknown>, outOfRange: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 9, arbitrary: inRange }, { weight: 1, arbitrary: outOfRange }).map((value) => ({ '!': type, value }));

/** One field value of each kind the AMQP 0-9-1 table (as RabbitMQ and amqplib know it) has, but tables and arrays. */
const scalar: fc.Arbitrary<FieldValue> = fc.oneof(
  boundaryString,
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 9e15, -9e15, 2 ** 63, 1e300),
  fc.boolean(),
  fc.constant(null),
  typed('int8', int(-128, 127), int(128, 1000)),
  typed('uint8', int(0, 255), int(256, 1000)),
  typed('int16', int(-32768, 32767), int(32768, 100_000)),
  typed('uint16', int(0, 65535), int(-1, -1)),
  typed('int32', fc.integer(), fc.constant(2 ** 31)),
  typed('uint32', int(0, 2 ** 32 - 1), int(-5, -1)),
  typed('int64', fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.constant(2n ** 63n)),
  typed('float', fc.float(), fc.constant(1e300)),
  typed('double', fc.double(), fc.constant(Number.NaN)),
  typed('timestamp', fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constant(-1n)),
  typed('decimal', fc.record({ places: int(0, 255), digits: int(0, 2 ** 32 - 1) }), fc.constant({ places: 300, digits: 1 })),
  bytesSpec(BIN_SIZES).map((b) => new Bin(b)),
);

/** A header name: ordinary, Herald's own, and hostile (empty, NUL, non-ASCII, past 255 bytes). */
const headerName: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      ...Object.values(Headers),
      'x-herald-',
      'x-herald-foo',
      'X-Herald-Time',
      'x-death',
      'x-match',
      'x-first-death-reason',
      'cc',
      'BCC',
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom('', '\u0000', '\ud800', 'ключ', '😀', 'a b', '__proto__', 'constructor') },
  { weight: 1, arbitrary: fc.constantFrom(LIMITS.shortStringBytes.value, LIMITS.shortStringBytes.value + 1).map((n) => 'h'.repeat(n)) },
);

/** Any field value, nested tables and arrays included (a few levels). */
const fieldValue: fc.Arbitrary<FieldValue> = fc.letrec<{ value: FieldValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 6, arbitrary: scalar },
    { weight: 1, arbitrary: fc.array(tie('value'), { maxLength: 4 }) },
    { weight: 1, arbitrary: fc.dictionary(headerName, tie('value'), { maxKeys: 4 }) },
  ),
})).value;

/** `x-herald-time` as plain clients get it wrong: past a Date, negative, NaN, a string, a table, each field type. */
const heraldTime: fc.Arbitrary<FieldValue> = fc.oneof<fc.Arbitrary<FieldValue>[]>(
  fc.constantFrom(
    9e15,
    8.64e15,
    8.64e15 + 1,
    -1,
    -9e15,
    LIMITS.maxEventTime.value,
    LIMITS.maxEventTime.value + 1,
    0,
    1.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    1e20,
    '9e15',
    '1700000000000',
    'yesterday',
    '',
    true,
    null,
  ),
  fc.constantFrom(2n ** 63n - 1n, -(2n ** 63n), 9_000_000_000_000_000n).map((value) => ({ '!': 'int64', value })),
  fc.constantFrom(0n, 2n ** 64n - 1n).map((value) => ({ '!': 'timestamp', value })),
  fc.constant({ '!': 'decimal', value: { places: 3, digits: 1 } }),
  fc.constant({ nested: 1 }),
  fc.constant<FieldValue>([1700000000000]),
  fc.constant(new Bin({ bytes: new Uint8Array([0xff]) })),
  fc.integer({ min: -(2 ** 40), max: 2 ** 48 }),
);

/** Bodies: JSON, invalid JSON, deep JSON, binary, around the size limit. */
const body: fc.Arbitrary<BodySpec> = fc.oneof(
  { weight: 5, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((json) => ({ json })) },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        fc.constantFrom('', '{', '{"a":', 'NaN', '\u0000', '{"a":1}}', '\ud800', 'null', '1e309'),
        deepJson.map((r: RawJson) => r.text),
      )
      .map((text) => ({ text })),
  },
  { weight: 2, arbitrary: bytesSpec([4096, 100_000]) },
  { weight: 1, arbitrary: fc.constantFrom(MAX_BODY, MAX_BODY + 1, MAX_BODY + 100_000).map((length) => ({ fill: 0x7b, length })) },
);

/** Property values: what `name` is meant to hold, and hostile ones. */
function property(name: string, good: fc.Arbitrary<unknown>): fc.Arbitrary<[string, unknown]> {
  const hostile: fc.Arbitrary<unknown> =
    name === 'timestamp' || name === 'priority' || name === 'deliveryMode'
      ? fc.oneof(
          boundaryNumber.map((n) => (n instanceof RawJson ? Number(n.text) : n)),
          fc.constantFrom(-1, 256, 3, 0, Number.NaN),
        )
      : fc.oneof(boundaryString, fc.constantFrom('-1', '0', 'abc', '99999999999999999999'));
  return fc.oneof({ weight: 3, arbitrary: good }, { weight: 2, arbitrary: hostile }).map((v) => [name, v]);
}

const PROPERTIES: fc.Arbitrary<[string, unknown]>[] = [
  property('messageId', fc.uuid()),
  property('appId', senderString),
  property('type', typeString),
  property('timestamp', fc.integer({ min: 0, max: 2 ** 40 })),
  property(
    'contentType',
    fc.constantFrom(
      'application/json',
      'text/plain',
      'application/octet-stream',
      'application/cloudevents+json',
      'application/json; charset=utf-8',
    ),
  ),
  property('contentEncoding', fc.constantFrom('gzip', 'identity', 'utf-8')),
  property('correlationId', fc.uuid()),
  property('expiration', fc.constantFrom('60000', '1', '0', String(2 ** 32))),
  property('priority', fc.integer({ min: 0, max: 9 })),
  property('deliveryMode', fc.constantFrom(1, 2)),
  property('replyTo', fc.constantFrom('amq.rabbitmq.reply-to', 'reply')),
];

/** A routing key: valid, one segment, empty segments, bad characters, non-ASCII, at and past 255 bytes. */
const routingKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(senderString, typeString).map(([s, t]) => `${s}.${t}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '',
      '.',
      '..',
      'billing',
      'billing.',
      '.invoice.paid',
      'billing..paid',
      'bill ing.x',
      'billing.#',
      'billing.*',
      'счёт.оплачен',
      '😀.😀',
      'a\u0000b.c',
      'a.\ud800',
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(253, 254, 255, 256).map((n) => `b.${'t'.repeat(n - 2)}`) },
);

/** A valid event message: what a plain client does right. */
const validMessage: fc.Arbitrary<AmqpInput> = fc
  .record({
    sender: fc.constantFrom('billing', 'shipping', 'crm'),
    type: fc.constantFrom('invoice.paid', 'parcel.sent', 'user.created'),
    id: fc.uuid({ version: [4, 7] }),
    json: fc.jsonValue({ maxDepth: 2 }),
    time: fc.integer({ min: 0, max: LIMITS.maxEventTime.value }),
  })
  .map(({ sender, type, id, json, time }) => ({
    routingKey: `${sender}.${type}`,
    body: { json },
    properties: { messageId: id, appId: sender, type, contentType: 'application/json', deliveryMode: 2 },
    headers: { [Headers.TIME]: time },
  }));

type Mutation =
  | { readonly routingKey: string }
  | { readonly property: [string, unknown] }
  | { readonly drop: number }
  | { readonly header: [string, FieldValue] }
  | { readonly body: BodySpec };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: routingKey.map((k) => ({ routingKey: k })) },
  { weight: 3, arbitrary: fc.oneof(...PROPERTIES).map((p) => ({ property: p })) },
  { weight: 1, arbitrary: fc.nat(20).map((n) => ({ drop: n })) },
  { weight: 3, arbitrary: fc.tuple(headerName, fieldValue).map((h) => ({ header: h })) },
  { weight: 2, arbitrary: heraldTime.map((v) => ({ header: [Headers.TIME, v] as [string, FieldValue] })) },
  { weight: 2, arbitrary: body.map((b) => ({ body: b })) },
);

function mutate(m: AmqpInput, mutations: readonly Mutation[]): AmqpInput {
  let { routingKey: key, body: b } = m;
  const properties: Record<string, unknown> = { ...m.properties };
  // No prototype: a header named __proto__ is a header, not a prototype.
  const headers: Record<string, FieldValue> = Object.assign(Object.create(null), m.headers);
  for (const mu of mutations) {
    if ('routingKey' in mu) key = mu.routingKey;
    else if ('property' in mu) properties[mu.property[0]] = mu.property[1];
    else if ('drop' in mu) {
      const names = [...Object.keys(properties), ...Object.keys(headers).map((h) => `header:${h}`)];
      const name = names[mu.drop % Math.max(1, names.length)];
      if (name?.startsWith('header:')) delete headers[name.slice(7)];
      else if (name !== undefined) delete properties[name];
    } else if ('header' in mu) headers[mu.header[0]] = mu.header[1];
    else b = mu.body;
  }
  return { routingKey: key, body: b, properties, headers };
}

/** Valid messages and mutations of them (none, some, many); about one in five is left valid. */
export const amqpInput: fc.Arbitrary<AmqpInput> = fc
  .tuple(
    validMessage,
    fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 4, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 5 }) }),
  )
  .map(([m, mutations]) => mutate(m, mutations));

function fieldOf(v: FieldValue): unknown {
  if (v instanceof Bin) return bytesOf(v.spec);
  if (Array.isArray(v)) return v.map(fieldOf);
  if (v !== null && typeof v === 'object' && !('!' in v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fieldOf(x)]));
  return v;
}

/** What amqplib publishes for `input`: routing key, body bytes, options (persistent unless the input says otherwise). */
export function amqpMessage(input: AmqpInput): { routingKey: string; content: Buffer; options: Options.Publish } {
  const b = input.body;
  const content = 'json' in b ? Buffer.from(JSON.stringify(b.json) ?? 'null') : 'text' in b ? Buffer.from(b.text, 'utf8') : bytesOf(b);
  const headers = fieldOf(input.headers) as Record<string, unknown>;
  return { routingKey: input.routingKey, content, options: { ...(input.properties as Options.Publish), headers } };
}
