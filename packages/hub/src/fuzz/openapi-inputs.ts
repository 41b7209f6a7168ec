import fc from 'fast-check';
import {
  boundaryJson,
  boundaryNumber,
  boundaryString,
  deepJson,
  good,
  nameString,
  offsetString,
  selectorList,
  selectorString,
  senderString,
  timeString,
  typeString,
} from './boundary.ts';

// Requests generated from the hub's own /openapi.json: every route and method, path and query
// parameters and JSON bodies built from their schemas (with plausible values for the fields Herald
// knows, so requests get past the first check), then mutated with boundary values, wrong types,
// unknown fields, missing fields, raw bodies that are not JSON.

/** A JSON schema as the document has it (the parts the generator reads). */
interface Schema {
  type?: string;
  const?: unknown;
  anyOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  patternProperties?: Record<string, Schema>;
  items?: Schema;
  minItems?: number;
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

/** One route and method of the document. */
export interface Operation {
  readonly method: string;
  /** The path template, `{name}` for a parameter. */
  readonly path: string;
  readonly params: readonly { name: string; in: 'path' | 'query' | 'header'; schema: Schema }[];
  readonly body: Schema | undefined;
  /** Statuses the document declares (e.g. whether a 503 is part of the contract). */
  readonly statuses: ReadonlySet<string>;
}

/** Every operation of an OpenAPI 3.1 document, in document order. */
export function operationsOf(doc: { paths: Record<string, Record<string, unknown>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, raw] of Object.entries(methods)) {
      const op = raw as {
        parameters?: { name: string; in: 'path' | 'query' | 'header'; schema: Schema }[];
        requestBody?: { content?: Record<string, { schema?: Schema }> };
        responses?: Record<string, unknown>;
      };
      ops.push({
        method: method.toUpperCase(),
        path,
        params: op.parameters ?? [],
        body: op.requestBody?.content?.['application/json']?.schema,
        statuses: new Set(Object.keys(op.responses ?? {})),
      });
    }
  }
  return ops;
}

/** Something the hub made earlier (a subscription name, a pause id), picked when the request is sent. */
export class Known {
  constructor(
    readonly pool: Pool,
    readonly pick: number,
  ) {}
  [fc.toStringMethod](): string {
    return `known(${this.pool} #${this.pick})`;
  }
}

/** What the hub made that later requests can name. */
export type Pool = 'subscription' | 'pause' | 'replay' | 'event' | 'offset';

const known = (pool: Pool) => fc.nat(1000).map((n) => new Known(pool, n));

/** A generated request; values may hold Known and RawJson, resolved and written when it is sent. */
export interface RestInput {
  /** Index into the operations. */
  readonly op: number;
  readonly path: Readonly<Record<string, unknown>>;
  readonly query: readonly (readonly [string, unknown])[];
  readonly headers: Readonly<Record<string, string>>;
  /** The JSON body, or raw bytes/text sent as they are. */
  readonly body?: { readonly json: unknown } | { readonly raw: string | Uint8Array; readonly contentType: string } | undefined;
}

/** A field Herald knows: a valid value (most of the time) and hostile ones. */
interface Hint {
  readonly good: fc.Arbitrary<unknown>;
  readonly bad: fc.Arbitrary<unknown>;
}

const knownOr = (pool: Pool, other: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 3, arbitrary: known(pool) }, { weight: 1, arbitrary: other });

/** Plausible and hostile values for the fields Herald knows, by name (and by route where a name means two things). */
function hint(name: string, path: string): Hint | undefined {
  switch (name) {
    case 'sender':
      return { good: good.sender, bad: senderString };
    case 'type':
      return { good: good.type, bad: typeString };
    case 'selector':
      return {
        good: fc.oneof(
          good.selectorList,
          good.selectorList.map((l) => l.join(',')),
        ),
        bad: fc.oneof(selectorString, selectorList),
      };
    case 'name':
    case 'subscription':
      return { good: knownOr('subscription', good.name), bad: nameString };
    case 'id':
      if (path.includes('pauses')) return { good: known('pause'), bad: fc.oneof(fc.uuid(), boundaryString) };
      if (path.includes('replays')) return { good: known('replay'), bad: fc.oneof(fc.uuid(), boundaryString) };
      return { good: knownOr('event', fc.uuid({ version: [4, 7] })), bad: boundaryString };
    case 'offset':
    case 'after':
    case 'last-event-id':
      return { good: knownOr('offset', good.offset), bad: fc.oneof(offsetString, boundaryNumber) };
    case 'time':
    case 'since':
    case 'until':
      return { good: good.time, bad: timeString };
    case 'last':
    case 'limit':
    case 'max':
      return { good: fc.integer({ min: 1, max: 1000 }), bad: boundaryNumber };
    case 'wait':
      // Short: a long poll on a quiet subscription holds the request (the client gives up after a second).
      return { good: fc.constantFrom(0, 0.05, 0.2), bad: boundaryNumber };
    case 'ttl':
      return { good: fc.double({ min: 0.5, max: 3600, noNaN: true }), bad: boundaryNumber };
    case 'data':
      return { good: fc.jsonValue({ maxDepth: 3 }), bad: fc.oneof(deepJson, boundaryJson) };
    case 'dataBase64':
      return {
        good: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64')),
        bad: fc.oneof(fc.constantFrom('!!!', '=', 'A', 'AAA=', 'A'.repeat(1_500_000)), boundaryString),
      };
    case 'contentType':
      return {
        good: fc.constantFrom(
          'application/json',
          'text/plain',
          'application/octet-stream',
          'application/json; charset=utf-8',
          'application/cloudevents+json',
        ),
        bad: boundaryString,
      };
    case 'headers':
      return {
        good: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
        bad: fc.dictionary(
          fc.oneof(fc.constantFrom('x-herald-time', 'x-herald-offset', 'x-herald-replay', 'h'.repeat(256)), boundaryString),
          fc.oneof(
            boundaryString,
            fc.constantFrom(30_000, 70_000).map((n) => 'v'.repeat(n)),
          ),
          { minKeys: 1, maxKeys: 4 },
        ),
      };
    case 'subject':
    case 'correlationId':
    case 'causationId':
    case 'reason':
      return { good: fc.string({ maxLength: 30 }), bad: boundaryString };
    case 'target':
      return {
        good: fc.oneof(fc.constant('flow'), fc.record({ subscription: known('subscription') })),
        bad: fc.oneof(boundaryString, fc.record({ subscription: nameString })),
      };
    default:
      return undefined;
  }
}

/** Values for `schema`, built from its own constraints (widened a little: the bounds are what is tested). */
function fromSchema(schema: Schema, name: string, path: string): fc.Arbitrary<unknown> {
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((s) => valueFor(s, name, path)));
  switch (schema.type) {
    case 'string':
      return schema.pattern ? fc.oneof(fc.stringMatching(new RegExp(schema.pattern)), fc.string()) : fc.string({ maxLength: 30 });
    case 'integer':
      return fc.integer({ min: (schema.minimum ?? -10) - 1, max: (schema.maximum ?? 1000) + 1 });
    case 'number':
      return fc.double({ min: (schema.minimum ?? -10) - 1, max: (schema.maximum ?? 1000) + 1, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(valueFor(schema.items ?? {}, name, path), { minLength: schema.minItems ?? 0, maxLength: 4 });
    case 'object': {
      if (schema.properties) {
        // Optional fields in about one request of four each, so that requests stay mostly valid.
        const required = new Set(schema.required ?? []);
        const shape: Record<string, fc.Arbitrary<unknown>> = {};
        for (const [k, s] of Object.entries(schema.properties)) {
          const v = valueFor(s, k, path);
          shape[k] = required.has(k) ? v : fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: v });
        }
        return fc.record(shape);
      }
      const values = Object.values(schema.patternProperties ?? {})[0] ?? {};
      return fc.dictionary(fc.string({ maxLength: 10 }), valueFor(values, name, path), { maxKeys: 3 });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** A value for a field: the plausible one when Herald knows the name, else one from the schema. */
function valueFor(schema: Schema, name: string, path: string): fc.Arbitrary<unknown> {
  const h = hint(name, path);
  if (!h) return fromSchema(schema, name, path);
  return fc.oneof(
    { weight: 16, arbitrary: h.good },
    { weight: 1, arbitrary: h.bad },
    { weight: 1, arbitrary: fromSchema(schema, name, path) },
  );
}

/** Bodies that are not the JSON the route wants: not JSON at all, invalid UTF-8, the wrong media type, empty, huge. */
const rawBody = fc.oneof(
  fc
    .constantFrom(
      '',
      '{',
      'not json',
      '{"a":1}}',
      "{'a':1}",
      'null',
      '[]',
      '"x"',
      '1e309',
      '\u0000',
      '{"sender":"a","type":"b",}',
      '{"__proto__":{"x":1}}',
    )
    .map((raw) => ({ raw, contentType: 'application/json' })),
  fc
    .constantFrom(new Uint8Array([0xff, 0xfe, 0x7b]), new Uint8Array([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]))
    .map((raw) => ({
      raw,
      contentType: 'application/json',
    })),
  fc
    .constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', 'application/json; charset=latin1', '')
    .map((contentType) => ({
      raw: '{"sender":"billing","type":"invoice.paid"}',
      contentType,
    })),
  fc.constantFrom(3 * 1024 * 1024).map((n) => ({ raw: `{"data":"${'x'.repeat(n)}"}`, contentType: 'application/json' })),
);

/** A change to a generated request. */
type Mutation =
  | { readonly set: number; readonly value: unknown }
  | { readonly drop: number }
  | { readonly add: string; readonly value: unknown }
  | { readonly whole: unknown }
  | { readonly query: string; readonly value: unknown }
  | { readonly param: number; readonly value: unknown }
  | { readonly raw: { raw: string | Uint8Array; contentType: string } };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ set: fc.nat(20), value: boundaryJson }) },
  { weight: 1, arbitrary: fc.record({ drop: fc.nat(20) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      add: fc.oneof(fc.constantFrom('colour', 'offset', '__proto__', 'constructor'), boundaryString),
      value: boundaryJson,
    }),
  },
  { weight: 1, arbitrary: fc.record({ whole: boundaryJson }) },
  {
    weight: 2,
    arbitrary: fc.record({
      query: fc.oneof(fc.constantFrom('selector', 'limit', 'after', 'wait', 'colour', ''), boundaryString),
      value: fc.oneof(boundaryString, boundaryNumber),
    }),
  },
  { weight: 2, arbitrary: fc.record({ param: fc.nat(5), value: fc.oneof(boundaryString, boundaryNumber) }) },
  { weight: 1, arbitrary: rawBody.map((raw) => ({ raw })) },
);

function mutate(input: RestInput, op: Operation, mutations: readonly Mutation[]): RestInput {
  let body = input.body;
  const query = [...input.query];
  const path: Record<string, unknown> = { ...input.path };
  const pathNames = op.params.filter((p) => p.in === 'path').map((p) => p.name);
  for (const m of mutations) {
    if ('raw' in m) body = m.raw;
    else if ('query' in m) query.push([m.query, m.value]);
    else if ('param' in m) {
      const name = pathNames[m.param % Math.max(1, pathNames.length)];
      if (name !== undefined) path[name] = m.value;
    } else if ('whole' in m) body = { json: m.whole };
    else if (body && 'json' in body && body.json !== null && typeof body.json === 'object' && !Array.isArray(body.json)) {
      // A fresh object without a prototype: a field named __proto__ is then a field.
      const obj: Record<string, unknown> = Object.assign(Object.create(null), body.json);
      const keys = Object.keys(obj);
      if ('add' in m) obj[m.add] = m.value;
      else if (keys.length > 0) {
        const key = keys[('set' in m ? m.set : m.drop) % keys.length] as string;
        if ('set' in m) obj[key] = m.value;
        else delete obj[key];
      }
      body = { json: obj };
    }
  }
  return { ...input, path, query, body };
}

/**
 * Requests for every operation (each about as often as another), from the schemas, about half of
 * them mutated. The arbitrary is built from the document, so the same document and seed give the
 * same requests.
 */
export function restInputs(ops: readonly Operation[]): fc.Arbitrary<RestInput> {
  return fc.oneof(
    ...ops.map((op, i) => {
      const path: Record<string, fc.Arbitrary<unknown>> = {};
      const query: fc.Arbitrary<readonly [string, unknown] | undefined>[] = [];
      const headers: Record<string, fc.Arbitrary<string>> = {};
      for (const p of op.params) {
        const v = valueFor(p.schema, p.name, op.path);
        if (p.in === 'path') path[p.name] = v;
        // Each query parameter in about one request of three: all of them at once are seldom a valid request.
        else if (p.in === 'query')
          query.push(
            fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: v.map((x) => [p.name, x] as const) }),
          );
        else headers[p.name] = offsetString;
      }
      const base = fc.record({
        path: fc.record(path),
        query: fc.tuple(...query).map((q) => q.filter((x) => x !== undefined) as (readonly [string, unknown])[]),
        headers: fc.record(headers, { requiredKeys: [] }),
        body: op.body ? valueFor(op.body, '', op.path).map((json) => ({ json })) : fc.constant(undefined),
      });
      return fc
        .tuple(base, fc.oneof(fc.constant([]), fc.array(mutation, { minLength: 1, maxLength: 3 })))
        .map(([b, mutations]) => mutate({ op: i, ...b } as RestInput, op, mutations));
    }),
  );
}
