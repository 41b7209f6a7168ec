import { assertSender, assertType } from '@herald/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { Auth } from '../auth/auth.ts';
import {
  type AsyncApiCache,
  type AsyncApiServer,
  asyncApiDocument,
  CATALOG_LIMITS,
  type Catalog,
  type CatalogPut,
  type CatalogVisible,
} from '../catalog/index.ts';
import type { CatalogSchemaVersion, CatalogType } from '../store/index.ts';
import { named } from './openapi.ts';
import { isoOrNull } from './pauses-routes.ts';
import { badParameter, notFound } from './problems.ts';

const Iso = Type.String({ format: 'date-time' });
const NullableIso = Type.Union([Iso, Type.Null()]);
const AnyJson = Type.Unknown();

const ProducerSchema = named(
  'CatalogProducer',
  Type.Object({
    sender: Type.String(),
    userId: Type.Union([Type.String(), Type.Null()], { description: 'the publishing RabbitMQ user; null for messages that named none' }),
    events: Type.Integer({ description: 'events counted' }),
    firstSeen: Iso,
    lastSeen: Iso,
  }),
);

const ConsumerSchema = named(
  'CatalogConsumer',
  Type.Object({
    kind: Type.Union([Type.Literal('subscription'), Type.Literal('exchange')]),
    name: Type.String(),
    firstSeen: Iso,
    lastSeen: Iso,
  }),
);

const typeFields = {
  sender: Type.String(),
  type: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  version: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
    description: 'the latest schema version; null when the type has no schema',
  }),
  schema: Type.Unknown({ description: 'the latest JSON Schema (draft-07); null when none' }),
  example: Type.Unknown({ description: 'an example payload; null when none' }),
  validate: Type.Boolean({ description: 'whether the hub checks events of the type against the latest schema at ingest' }),
  updatedAt: NullableIso,
  producers: Type.Optional(
    Type.Array(ProducerSchema, { description: 'the publishers seen (RabbitMQ users); for admins only, absent for other callers' }),
  ),
  consumers: Type.Optional(
    Type.Array(ConsumerSchema, {
      description: 'the subscriptions and exchanges seen receiving it; for admins only, absent for other callers',
    }),
  ),
  firstSeen: Type.Union([Iso, Type.Null()], { description: 'the first event seen of the type; null when none was' }),
  lastSeen: NullableIso,
};

const CatalogTypeSchema = named('CatalogType', Type.Object(typeFields));

const VersionSchema = named(
  'CatalogSchemaVersion',
  Type.Object({ version: Type.Integer({ minimum: 1 }), schema: AnyJson, createdAt: Iso }),
);

const CatalogTypeWithVersionsSchema = named(
  'CatalogTypeWithVersions',
  Type.Object({ ...typeFields, versions: Type.Array(VersionSchema, { description: 'every version, oldest first' }) }),
);

const PutBody = Type.Object(
  {
    schema: Type.Unknown({
      description: `a JSON Schema (draft-07, ajv 8 with ajv-formats); at most ${CATALOG_LIMITS.schemaBytes} bytes, ${CATALOG_LIMITS.schemaDepth} levels, references inside it only`,
    }),
    version: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 2_147_483_647,
        description: 'the new version when the schema changed (above the latest); default the latest + 1',
      }),
    ),
    description: Type.Optional(Type.String({ maxLength: CATALOG_LIMITS.descriptionChars })),
    example: Type.Optional(Type.Unknown({ description: 'an example payload: it must match the schema' })),
    validate: Type.Optional(Type.Boolean({ description: 'check events of the type at ingest; default false' })),
  },
  {
    additionalProperties: false,
    examples: [
      {
        schema: {
          type: 'object',
          properties: { invoiceId: { type: 'string' }, amount: { type: 'integer', minimum: 0 } },
          required: ['invoiceId'],
        },
        description: 'An invoice was paid in full',
        example: { invoiceId: 'inv-1', amount: 1200 },
        validate: true,
      },
    ],
  },
);

const Params = Type.Object({
  sender: Type.String({ description: 'the sender' }),
  type: Type.String({ description: 'the event type, e.g. invoice.paid' }),
});

type Params = { sender: string; type: string };

/**
 * A type as the API shows it. `observed` false leaves out its producers and consumers: they name
 * RabbitMQ users, subscriptions and exchanges of others, which only admins may see.
 */
export function catalogTypeJson(t: CatalogType, observed = true) {
  const e = t.entry;
  let first: number | undefined;
  let last: number | undefined;
  for (const p of t.producers) {
    first = first === undefined ? p.firstSeen : Math.min(first, p.firstSeen);
    last = last === undefined ? p.lastSeen : Math.max(last, p.lastSeen);
  }
  return {
    sender: t.sender,
    type: t.type,
    description: e?.description ?? null,
    version: e?.latest?.version ?? null,
    schema: e?.latest?.schema ?? null,
    example: e?.example ?? null,
    validate: e?.validate ?? false,
    updatedAt: isoOrNull(e?.updatedAt),
    ...(observed
      ? {
          producers: t.producers.map((p) => ({
            sender: p.sender,
            userId: p.userId === '' ? null : p.userId,
            events: p.events,
            firstSeen: new Date(p.firstSeen).toISOString(),
            lastSeen: new Date(p.lastSeen).toISOString(),
          })),
          consumers: t.consumers.map((c) => ({
            kind: c.kind,
            name: c.name,
            firstSeen: new Date(c.firstSeen).toISOString(),
            lastSeen: new Date(c.lastSeen).toISOString(),
          })),
        }
      : {}),
    firstSeen: isoOrNull(first),
    lastSeen: isoOrNull(last),
  };
}

function withVersions(t: CatalogType & { versions: CatalogSchemaVersion[] }, observed: boolean) {
  return {
    ...catalogTypeJson(t, observed),
    versions: t.versions.map((v) => ({ version: v.version, schema: v.schema, createdAt: new Date(v.createdAt).toISOString() })),
  };
}

/** The `after` of a page, `<sender>:<type>`: a 400 naming it unless both parts are names. */
function afterKey(raw: string): { sender: string; type: string } {
  const colon = raw.indexOf(':');
  const sender = raw.slice(0, colon);
  const type = raw.slice(colon + 1);
  try {
    if (colon < 0) throw new Error('no colon');
    assertSender(sender);
    assertType(type, sender);
  } catch {
    throw badParameter('after', 'after must be the next of a previous page: <sender>:<type>');
  }
  return { sender, type };
}

/** The types the caller's roles cover: admins all; others the types their subscriber selectors match, or their publisher senders. */
function visibleTo(auth: Auth, request: FastifyRequest): CatalogVisible {
  const covered = auth.typesCovered(request.principal);
  return covered === undefined ? () => true : (k) => covered(k.sender, k.type);
}

/** Only admins see who produces and consumes a type. */
const seesObserved = (auth: Auth, request: FastifyRequest) => auth.isAdmin(request.principal);

/** Callers whose roles are the same see the same AsyncAPI document: the key it is kept under. */
function rolesKey(auth: Auth, request: FastifyRequest): string {
  const p = request.principal;
  return auth.isAdmin(p) || p.kind !== 'user' ? 'admin' : JSON.stringify(p.user.roles);
}

/** The caller's view of a type: without what was observed unless it is an admin. */
const hideObserved = (t: CatalogType): CatalogType => ({ ...t, producers: [], consumers: [] });

/**
 * `/api/v1/catalog` (docs/catalog.md): the event types, their JSON Schemas in versions, whether the
 * hub validates them, and who produces and consumes them; also as an AsyncAPI 3.0 document. Any
 * user reads (the types its roles cover: a type outside them is a 404, as for an absent one; the
 * producers and consumers for admins only); writing needs a publisher role with the sender (or admin).
 */
export function catalogRoutes(app: FastifyInstance, deps: { catalog: Catalog; server: AsyncApiServer; asyncApi: AsyncApiCache }): void {
  const { catalog } = deps;

  app.get(
    '/api/v1/catalog',
    {
      schema: {
        summary: 'Every event type: its latest schema, description, producers and consumers',
        description:
          'Types with a catalog entry and types only seen in the traffic, by sender and type, a page at a time: ' +
          `\`limit\` types (default ${CATALOG_LIMITS.pageTypes}), fewer once their schemas and examples reach ${CATALOG_LIMITS.pageBytes / 1024 / 1024} MiB, ` +
          'and only those the caller’s roles cover. Follow `next` (as `after`) until it is null.',
        tags: ['catalog'],
        querystring: Type.Object({
          after: Type.Optional(Type.String({ description: 'the `next` of the previous page: <sender>:<type>', maxLength: 400 })),
          limit: Type.Optional(
            Type.Integer({ minimum: 1, maximum: CATALOG_LIMITS.maxPageTypes, description: `default ${CATALOG_LIMITS.pageTypes}` }),
          ),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(CatalogTypeSchema),
            next: Type.Union([Type.String(), Type.Null()], { description: 'where the next page starts (pass as after); null at the end' }),
          }),
        },
      },
    },
    async (request) => {
      const q = request.query as { after?: string; limit?: number };
      const after = q.after === undefined ? undefined : afterKey(q.after);
      const page = await catalog.list({ after, limit: q.limit }, visibleTo(app.auth, request));
      const observed = seesObserved(app.auth, request);
      return {
        items: page.types.map((t) => catalogTypeJson(t, observed)),
        next: page.next === undefined ? null : `${page.next.sender}:${page.next.type}`,
      };
    },
  );

  app.get(
    '/api/v1/catalog/asyncapi.json',
    {
      schema: {
        summary: 'The catalog as an AsyncAPI 3.0 document',
        description:
          'A channel per <sender>.<type> on the herald.events exchange (the types the caller’s roles cover), its message with the latest schema; ' +
          'for admins, send operations for producers and receive operations for consumers. Built again after a change, at most once a second, ' +
          `else kept up to ${CATALOG_LIMITS.asyncApiMaxAgeMs / 1000} s.`,
        tags: ['catalog'],
        response: { 200: Type.Object({ asyncapi: Type.Literal('3.0.0') }, { additionalProperties: true }) },
      },
    },
    async (request, reply) => {
      const visible = visibleTo(app.auth, request);
      const observed = seesObserved(app.auth, request);
      const text = await deps.asyncApi.get(rolesKey(app.auth, request), async () => {
        const { types, cut } = await catalog.all(visible);
        return JSON.stringify(asyncApiDocument(observed ? types : types.map(hideObserved), deps.server, { cut }));
      });
      // Already JSON: sent as it is, not serialized again.
      return reply.type('application/json; charset=utf-8').send(text);
    },
  );

  app.get(
    '/api/v1/catalog/:sender/:type',
    {
      schema: {
        summary: 'One event type, with every version of its schema',
        tags: ['catalog'],
        params: Params,
        response: { 200: CatalogTypeWithVersionsSchema },
        problems: [404],
      },
    },
    async (request) => {
      const { sender, type } = request.params as Params;
      const t = await catalog.get(sender, type);
      if (!visibleTo(app.auth, request)(t)) throw notFound(`${sender}:${type} is not in the catalog`);
      return withVersions(t, seesObserved(app.auth, request));
    },
  );

  app.put(
    '/api/v1/catalog/:sender/:type',
    {
      schema: {
        summary: 'Describe an event type: its JSON Schema (a new version when it changed), description, example, validation',
        description:
          'Replaces the description, example and validate flag. A schema that differs from the latest becomes a new version ' +
          '(`version`, or the latest + 1); the same schema keeps its version. Refused with 400: a schema ajv cannot compile ' +
          '(ajv’s message), too large or deep, with a reference outside itself or an unsafe pattern; an example that does not match. ' +
          `Refused with 429 LIMIT_EXCEEDED past the catalog's bounds: ${CATALOG_LIMITS.maxVersions} versions a type, ` +
          `${CATALOG_LIMITS.maxEntries} entries, ${CATALOG_LIMITS.maxValidated} validated types. ` +
          'With validate, events of the type whose data does not match are refused to a REST or gRPC publisher and ' +
          'dead-lettered when they come through AMQP (SCHEMA_VIOLATION).',
        tags: ['catalog'],
        params: Params,
        body: PutBody,
        response: { 200: CatalogTypeWithVersionsSchema, 201: CatalogTypeWithVersionsSchema },
        problems: [400, 409, 429, 503],
      },
    },
    async (request, reply) => {
      const { sender, type } = request.params as Params;
      // A bad name is a 400 for anyone; only a good one is checked against the caller's senders.
      assertSender(sender);
      assertType(type, sender);
      app.auth.assertPublish(request.principal, sender);
      const { type: t, created } = await catalog.put(sender, type, request.body as CatalogPut);
      return reply
        .code(created ? 201 : 200)
        .header('location', `/api/v1/catalog/${encodeURIComponent(sender)}/${encodeURIComponent(type)}`)
        .send(withVersions(t, seesObserved(app.auth, request)));
    },
  );

  app.delete(
    '/api/v1/catalog/:sender/:type',
    {
      schema: {
        summary: 'Delete an event type from the catalog',
        description:
          'Its entry, every schema version and what was observed of it; events of the type are no longer validated. Seen again, it comes back without a schema.',
        tags: ['catalog'],
        params: Params,
        response: { 204: Type.Null({ description: 'deleted' }) },
        problems: [404, 503],
      },
    },
    async (request, reply) => {
      const { sender, type } = request.params as Params;
      // A bad name is a 400 for anyone; only a good one is checked against the caller's senders.
      assertSender(sender);
      assertType(type, sender);
      app.auth.assertPublish(request.principal, sender);
      await catalog.delete(sender, type);
      return reply.code(204).send(null);
    },
  );
}
