import { createEvent, type HeraldEvent, isJsonContentType, isUuid, parseSelector, type Selector } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { Store, StoredEvent } from '../store/index.ts';
import { badParameter, notFound } from './problems.ts';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

/** An event as the REST API shows it. Offsets are decimal strings: 64 bits survive any JSON parser. */
const EventSchema = Type.Object({
  offset: Type.String({ pattern: '^[0-9]+$', description: 'position in the log (64-bit, as a decimal string)' }),
  id: Type.String({ format: 'uuid' }),
  sender: Type.String(),
  type: Type.String(),
  time: Type.String({ format: 'date-time' }),
  contentType: Type.String(),
  data: Type.Optional(Type.Unknown({ description: 'the body, for JSON content types' })),
  dataBase64: Type.Optional(Type.String({ description: 'the body in base64, for other content types' })),
  headers: Type.Record(Type.String(), Type.String()),
  subject: Type.Optional(Type.String()),
  correlationId: Type.Optional(Type.String()),
  causationId: Type.Optional(Type.String()),
});

/** The JSON shape of a stored event. Non-JSON bodies (or invalid JSON) go as base64. */
export function eventJson(e: StoredEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    offset: e.offset.toString(),
    id: e.id,
    sender: e.sender,
    type: e.type,
    time: new Date(e.time).toISOString(),
    contentType: e.contentType,
    headers: e.headers,
  };
  let parsed = false;
  if (isJsonContentType(e.contentType)) {
    try {
      out.data = JSON.parse(e.data.toString('utf8'));
      parsed = true;
    } catch {
      // Bytes that claim JSON but are not: show them as they are.
    }
  }
  if (!parsed) out.dataBase64 = e.data.toString('base64');
  if (e.subject !== undefined) out.subject = e.subject;
  if (e.correlationId !== undefined) out.correlationId = e.correlationId;
  if (e.causationId !== undefined) out.causationId = e.causationId;
  return out;
}

function parseTime(parameter: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw badParameter(parameter, `${parameter} ${JSON.stringify(value)} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z`);
  return ms;
}

function parseOffset(parameter: string, value: string | undefined): bigint | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]{1,19}$/.test(value))
    throw badParameter(parameter, `${parameter} ${JSON.stringify(value)} is not an offset (a non-negative integer)`);
  return BigInt(value);
}

function parseSelectorParam(value: string | undefined): Selector | undefined {
  if (value === undefined) return undefined;
  try {
    return parseSelector(value);
  } catch (err) {
    throw badParameter('selector', (err as Error).message);
  }
}

export interface EventsRoutesDeps {
  store: Store;
  /** Publishes to herald.ingest; resolves when RabbitMQ confirmed. */
  publish(event: HeraldEvent): Promise<void>;
  maxEventBytes: number;
}

/** GET /api/v1/events (query), GET one by offset or id, POST one (publish through herald.ingest). */
export function eventsRoutes(app: FastifyInstance, deps: EventsRoutesDeps): void {
  app.get(
    '/api/v1/events',
    {
      schema: {
        summary: 'Query the log',
        description: 'Events matching a selector, in ascending offset order. `last` gives the last N that match (still ascending).',
        tags: ['events'],
        querystring: Type.Object(
          {
            selector: Type.Optional(Type.String({ description: 'patterns sender:type, comma-separated; default *:*' })),
            after: Type.Optional(Type.String({ description: 'only offsets greater than this' })),
            since: Type.Optional(Type.String({ description: 'only events at or after this ISO time' })),
            until: Type.Optional(Type.String({ description: 'only events before this ISO time' })),
            last: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, description: 'the last N matching events' })),
            limit: Type.Optional(
              Type.Integer({ minimum: 1, maximum: MAX_LIMIT, description: `at most this many (default ${DEFAULT_LIMIT})` }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            events: Type.Array(EventSchema),
            next: Type.Union([Type.String(), Type.Null()], { description: 'pass as `after` for the next page; null at the end' }),
          }),
        },
      },
    },
    async (request) => {
      const q = request.query as { selector?: string; after?: string; since?: string; until?: string; last?: number; limit?: number };
      const selector = parseSelectorParam(q.selector);
      const after = parseOffset('after', q.after);
      const since = parseTime('since', q.since);
      const until = parseTime('until', q.until);
      const limit = q.last ?? q.limit ?? DEFAULT_LIMIT;
      if (q.last !== undefined && q.limit !== undefined) throw badParameter('limit', 'give either last or limit, not both');
      // One row more than asked tells whether there is a next page.
      const rows = await deps.store.query({ selector, after, since, until, last: q.last, limit: q.last === undefined ? limit + 1 : limit });
      const more = q.last === undefined && rows.length > limit;
      const page = more ? rows.slice(0, limit) : rows;
      return { events: page.map(eventJson), next: more ? (page[page.length - 1]?.offset.toString() ?? null) : null };
    },
  );

  app.get(
    '/api/v1/events/:offset',
    {
      schema: {
        summary: 'One event by offset',
        tags: ['events'],
        params: Type.Object({ offset: Type.String() }),
        response: { 200: EventSchema },
      },
    },
    async (request) => {
      const offset = parseOffset('offset', (request.params as { offset: string }).offset) as bigint;
      const event = await deps.store.getByOffset(offset);
      if (!event) throw notFound(`no event at offset ${offset}`);
      return eventJson(event);
    },
  );

  app.get(
    '/api/v1/events/by-id/:id',
    {
      schema: {
        summary: 'One event by id',
        tags: ['events'],
        params: Type.Object({ id: Type.String() }),
        response: { 200: EventSchema },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      if (!isUuid(id)) throw badParameter('id', `id ${JSON.stringify(id)} is not a UUID`);
      const event = await deps.store.getById(id);
      if (!event) throw notFound(`no event with id ${id}`);
      return eventJson(event);
    },
  );

  app.post(
    '/api/v1/events',
    {
      schema: {
        summary: 'Publish an event',
        description: 'Publishes through herald.ingest like any publisher; answers 202 once RabbitMQ confirmed.',
        tags: ['events'],
        body: Type.Object(
          {
            sender: Type.String(),
            type: Type.String(),
            data: Type.Optional(Type.Unknown()),
            id: Type.Optional(Type.String()),
            time: Type.Optional(Type.String({ description: 'ISO time; default now' })),
            contentType: Type.Optional(Type.String()),
            subject: Type.Optional(Type.String()),
            correlationId: Type.Optional(Type.String()),
            causationId: Type.Optional(Type.String()),
            headers: Type.Optional(Type.Record(Type.String(), Type.String())),
          },
          { additionalProperties: false },
        ),
        response: { 202: Type.Object({ id: Type.String() }) },
      },
    },
    async (request, reply) => {
      const b = request.body as {
        sender: string;
        type: string;
        data?: unknown;
        id?: string;
        time?: string;
        contentType?: string;
        subject?: string;
        correlationId?: string;
        causationId?: string;
        headers?: Record<string, string>;
      };
      const event = createEvent(
        {
          sender: b.sender,
          type: b.type,
          // JSON in, JSON stored: a string body stays a JSON string unless a content type says otherwise.
          data:
            b.contentType === undefined || isJsonContentType(b.contentType)
              ? Buffer.from(JSON.stringify(b.data ?? null))
              : String(b.data ?? ''),
          id: b.id,
          time: parseTime('time', b.time),
          contentType: b.contentType ?? 'application/json',
          subject: b.subject,
          correlationId: b.correlationId,
          causationId: b.causationId,
          headers: b.headers,
        },
        { maxBytes: deps.maxEventBytes },
      );
      await deps.publish(event);
      return reply.code(202).send({ id: event.id });
    },
  );
}
