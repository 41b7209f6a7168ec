import { type TypeBoxTypeProvider, TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import {
  bodyJson,
  createEvent,
  ErrorCodes,
  type EventInit,
  HeraldError,
  type HeraldEvent,
  isJsonContentType,
  isoTime,
  isUuid,
  parseOffset as parseOffsetValue,
  parseSelector,
  preview,
  type Selector,
  validTraceContext,
} from '@herald/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import { queryMayHaveMore, READ_MAX_BYTES, type Store, type StoredEvent } from '../store/index.ts';
import {
  CLOUDEVENT_BATCH_MEDIA,
  CLOUDEVENT_MEDIA,
  CloudEventSchema,
  cloudEvent,
  fromBinary,
  fromStructured,
  isBinaryCloudEvent,
  prefers,
} from './cloudevents.ts';
import { guardedJsonParser } from './input-guard.ts';
import { named } from './openapi.ts';
import { badParameter, notFound } from './problems.ts';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
/** A date, or a date-time with a zone: a time without a zone would silently mean the hub's local time. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2}))?$/;

/** An event as the REST API shows it. Offsets are decimal strings: 64 bits survive any JSON parser. */
export const EventSchema = named(
  'Event',
  Type.Object({
    offset: Type.String({ pattern: '^[0-9]+$', description: 'position in the log: a 64-bit integer as a decimal string' }),
    id: Type.String({ format: 'uuid' }),
    sender: Type.String(),
    type: Type.String(),
    time: Type.String({ format: 'date-time' }),
    contentType: Type.String(),
    data: Type.Optional(Type.Unknown({ description: 'the body, parsed, when the content type is JSON' })),
    dataBase64: Type.Optional(Type.String({ description: 'the body in base64, for other content types (or bytes that are not JSON)' })),
    headers: Type.Record(Type.String(), Type.String()),
    subject: Type.Optional(Type.String()),
    correlationId: Type.Optional(Type.String()),
    causationId: Type.Optional(Type.String()),
    traceparent: Type.Optional(Type.String({ description: 'W3C trace context, 00-<trace id>-<parent id>-<flags>' })),
    tracestate: Type.Optional(Type.String({ description: 'W3C tracestate' })),
  }),
);

/** The answers of a route that reads one event: JSON, or a CloudEvent in structured mode. */
const ONE_EVENT = {
  content: {
    'application/json': { schema: EventSchema },
    [CLOUDEVENT_MEDIA]: { schema: CloudEventSchema },
  },
};

/** Answers one event as the request's Accept asks: a CloudEvent (structured mode), else JSON. */
function sendOne(request: FastifyRequest, reply: FastifyReply, e: StoredEvent) {
  if (prefers(request.headers.accept, CLOUDEVENT_MEDIA)) return reply.type(CLOUDEVENT_MEDIA).send(JSON.stringify(cloudEvent(e)));
  return eventJson(e);
}

const OffsetParam = (description = 'offset, a non-negative 64-bit integer in decimal') => Type.String({ description });
const TimeParam = (what: string) => Type.String({ description: `${what}: ISO 8601 date, or date-time with Z or an offset` });

/** An event as the REST API shows it (GET /api/v1/events and friends). */
export type EventJson = Static<typeof EventSchema>;

/** The JSON shape of a stored event. Non-JSON bodies (or bytes that claim JSON but are not) go as base64. */
export function eventJson(e: StoredEvent): EventJson {
  const out: EventJson = {
    offset: e.offset.toString(),
    id: e.id,
    sender: e.sender,
    type: e.type,
    time: isoTime(e.time),
    contentType: e.contentType,
    headers: e.headers,
  };
  Object.assign(out, bodyJson(e.contentType, e.data));
  if (e.subject !== undefined) out.subject = e.subject;
  if (e.correlationId !== undefined) out.correlationId = e.correlationId;
  if (e.causationId !== undefined) out.causationId = e.causationId;
  if (e.traceparent !== undefined) out.traceparent = e.traceparent;
  if (e.tracestate !== undefined) out.tracestate = e.tracestate;
  return out;
}

function parseTime(parameter: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = ISO_TIME.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms))
    throw badParameter(
      parameter,
      `${parameter} ${preview(value)} is not an ISO 8601 time with a zone, e.g. 2026-01-31T12:00:00Z or 2026-01-31`,
    );
  return ms;
}

/** A decimal offset from a request, or undefined when absent; a 400 naming `parameter` when it is not one (core's parseOffset). */
export function parseOffset(parameter: string, value: string | undefined): bigint | undefined {
  return value === undefined ? undefined : parseOffsetValue(parameter, value);
}

/** A selector from a request, or undefined when absent; a 400 naming `selector` when it is not one. */
export function parseSelectorParam(value: string | undefined): Selector | undefined {
  if (value === undefined) return undefined;
  try {
    return parseSelector(value);
  } catch (err) {
    if (err instanceof HeraldError)
      throw new HeraldError(err.code, err.message, { cause: err, details: { ...err.details, parameter: 'selector' } });
    throw badParameter('selector', (err as Error).message);
  }
}

/** The body field a createEvent error is about, when the error does not name it itself. */
function bodyField(err: HeraldError, cloudEvent: boolean): string | undefined {
  if (err.code === ErrorCodes.INVALID_SENDER) return cloudEvent ? 'source' : 'sender';
  if (err.code === ErrorCodes.INVALID_TYPE) return 'type';
  if (err.code === ErrorCodes.EVENT_TOO_LARGE) return 'data';
  return undefined;
}

/** What the event routes need from the hub. */
export interface EventsRoutesDeps {
  store: Store;
  /** Publishes to herald.ingest; resolves when RabbitMQ confirmed. */
  publish(event: HeraldEvent): Promise<void>;
  /** Largest event body accepted by POST, in bytes. */
  maxEventBytes: number;
}

/** GET /api/v1/events (query), GET one by offset or id, POST one (publish through herald.ingest). */
export function eventsRoutes(app: FastifyInstance, deps: EventsRoutesDeps): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/api/v1/events',
    {
      schema: {
        summary: 'Query the log',
        description:
          'Events matching a selector, in ascending offset order, at most `limit` per page; pass `next` as `after` for the ' +
          'next page (null: no more). `last=N` gives the last N matching events (still ascending) among those after ' +
          '`after` and between `since` and `until`; it takes the place of `limit`, and its `next` is null. Offsets are ' +
          'decimal strings, as 64-bit integers do not survive every JSON parser. With `Accept: ' +
          `${CLOUDEVENT_BATCH_MEDIA}\`` +
          ' the page is a JSON array of CloudEvents (structured mode, docs/cloudevents.md) and `next` travels as the ' +
          'response header `x-herald-next` (absent: no more).',
        tags: ['events'],
        querystring: Type.Object(
          {
            selector: Type.Optional(
              Type.String({ description: 'patterns sender:type, comma-separated, e.g. billing:*,*:invoice.paid; default *:*' }),
            ),
            after: Type.Optional(OffsetParam('only offsets greater than this (the `next` of a page)')),
            since: Type.Optional(TimeParam('only events at or after this time')),
            until: Type.Optional(TimeParam('only events before this time')),
            last: Type.Optional(
              Type.Integer({
                minimum: 1,
                maximum: MAX_LIMIT,
                description: 'the last N matching events (the newest of them whose bodies add up to 16 MiB, when they are more)',
              }),
            ),
            limit: Type.Optional(
              Type.Integer({ minimum: 1, maximum: MAX_LIMIT, description: `page size, default ${DEFAULT_LIMIT}, max ${MAX_LIMIT}` }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: {
            content: {
              'application/json': {
                schema: Type.Object({
                  events: Type.Array(EventSchema),
                  next: Type.Union([Type.String(), Type.Null()], {
                    description: 'pass as `after` for the next page; null when there is no more',
                  }),
                }),
              },
              [CLOUDEVENT_BATCH_MEDIA]: { schema: Type.Array(CloudEventSchema) },
            },
          },
        },
        problems: [400],
      },
    },
    async (request, reply) => {
      const q = request.query;
      if (q.last !== undefined && q.limit !== undefined) throw badParameter('limit', 'give either last or limit, not both');
      const selector = parseSelectorParam(q.selector);
      app.auth.assertRead(request.principal, selector);
      const after = parseOffset('after', q.after);
      const since = parseTime('since', q.since);
      const until = parseTime('until', q.until);
      const batch = prefers(request.headers.accept, CLOUDEVENT_BATCH_MEDIA);
      const answer = (rows: StoredEvent[], next: string | null) => {
        if (!batch) return { events: rows.map(eventJson), next };
        if (next !== null) reply.header('x-herald-next', next);
        // A string goes out as it is: the CloudEvents are built for this media type, not serialized by the JSON schema.
        return (reply as FastifyReply).type(CLOUDEVENT_BATCH_MEDIA).send(JSON.stringify(rows.map(cloudEvent)));
      };
      if (q.last !== undefined) {
        const rows = await deps.store.query({ selector, after, since, until, last: q.last, limit: q.last, maxBytes: READ_MAX_BYTES });
        return answer(rows, null);
      }
      const limit = q.limit ?? DEFAULT_LIMIT;
      // One row more than asked tells whether there is a next page; a page also ends once its
      // bodies reach READ_MAX_BYTES (then `next` goes on from its last event).
      const query = { selector, after, since, until, limit: limit + 1, maxBytes: READ_MAX_BYTES };
      const rows = await deps.store.query(query);
      const more = rows.length > limit || queryMayHaveMore(query, rows);
      const page = rows.length > limit ? rows.slice(0, limit) : rows;
      return answer(page, more ? (page[page.length - 1]?.offset.toString() ?? null) : null);
    },
  );

  api.get(
    '/api/v1/events/:offset',
    {
      schema: {
        summary: 'One event by offset',
        description: `With \`Accept: ${CLOUDEVENT_MEDIA}\` the event as a CloudEvent in structured mode (docs/cloudevents.md).`,
        tags: ['events'],
        params: Type.Object({ offset: OffsetParam() }),
        response: { 200: ONE_EVENT },
        problems: [400, 404],
      },
    },
    async (request, reply) => {
      const offset = parseOffset('offset', request.params.offset) as bigint;
      const event = await deps.store.getByOffset(offset);
      // One outside the caller's selectors is as absent as one that is not there.
      if (!event || !app.auth.mayReadEvent(request.principal, event.sender, event.type)) throw notFound(`no event at offset ${offset}`);
      return sendOne(request, reply, event);
    },
  );

  api.get(
    '/api/v1/events/by-id/:id',
    {
      schema: {
        summary: 'One event by id',
        description: `With \`Accept: ${CLOUDEVENT_MEDIA}\` the event as a CloudEvent in structured mode (docs/cloudevents.md).`,
        tags: ['events'],
        params: Type.Object({ id: Type.String({ description: 'the event id, a UUID' }) }),
        response: { 200: ONE_EVENT },
        problems: [400, 404],
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      if (!isUuid(id)) throw badParameter('id', `id ${JSON.stringify(id)} is not a UUID`);
      const event = await deps.store.getById(id);
      if (!event || !app.auth.mayReadEvent(request.principal, event.sender, event.type)) throw notFound(`no event with id ${id}`);
      return sendOne(request, reply, event);
    },
  );

  // Its own scope, for its body parsers: a binary-mode CloudEvent's data is any content type, as bytes.
  app.register(async (scope) => publishRoute(scope, deps));
}

/** What POST /api/v1/events publishes for a JSON body (Herald's own form). */
function publishInit(b: PublishBody): EventInit {
  if (b.data !== undefined && b.dataBase64 !== undefined) throw badParameter('dataBase64', 'give either data or dataBase64, not both');
  if (b.dataBase64 !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(b.dataBase64))
    throw badParameter('dataBase64', 'dataBase64 is not base64');
  const contentType = b.contentType ?? (b.dataBase64 !== undefined ? 'application/octet-stream' : 'application/json');
  let data: Buffer;
  if (b.dataBase64 !== undefined) data = Buffer.from(b.dataBase64, 'base64');
  else if (isJsonContentType(contentType)) data = Buffer.from(JSON.stringify(b.data ?? null));
  else if (typeof b.data === 'string' || b.data === undefined) data = Buffer.from(b.data ?? '', 'utf8');
  else throw badParameter('data', `with content type ${contentType}, data must be a string (or send dataBase64)`);
  return {
    sender: b.sender,
    type: b.type,
    data,
    id: b.id,
    time: parseTime('time', b.time),
    contentType,
    subject: b.subject,
    correlationId: b.correlationId,
    causationId: b.causationId,
    headers: b.headers,
    traceparent: b.traceparent,
    tracestate: b.tracestate,
  };
}

const PublishBodySchema = Type.Object(
  {
    sender: Type.String({ description: 'one segment [A-Za-z0-9_-]{1,64}' }),
    type: Type.String({ description: 'dot-separated segments, e.g. invoice.paid' }),
    data: Type.Optional(Type.Unknown({ description: 'the body as JSON' })),
    dataBase64: Type.Optional(Type.String({ contentEncoding: 'base64', description: 'the body as base64 bytes' })),
    id: Type.Optional(Type.String({ description: 'a UUID, the idempotency key; default a new UUIDv7' })),
    time: Type.Optional(TimeParam('the event time; default now')),
    contentType: Type.Optional(Type.String({ description: 'default application/json' })),
    subject: Type.Optional(Type.String()),
    correlationId: Type.Optional(Type.String()),
    causationId: Type.Optional(Type.String()),
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    traceparent: Type.Optional(
      Type.String({ description: "W3C trace context 00-<32 hex>-<16 hex>-<2 hex>; default the request's traceparent header" }),
    ),
    tracestate: Type.Optional(Type.String({ description: 'W3C tracestate, at most 512 bytes of printable ASCII, with a traceparent' })),
  },
  {
    additionalProperties: false,
    examples: [{ sender: 'billing', type: 'invoice.paid', data: { invoice: 'INV-1042', amount: 12.5 } }],
  },
);
type PublishBody = Static<typeof PublishBodySchema>;

/** The binary-mode attributes, documented as header parameters (every other ce-* header is an extension). */
const CE_HEADERS = Type.Object(
  Object.fromEntries(
    ['specversion', 'id', 'source', 'type', 'time', 'subject', 'correlationid', 'causationid', 'traceparent', 'tracestate'].map((name) => [
      `ce-${name}`,
      Type.Optional(Type.String({ description: `binary-mode CloudEvent: the ${name} attribute (percent-encoded)` })),
    ]),
  ),
);

function publishRoute(scope: FastifyInstance, deps: EventsRoutesDeps): void {
  const json = guardedJsonParser(scope);
  scope.removeContentTypeParser('application/json');
  scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) =>
    isBinaryCloudEvent(request.headers) ? done(null, body) : json(request, body, done),
  );
  scope.addContentTypeParser(CLOUDEVENT_MEDIA, { parseAs: 'string' }, json);
  scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  scope.post(
    '/api/v1/events',
    {
      schema: {
        summary: 'Publish an event',
        description:
          'Publishes through herald.ingest like any publisher and answers 202 with the id once RabbitMQ confirmed; the event ' +
          'gets its offset when the hub stores it. `data` is any JSON value (stored as JSON; a plain string when `contentType` ' +
          'is not JSON); `dataBase64` carries bytes instead (content type default application/octet-stream). The body may also ' +
          `be a CloudEvent: structured mode (Content-Type ${CLOUDEVENT_MEDIA}) or binary mode (the ce-* headers, the body ` +
          'is the data, Content-Type its content type); its source is the sender and its id must be a UUID (docs/cloudevents.md). ' +
          "Without a trace context of its own, the event takes the request's W3C traceparent/tracestate headers (dropped when malformed).",
        tags: ['events'],
        headers: CE_HEADERS,
        body: {
          content: {
            'application/json': { schema: PublishBodySchema },
            [CLOUDEVENT_MEDIA]: { schema: CloudEventSchema },
            '*/*': { schema: Type.Unknown({ description: 'binary-mode CloudEvent: the data, with the ce-* headers' }) },
          },
        },
        response: { 202: Type.Object({ id: Type.String({ description: 'the event id' }) }) },
        problems: [400, 413, 415, 502, 503],
        problemDescriptions: {
          400:
            'A bad parameter or body field, named in `parameter`; or SCHEMA_VIOLATION: the type validates (docs/catalog.md) ' +
            "and the data does not match its catalog schema (`detail` names the schema version and the validator's error). " +
            'Nothing was published.',
        },
      },
      // A binary-mode CloudEvent with JSON data arrives as bytes, which the JSON schema is not about.
      validatorCompiler: (route) => {
        const check = TypeBoxValidatorCompiler(route);
        return route.httpPart === 'body' ? (value: unknown) => (Buffer.isBuffer(value) ? { value } : check(value)) : check;
      },
    },
    async (request, reply) => {
      const media = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      const ce = media === CLOUDEVENT_MEDIA || isBinaryCloudEvent(request.headers);
      let init: EventInit;
      if (media === CLOUDEVENT_MEDIA) init = fromStructured(request.body as Record<string, unknown>, (v) => parseTime('time', v));
      else if (ce) init = fromBinary(request.headers, (request.body as Buffer | undefined) ?? Buffer.alloc(0), (v) => parseTime('time', v));
      else if (media === 'application/json' && !Buffer.isBuffer(request.body)) {
        scope.auth.assertPublish(request.principal, (request.body as PublishBody).sender, true);
        init = publishInit(request.body as PublishBody);
      } else {
        throw Object.assign(
          new Error(
            `Content-Type ${preview(request.headers['content-type'] ?? 'none')} is not accepted: send application/json, ` +
              `${CLOUDEVENT_MEDIA} (structured mode) or a binary-mode CloudEvent (ce-specversion and the other ce-* headers)`,
          ),
          { statusCode: 415 },
        );
      }
      if (ce) scope.auth.assertPublish(request.principal, init.sender, true);
      // The request's own trace context (a W3C-instrumented HTTP client sends one) is carried along: dropped when malformed.
      const own = init.traceparent ?? init.tracestate ?? init.headers?.traceparent ?? init.headers?.tracestate;
      if (own === undefined) Object.assign(init, validTraceContext(request.headers.traceparent, request.headers.tracestate));
      let event: HeraldEvent;
      try {
        event = createEvent(init, { maxBytes: deps.maxEventBytes });
      } catch (err) {
        const field = err instanceof HeraldError && err.details?.parameter === undefined ? bodyField(err, ce) : undefined;
        if (err instanceof HeraldError && field !== undefined)
          throw new HeraldError(err.code, err.message, { cause: err, details: { ...err.details, parameter: field } });
        throw err;
      }
      await deps.publish(event);
      return reply.code(202).send({ id: event.id });
    },
  );
}
