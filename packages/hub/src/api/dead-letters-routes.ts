import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { type DeadLetters, MAX_BULK_REDRIVE } from '../dead-letters/dead-letters.ts';
import { CODE_RE } from '../dead-letters/received.ts';
import type { DeadLetterFilter, DeadLetterSource, StoredDeadLetter } from '../store/index.ts';
import { parseOffset, parseSelectorParam } from './events-routes.ts';
import { named } from './openapi.ts';
import { isoOrNull } from './pauses-routes.ts';
import { badParameter } from './problems.ts';

const DEAD_LETTER_EXAMPLE = {
  id: '42',
  at: '2026-12-07T12:40:01.120Z',
  source: 'subscriber',
  queue: 'billing-mailer',
  attempts: 5,
  firstFailedAt: '2026-12-07T12:39:58.903Z',
  lastFailedAt: '2026-12-07T12:40:01.004Z',
  reason: 'SMTP refused the message',
  code: 'HANDLER_FAILED',
  exchange: 'herald.events',
  routingKey: 'billing.invoice.paid',
  messageId: '01938f6e-8f3a-7c1e-9a53-0b2d4c6e8f10',
  bytes: 57,
  redrives: 0,
  redrivenAt: null,
};

const DeadLetterSchema = named(
  'DeadLetter',
  Type.Object(
    {
      id: Type.String({ description: 'a decimal integer' }),
      at: Type.String({ format: 'date-time', description: 'when the hub kept it (for its own: when it failed)' }),
      source: Type.Union([Type.Literal('hub'), Type.Literal('subscriber')], {
        description: 'hub: ingest refused it; subscriber: a consumer gave up on it and sent it to herald.dead',
      }),
      queue: Type.Union([Type.String(), Type.Null()], { description: 'the queue it died on, when its subscriber said' }),
      attempts: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
        description: 'handler attempts made (the hub: 1; 0: dead at once, unreadable); null when its sender did not say',
      }),
      firstFailedAt: Type.String({ format: 'date-time', description: 'when the first attempt failed' }),
      lastFailedAt: Type.String({ format: 'date-time', description: 'when the last attempt failed' }),
      reason: Type.String(),
      code: Type.String({ description: 'the error code, e.g. INVALID_EVENT, HANDLER_FAILED (UNKNOWN when its sender gave none)' }),
      exchange: Type.String({ description: 'where the message was published' }),
      routingKey: Type.String(),
      messageId: Type.Union([Type.String(), Type.Null()]),
      bytes: Type.Integer({ description: 'the size of the body' }),
      redrives: Type.Integer({ description: 'how often it was re-sent' }),
      redrivenAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    },
    { examples: [DEAD_LETTER_EXAMPLE] },
  ),
);
const FullSchema = named(
  'DeadLetterWhole',
  Type.Object({
    ...DeadLetterSchema.properties,
    properties: Type.Record(Type.String(), Type.Unknown(), { description: 'the AMQP properties and headers, as kept' }),
    bodyBase64: Type.String({ description: 'the body, byte for byte' }),
    bodyText: Type.Union([Type.String(), Type.Null()], { description: 'the body when it is UTF-8 text, else null' }),
  }),
);

function letterJson(l: StoredDeadLetter) {
  return {
    id: l.id.toString(),
    at: isoOrNull(l.at),
    source: l.source,
    queue: l.queue ?? null,
    attempts: l.attempts ?? null,
    firstFailedAt: isoOrNull(l.firstFailedAt),
    lastFailedAt: isoOrNull(l.lastFailedAt),
    reason: l.reason,
    code: l.code,
    exchange: l.exchange,
    routingKey: l.routingKey,
    messageId: l.messageId ?? null,
    bytes: l.body.length,
    redrives: l.redrives,
    redrivenAt: isoOrNull(l.redrivenAt),
  };
}

function fullJson(l: StoredDeadLetter) {
  const text = l.body.toString('utf8');
  return {
    ...letterJson(l),
    properties: l.properties,
    bodyBase64: l.body.toString('base64'),
    bodyText: Buffer.from(text, 'utf8').equals(l.body) ? text : null,
  };
}

const FilterQuery = {
  selector: Type.Optional(Type.String({ description: 'sender:type patterns over the routing key <sender>.<type>' })),
  code: Type.Optional(Type.String({ description: 'only dead letters of this error code' })),
  source: Type.Optional(
    Type.Union([Type.Literal('hub'), Type.Literal('subscriber')], { description: 'only dead letters from this source' }),
  ),
};
const IdParams = Type.Object({ id: Type.String({ description: 'the dead letter id, a decimal integer' }) });

type FilterParams = { selector?: string; code?: string; source?: DeadLetterSource };

function filterOf(q: FilterParams): DeadLetterFilter {
  if (q.code !== undefined && !CODE_RE.test(q.code)) throw badParameter('code', 'code must be an error code, e.g. INVALID_EVENT');
  return { selector: parseSelectorParam(q.selector), code: q.code, source: q.source };
}

const idOf = (value: string) => parseOffset('id', value) as bigint;

/**
 * `/api/v1/dead-letters` (seed 004): what ingest could not store, with its reason, to list,
 * inspect, re-send and purge. Admins only.
 */
export function deadLettersRoutes(app: FastifyInstance, deadLetters: DeadLetters): void {
  app.get(
    '/api/v1/dead-letters',
    {
      schema: {
        summary: 'Dead letters, oldest first',
        tags: ['dead letters'],
        querystring: Type.Object(
          {
            ...FilterQuery,
            after: Type.Optional(Type.String({ description: 'the id to list after (the `next` of the previous page)' })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(DeadLetterSchema), next: Type.Union([Type.String(), Type.Null()]) }) },
      },
    },
    async (request) => {
      const q = request.query as FilterParams & { after?: string; limit?: number };
      const limit = q.limit ?? 100;
      const rows = await deadLetters.list(filterOf(q), parseOffset('after', q.after) ?? 0n, limit + 1);
      const page = rows.slice(0, limit);
      return { items: page.map(letterJson), next: rows.length > limit ? (page.at(-1)?.id.toString() ?? null) : null };
    },
  );

  app.get(
    '/api/v1/dead-letters/:id',
    {
      schema: {
        summary: 'One dead letter with its properties and body',
        tags: ['dead letters'],
        params: IdParams,
        response: { 200: FullSchema },
        problems: [404],
      },
    },
    async (request) => fullJson(await deadLetters.get(idOf((request.params as { id: string }).id))),
  );

  app.post(
    '/api/v1/dead-letters/:id/redrive',
    {
      schema: {
        summary: 'Re-send one dead letter',
        description:
          "The hub's own (source hub): as it came, to herald.ingest with its routing key and properties (an event keeps its id, " +
          'so it is stored once however often it is re-sent), or with the body {"queue": name} to that queue; 409 when its body ' +
          "was cut when it was kept. A subscriber's (source subscriber): the event the log holds under its id, as the hub " +
          'forwards it (its bytes, routing key and headers, never the dead letter\'s), to {"queue": name} or else to the queue ' +
          'it died on; 409 when its event is not in the log, or when it names no queue and none is given (herald.ingest would ' +
          'store nothing new). Marked x-herald-redriven: <id>; a failure comes back as a new dead letter. 404: no such queue.',
        tags: ['dead letters'],
        params: IdParams,
        response: { 200: Type.Object({ redriven: Type.Integer() }) },
        problems: [404, 409, 502, 503],
      },
    },
    async (request) => {
      // The body is optional (no schema: fastify would refuse none): nothing, {} or {"queue": name}.
      const body = request.body ?? {};
      if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).some((k) => k !== 'queue'))
        throw badParameter('body', 'the body is optional, else {"queue": "<name>"}');
      const queue = (body as { queue?: unknown }).queue;
      if (queue !== undefined && typeof queue !== 'string') throw badParameter('queue', 'queue must be a string');
      await deadLetters.redrive(idOf((request.params as { id: string }).id), queue);
      return { redriven: 1 };
    },
  );

  app.post(
    '/api/v1/dead-letters/redrive',
    {
      schema: {
        summary: `Re-send the dead letters a selector, code and source select (${MAX_BULK_REDRIVE} read a call, oldest first)`,
        description:
          `Reads at most ${MAX_BULK_REDRIVE} dead letters a call, oldest first, after the id \`after\` (default: from the oldest); ` +
          'when more are left, `next` is the `after` of the next call (null: none left), so a call from `next` reaches the newer ' +
          "ones. The hub's own go to herald.ingest, each with its routing key and properties. A subscriber's go only with " +
          '`queue` given, and only those that died on that queue, each as the event the log holds under its id: the queue a ' +
          "letter names is as forgeable as the rest of it, so the caller says where events may go. Skipped: subscribers' dead " +
          'letters without `queue`, of another queue or whose event is not in the log (re-send those by id with {"queue": name}), ' +
          "and the hub's own whose body was cut. No filter: every one.",
        tags: ['dead letters'],
        body: Type.Object(
          {
            ...FilterQuery,
            after: Type.Optional(Type.String({ description: 'the id to go on after (the `next` of the previous call)' })),
            upTo: Type.Optional(
              Type.String({ description: 'the highest id to read: the `upTo` of the first call (default: the newest id now)' }),
            ),
            queue: Type.Optional(
              Type.String({
                maxLength: 255,
                description:
                  "re-send the subscribers' dead letters of this queue (the one they died on) back to it; without it none of theirs",
              }),
            ),
          },
          {
            additionalProperties: false,
            examples: [{ selector: 'billing:*', code: 'HANDLER_FAILED', source: 'subscriber' }],
          },
        ),
        response: {
          200: Type.Object({
            redriven: Type.Integer(),
            skipped: Type.Integer({
              description:
                "dead letters read but not re-sent: subscribers' whose event is not in the log or that have no queue to go to, the hub's whose body was cut",
            }),
            next: Type.Union([Type.String(), Type.Null()], { description: 'the `after` of the next call; null when none are left' }),
            upTo: Type.String({
              description:
                'the highest id read, to give with `next`: letters that fail again come back above it and are left for a new run',
            }),
          }),
        },
        problems: [502, 503],
      },
    },
    async (request) => {
      const body = request.body as FilterParams & { after?: string; queue?: string; upTo?: string };
      return deadLetters.redriveMany(filterOf(body), parseOffset('after', body.after) ?? 0n, body.queue, parseOffset('upTo', body.upTo));
    },
  );

  app.delete(
    '/api/v1/dead-letters/:id',
    {
      schema: {
        summary: 'Purge one dead letter',
        tags: ['dead letters'],
        params: IdParams,
        response: { 204: Type.Null({ description: 'deleted' }) },
        problems: [404],
      },
    },
    async (request, reply) => {
      await deadLetters.delete(idOf((request.params as { id: string }).id));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/api/v1/dead-letters',
    {
      schema: {
        summary: 'Purge the dead letters a selector, code and source select; every one needs all=true',
        tags: ['dead letters'],
        querystring: Type.Object({ ...FilterQuery, all: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: { 200: Type.Object({ deleted: Type.Integer() }) },
      },
    },
    async (request) => {
      const q = request.query as FilterParams & { all?: boolean };
      if (q.selector === undefined && q.code === undefined && q.source === undefined && q.all !== true)
        throw badParameter('all', 'purging every dead letter needs all=true (or give a selector, a code or a source)');
      return { deleted: await deadLetters.purge(filterOf(q)) };
    },
  );
}
