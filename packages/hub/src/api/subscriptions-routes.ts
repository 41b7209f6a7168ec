import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorCodes, HeraldError, parseOffset as parseOffsetValue, parseSelector, type Selector, selectorPatterns } from '@herald/core';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { createCap } from '../caps/index.ts';
import { assertSubscriptionName } from '../subscriptions/start-position.ts';
import type { Consumer, DeliveredEvent, SubscriptionManager, SubscriptionView } from '../subscriptions/types.ts';
import { EventSchema, eventJson } from './events-routes.ts';
import { openRequests } from './open-requests.ts';
import { named } from './openapi.ts';
import { isoOrNull, SelectorBody } from './pauses-routes.ts';
import { badParameter, notFound } from './problems.ts';

/** What the subscription routes need from the hub. */
export interface SubscriptionRoutesDeps {
  /** The manager; undefined on a standby hub, in archive mode, or while stopping (then 503/409). */
  manager: () => SubscriptionManager | undefined;
  /** `archive` makes the answer 409 rather than 503. */
  mode: string;
  /** Milliseconds between SSE heartbeat comments. Default 15,000. */
  heartbeatMs?: number | undefined;
  /** Open SSE streams, standbys included (HERALD_MAX_SSE_STREAMS); the next is 429 LIMIT_EXCEEDED. Default 1000. */
  maxSseStreams?: number | undefined;
  /** Pulls waiting at once, those with `wait` above 0 (HERALD_MAX_LONG_POLLS); the next is 429. Default 1000. */
  maxLongPolls?: number | undefined;
}

const DEFAULT_MAX = 100;
const MAX_MAX = 1000;
const DEFAULT_WAIT_S = 5;
const MAX_WAIT_S = 30;
const HEARTBEAT_MS = 15_000;
/** Events an SSE stream asks for at a time, and at most written to the connection but not yet flushed. */
const SSE_BATCH = 500;
const SSE_MAX_IN_FLIGHT = 1000;
/** An attach that is not active this soon is a standby (another consumer holds the subscription). */
const STANDBY_AFTER_MS = 100;

/** The manager, or the problem a client reads when this hub cannot serve subscriptions (409 archive mode, 503 standby). */
export function needManager(deps: SubscriptionRoutesDeps): SubscriptionManager {
  const m = deps.manager();
  if (m) return m;
  if (deps.mode === 'archive')
    throw new HeraldError(
      ErrorCodes.CONFLICT,
      'subscriptions need the hub in router mode (HERALD_MODE=router); this hub runs in archive mode',
    );
  throw new HeraldError(
    ErrorCodes.UNAVAILABLE,
    'this hub does not serve subscriptions right now (standby or stopping); ask the hub that holds the writer lease',
  );
}

const OffsetString = (description: string) => Type.String({ pattern: '^[0-9]+$', description });
// Any number or string passes the schema: parseOffset (core) gives the one message for every bad offset.
const OffsetInput = Type.Union([Type.Number(), Type.String()], {
  description: 'an offset from 0 to 2^63 - 1: a JSON integer, or a decimal string (needed above 2^53)',
});

const SubscriptionSchema = named(
  'Subscription',
  Type.Object({
    name: Type.String(),
    selector: Type.Array(Type.String()),
    state: Type.Union([Type.Literal('active'), Type.Literal('sleeping')]),
    ackedOffset: OffsetString('everything matching up to here is acknowledged; a decimal string like event offsets'),
    headOffset: OffsetString('the head of the log'),
    lagEvents: Type.Integer({ description: 'matching events above the acknowledged offset (capped at 1,000,000)' }),
    lagSeconds: Type.Number({ description: 'age of the oldest unacknowledged matching event; 0 when nothing is due' }),
    consumer: Type.Union([Type.String(), Type.Null()], { description: 'the active consumer, e.g. "sse 127.0.0.1:40000", "http"' }),
    queue: Type.String({
      description:
        'the name of the in-memory receiver shared by subscriptions with the same selector (no RabbitMQ queue: a subscription is a cursor over the log)',
    }),
    createdAt: Type.String({ format: 'date-time' }),
  }),
);

/** A subscription as the REST API shows it. */
export function subscriptionJson(v: SubscriptionView) {
  return {
    name: v.name,
    selector: selectorPatterns(v.selector),
    state: v.state,
    ackedOffset: v.ackedOffset.toString(),
    headOffset: v.headOffset.toString(),
    lagEvents: v.lagEvents,
    lagSeconds: v.lagSeconds,
    consumer: v.consumer ?? null,
    queue: v.queue,
    createdAt: isoOrNull(v.createdAt) as string,
  };
}

const DeliveredSchema = named(
  'DeliveredEvent',
  Type.Object({
    ...EventSchema.properties,
    replay: Type.Optional(Type.String({ description: 'set on events a replay into this subscription re-sends: the replay id' })),
  }),
);

/** A delivered event as the REST API shows it: `eventJson`, plus `replay` when a replay re-sends it. */
export function deliveredJson(e: DeliveredEvent) {
  const out: ReturnType<typeof eventJson> & { replay?: string } = eventJson(e);
  if (e.replay !== undefined) out.replay = e.replay;
  return out;
}

/** One SSE message. Replayed events carry no `id:`, so a browser's Last-Event-ID never goes back. */
export function sseMessage(e: DeliveredEvent): string {
  const id = e.replay === undefined ? `id: ${e.offset}\n` : '';
  return `${id}event: ${e.type}\ndata: ${JSON.stringify(deliveredJson(e))}\n\n`;
}

/** An offset sent as a JSON integer or a decimal string (a header, a body field), as a bigint; 400 naming `parameter` otherwise. */
const offsetOf = (parameter: string, value: number | string): bigint => parseOffsetValue(parameter, value);

/** Gives a manager error the request parameter it is about, so the problem document names it. */
function naming(err: unknown, parameter: (e: HeraldError) => string | undefined): unknown {
  if (!(err instanceof HeraldError) || typeof err.details?.parameter === 'string') return err;
  const p = parameter(err);
  if (p === undefined) return err;
  return new HeraldError(err.code, err.message, { cause: err, details: { ...err.details, parameter: p } });
}

/** The create body field a manager error is about (name and start errors name their field already). */
function createField(err: HeraldError): string | undefined {
  return err.code === ErrorCodes.INVALID_SELECTOR ? 'selector' : undefined;
}

/** The selector of a create body, its errors naming the field. */
function parseSelectorField(input: string | string[]): Selector {
  try {
    return parseSelector(input);
  } catch (err) {
    throw naming(err, () => 'selector');
  }
}

const NameParams = Type.Object({ name: Type.String({ description: 'the subscription name' }) });

/**
 * `/api/v1/subscriptions`: create, list, get (with lag), delete; pull with long poll, ack; an SSE
 * stream. Errors come from the manager (NOT_FOUND 404, CONFLICT 409, INVALID_* 400 naming the
 * field) or from needManager (409 archive mode, 503 standby or stopping).
 *
 * Offsets are decimal strings in every answer, as in /api/v1/events; acks take a JSON integer or a
 * decimal string. An ack is the subscription's, whichever transport delivered the events. The SSE
 * stream never acknowledges by itself: the client does, with POST …/ack or with the Last-Event-ID
 * of its reconnect; see streamSubscription.
 */
export function subscriptionsRoutes(app: FastifyInstance, deps: SubscriptionRoutesDeps): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  /**
   * Throws unless the caller may use the subscription: 404 when it is absent, then 403 when it is
   * another user's or outside the caller's selectors. From memory, so a pull or an ack costs no lag query.
   */
  const usable = async (request: FastifyRequest, m: SubscriptionManager, name: string): Promise<void> => {
    const selector = m.selectorOf(name);
    if (!selector) throw notFound(`no subscription ${name}`);
    await app.auth.assertSubscription(request.principal, name, selector, { create: false });
  };
  /** The subscription's view (with lag), once the caller may use it. */
  const usableView = async (request: FastifyRequest, m: SubscriptionManager, name: string): Promise<SubscriptionView> => {
    await usable(request, m, name);
    const view = await m.get(name);
    if (!view) throw notFound(`no subscription ${name}`);
    return view;
  };
  const whileOpen = openRequests(app);
  const heartbeatMs = deps.heartbeatMs ?? HEARTBEAT_MS;
  const sseStreams = createCap('sseStreams', deps.maxSseStreams);
  const longPolls = createCap('longPolls', deps.maxLongPolls);

  api.post(
    '/api/v1/subscriptions',
    {
      schema: {
        summary: 'Create a durable subscription',
        description:
          'A name, a selector and where it starts. 201 when created; 200 with the existing subscription when one with ' +
          'this name and the same selector exists (`start` is then ignored: it resumes after its acknowledged offset); ' +
          '409 when one exists with another selector.',
        tags: ['subscriptions'],
        body: Type.Object(
          {
            name: Type.String({ description: 'letters, digits, _ . - ; at most 128' }),
            selector: SelectorBody,
            start: Type.Optional(
              Type.Union(
                [
                  Type.Literal('new'),
                  Type.Literal('earliest'),
                  Type.Object({ offset: OffsetInput }, { additionalProperties: false }),
                  Type.Object({ time: Type.String({ description: 'ISO 8601 with a zone' }) }, { additionalProperties: false }),
                  Type.Object({ last: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
                ],
                {
                  description:
                    '"new" (default: after the head of the log now), "earliest", {"offset": N} (the first offset delivered), ' +
                    '{"time": ISO} (the first event at or after it), {"last": N} (the last N matching events)',
                },
              ),
            ),
          },
          { additionalProperties: false, examples: [{ name: 'ledger', selector: ['billing:invoice.*'], start: 'earliest' }] },
        ),
        response: { 200: SubscriptionSchema, 201: SubscriptionSchema },
        problems: [400, 409, 429, 503],
      },
    },
    async (request, reply) => {
      const m = needManager(deps);
      const body = request.body;
      try {
        assertSubscriptionName(body.name);
      } catch (err) {
        throw naming(err, () => 'name');
      }
      const existing = m.selectorOf(body.name);
      const existed = existing !== undefined;
      // The caller must be allowed the selector asked for, and an existing subscription must be its own.
      if (existed) await app.auth.assertSubscription(request.principal, body.name, existing, { create: false });
      app.auth.assertRead(request.principal, parseSelectorField(body.selector));
      if (!existed) await app.auth.assertSubscription(request.principal, body.name, body.selector, { create: true });
      let view: SubscriptionView;
      try {
        view = await m.create({ name: body.name, selector: body.selector, start: body.start });
      } catch (err) {
        // A name claimed for a subscription that was not created is free again.
        if (!existed && !m.selectorOf(body.name)) await app.auth.forget(body.name).catch(() => undefined);
        throw naming(err, createField);
      }
      return reply
        .code(existed ? 200 : 201)
        .header('location', `/api/v1/subscriptions/${encodeURIComponent(view.name)}`)
        .send(subscriptionJson(view));
    },
  );

  api.get(
    '/api/v1/subscriptions',
    {
      schema: {
        summary: 'Subscriptions, with their state and lag',
        tags: ['subscriptions'],
        response: { 200: Type.Object({ items: Type.Array(SubscriptionSchema) }) },
        problems: [409, 503],
      },
    },
    async (request) => {
      const all = await needManager(deps).list();
      // A user sees its own subscriptions; an admin every one.
      const visible = await app.auth.visibleSubscriptions(request.principal);
      return { items: all.filter((v) => visible === undefined || visible.has(v.name)).map(subscriptionJson) };
    },
  );

  api.get(
    '/api/v1/subscriptions/:name',
    {
      schema: {
        summary: 'One subscription: state, acknowledged and head offsets, lag, consumer',
        tags: ['subscriptions'],
        params: NameParams,
        response: { 200: SubscriptionSchema },
        problems: [404, 409, 503],
      },
    },
    async (request) => {
      return subscriptionJson(await usableView(request, needManager(deps), request.params.name));
    },
  );

  api.delete(
    '/api/v1/subscriptions/:name',
    {
      schema: {
        summary: 'Delete a subscription',
        description: 'Ends its consumer and removes it; its receiver queue goes too when no other subscription shares the selector.',
        tags: ['subscriptions'],
        params: NameParams,
        response: { 204: Type.Null({ description: 'deleted' }) },
        problems: [404, 409, 503],
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const m = needManager(deps);
      await usable(request, m, name);
      if (!(await m.delete(name))) throw notFound(`no subscription ${name}`);
      await app.auth.forget(name);
      return reply.code(204).send(null);
    },
  );

  api.get(
    '/api/v1/subscriptions/:name/events',
    {
      schema: {
        summary: 'Pull events (long poll)',
        description:
          'The events after the acknowledged offset, in offset order, at most `max`; waits up to `wait` seconds for the ' +
          'first. Events pulled but not acknowledged come again on the next pull: acknowledge with POST …/ack. ' +
          'A pull marks the subscription active for 30 s; 409 while a stream (gRPC, SSE) holds it.',
        tags: ['subscriptions'],
        params: NameParams,
        querystring: Type.Object(
          {
            max: Type.Optional(
              Type.Integer({ minimum: 1, maximum: MAX_MAX, description: `at most this many events, default ${DEFAULT_MAX}` }),
            ),
            wait: Type.Optional(
              Type.Number({
                minimum: 0,
                maximum: MAX_WAIT_S,
                description: `seconds to wait for the first event, default ${DEFAULT_WAIT_S}; 0 answers at once`,
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ events: Type.Array(DeliveredSchema) }) },
        problems: [400, 404, 409, 429, 503],
      },
    },
    async (request) => {
      const m = needManager(deps);
      const { name } = request.params;
      await usable(request, m, name);
      const max = request.query.max ?? DEFAULT_MAX;
      const waitMs = Math.round((request.query.wait ?? DEFAULT_WAIT_S) * 1000);
      // A pull that may wait holds a slot (HERALD_MAX_LONG_POLLS) until it answers; wait=0 does not.
      const release = waitMs > 0 ? longPolls.take() : undefined;
      try {
        // The client going away ends the wait; so does the hub stopping.
        const events = await whileOpen(request, (signal) => m.pull(name, { max, waitMs, signal }));
        return { events: events.map(deliveredJson) };
      } finally {
        release?.();
      }
    },
  );

  api.post(
    '/api/v1/subscriptions/:name/ack',
    {
      schema: {
        summary: 'Acknowledge pulled events',
        description:
          'Cumulative: every event of the subscription up to `offset` is done, whichever transport delivered it (a pull, ' +
          'an SSE stream, a gRPC stream). Accepted while a stream holds the subscription: that stream then moves past ' +
          'the acknowledged events. 400 for an offset that is not a decimal string (or JSON integer) from 0 to 2^63 - 1, ' +
          'or above the head of the log.',
        tags: ['subscriptions'],
        params: NameParams,
        body: Type.Object({ offset: OffsetInput }, { additionalProperties: false }),
        response: { 204: Type.Null({ description: 'acknowledged' }) },
        problems: [400, 404, 503],
      },
    },
    async (request, reply) => {
      const m = needManager(deps);
      await usable(request, m, request.params.name);
      const offset = offsetOf('offset', request.body.offset);
      try {
        await m.ack(request.params.name, offset);
      } catch (err) {
        throw naming(err, (e) => (e.code === ErrorCodes.INVALID_REQUEST ? 'offset' : undefined));
      }
      return reply.code(204).send(null);
    },
  );

  api.get(
    '/api/v1/subscriptions/:name/stream',
    {
      schema: {
        summary: 'A live tail as Server-Sent Events',
        description:
          'Attaches a consumer: from the acknowledged offset (catch-up from the log), then live. Each event is ' +
          '`id: <offset>`, `event: <type>`, `data: <the event as JSON>` (replayed events carry no id). The stream ' +
          'acknowledges nothing by itself: a `Last-Event-ID` header (as EventSource sends on reconnect) acknowledges ' +
          'everything up to that offset and resumes after it; POST …/ack acknowledges while the stream is open. ' +
          'Events written but not acknowledged come again on the next stream. While another consumer holds the ' +
          'subscription the stream waits as standby (a comment `: waiting as standby`). A comment every 15 s keeps ' +
          'the connection open.',
        tags: ['subscriptions'],
        params: NameParams,
        headers: Type.Object({
          'last-event-id': Type.Optional(Type.String({ description: 'the offset of the last event the client has' })),
        }),
        response: {
          200: {
            description: 'text/event-stream, until the client disconnects or the hub ends the consumer',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
        },
        problems: [400, 404, 409, 429, 503],
      },
    },
    async (request, reply) => {
      const m = needManager(deps);
      const { name } = request.params;
      const view = await usableView(request, m, name);
      const header = request.headers['last-event-id'];
      let lastId: bigint | undefined;
      if (header !== undefined && header !== '') {
        lastId = offsetOf('Last-Event-ID', header);
        if (lastId > view.headOffset)
          throw badParameter('Last-Event-ID', `Last-Event-ID ${lastId} is above the head of the log (${view.headOffset})`);
      }
      // Held from the attach until the stream ends (HERALD_MAX_SSE_STREAMS).
      const release = sseStreams.take();
      // The stream ends when its token is revoked, or its user's roles no longer allow it: watched
      // from before the attach, so a change while it attaches is not missed.
      const revoked = new AbortController();
      const unwatch = app.auth.watch(
        request.principal,
        (p) => app.auth.assertSubscription(p, name, m.selectorOf(name) ?? view.selector, { create: false }),
        (err) => revoked.abort(err),
      );
      const done = () => {
        unwatch();
        release();
      };
      let consumer: Consumer;
      try {
        consumer = await m.attach({
          name,
          consumer: `sse ${request.socket.remoteAddress ?? 'unknown'}:${request.socket.remotePort ?? 0}`,
          maxInFlight: SSE_MAX_IN_FLIGHT,
          resumeAfter: lastId,
        });
      } catch (err) {
        done();
        throw err;
      }
      reply.hijack();
      await whileOpen(request, (signal) =>
        streamSubscription(consumer, reply.raw, { signal: AbortSignal.any([signal, revoked.signal]), heartbeatMs, log: request.log }),
      ).finally(done);
    },
  );
}

/**
 * Serves one attached consumer as Server-Sent Events on `res` until `signal` aborts (client gone,
 * hub stopping) or the hub ends the consumer (deleted, taken over), then closes the consumer (the
 * subscription sleeps with its acknowledged offset, or a standby takes over) and ends the response.
 *
 * Ack contract: the stream acknowledges nothing. A write the socket took is not an event the client
 * saw (socket buffers on both ends hold thousands), so it only frees the consumer's in-flight window
 * (release); the client acknowledges with POST …/ack, or by the Last-Event-ID of its next stream
 * (attach's resumeAfter). What was written but not acknowledged when the connection broke comes
 * again. Backpressure: a write the socket cannot take waits for 'drain' before the next batch, and
 * max-in-flight bounds what is written but not yet flushed. Never rejects.
 */
export async function streamSubscription(
  consumer: Consumer,
  res: ServerResponse,
  opts: { signal: AbortSignal; heartbeatMs: number; log: FastifyBaseLogger },
): Promise<void> {
  const stop = new AbortController();
  const abort = () => stop.abort();
  opts.signal.addEventListener('abort', abort, { once: true });
  if (opts.signal.aborted) stop.abort();
  let endReason: string | undefined;
  void consumer.ended.then(
    (reason) => {
      endReason = reason;
      stop.abort();
    },
    () => stop.abort(),
  );
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  let draining = false;
  let closed = false;
  /** The socket took everything up to `offset`: room for more, nothing acknowledged. */
  const written = (offset: bigint) => {
    if (!closed) consumer.release(offset);
  };
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  const heartbeat = setInterval(() => {
    if (!draining && !stop.signal.aborted && !res.destroyed) res.write(': heartbeat\n\n');
  }, opts.heartbeatMs);
  heartbeat.unref();
  try {
    const active = consumer.active.then(
      () => true,
      () => false,
    );
    let isActive = await Promise.race([active, sleep(STANDBY_AFTER_MS, undefined, { ref: false })]);
    if (isActive === undefined) {
      res.write(': waiting as standby\n\n');
      isActive = await Promise.race([active, stopped.then(() => false)]);
    }
    if (!isActive || stop.signal.aborted) return;
    res.write(': active\n\n');
    while (!stop.signal.aborted) {
      const batch = await consumer.next(SSE_BATCH, stop.signal);
      if (batch.length === 0) continue;
      let chunk = '';
      let upTo = 0n;
      for (const e of batch) {
        if (e.offset > upTo) upTo = e.offset;
        chunk += sseMessage(e);
      }
      const ok = res.write(chunk, (err) => {
        if (!err) written(upTo);
      });
      if (!ok) {
        draining = true;
        await Promise.race([new Promise((resolve) => res.once('drain', resolve)), stopped]);
        draining = false;
      }
    }
  } catch (err) {
    if (!stop.signal.aborted) opts.log.warn({ err, subscription: consumer.name }, 'SSE stream failed');
  } finally {
    clearInterval(heartbeat);
    opts.signal.removeEventListener('abort', abort);
    stop.abort();
    closed = true;
    // Ended by the hub: the access check's reason (a revoked token, roles that no longer allow it), or the consumer's.
    const denied = opts.signal.reason instanceof HeraldError ? opts.signal.reason : undefined;
    const reason = denied ? `${denied.code}: ${denied.message}` : endReason;
    await consumer.close().catch((err) => opts.log.warn({ err, subscription: consumer.name }, 'closing an SSE consumer failed'));
    if (!res.destroyed && !res.writableEnded) {
      if (reason !== undefined) res.write(`: ended: ${reason.replaceAll('\n', ' ')}\n\n`);
      res.end();
    }
  }
}
