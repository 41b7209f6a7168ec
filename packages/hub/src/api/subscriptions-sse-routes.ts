import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { HeraldError } from '@herald/core';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import Type from 'typebox';
import { createCap } from '../caps/index.ts';
import type { Consumer, DeliveredEvent } from '../subscriptions/types.ts';
import type { openRequests } from './open-requests.ts';
import { badParameter } from './problems.ts';
import {
  deliveredJson,
  NameParams,
  needManager,
  offsetOf,
  type SubscriptionAccess,
  type SubscriptionRoutesDeps,
} from './subscriptions-shared.ts';

const HEARTBEAT_MS = 15_000;
/** Events an SSE stream asks for at a time, and at most written to the connection but not yet flushed. */
const SSE_BATCH = 500;
const SSE_MAX_IN_FLIGHT = 1000;
/** An attach that is not active this soon is a standby (another consumer holds the subscription). */
const STANDBY_AFTER_MS = 100;

/** One SSE message. Replayed events carry no `id:`, so a browser's Last-Event-ID never goes back. */
export function sseMessage(e: DeliveredEvent): string {
  const id = e.replay === undefined ? `id: ${e.offset}\n` : '';
  return `${id}event: ${e.type}\ndata: ${JSON.stringify(deliveredJson(e))}\n\n`;
}

/**
 * `GET /api/v1/subscriptions/:name/stream`: a Server-Sent Events stream. It never acknowledges by
 * itself: the client does, with POST …/ack or with the Last-Event-ID of its reconnect; see
 * streamSubscription.
 */
export function subscriptionSseRoutes(
  app: FastifyInstance,
  deps: SubscriptionRoutesDeps,
  ctx: { access: SubscriptionAccess; whileOpen: ReturnType<typeof openRequests> },
): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { usableView } = ctx.access;
  const whileOpen = ctx.whileOpen;
  const heartbeatMs = deps.heartbeatMs ?? HEARTBEAT_MS;
  const sseStreams = createCap('sseStreams', deps.maxSseStreams);

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
