import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { createCap } from '../caps/index.ts';
import type { HubMetrics } from '../metrics/metrics.ts';
import { openRequests } from './open-requests.ts';
import { named } from './openapi.ts';

const RatesSchema = named(
  'Rates',
  Type.Object(
    { '1s': Type.Number(), '10s': Type.Number(), '60s': Type.Number() },
    { description: 'events per second over the last 1, 10 and 60 seconds' },
  ),
);

const StatsSchema = named(
  'Stats',
  Type.Object({
    at: Type.String({ format: 'date-time' }),
    totals: Type.Object({ in: Type.Integer(), out: Type.Integer(), dead: Type.Integer(), rateIn: RatesSchema, rateOut: RatesSchema }),
    flows: Type.Array(
      Type.Object({
        sender: Type.String({ description: '`other` for every flow past HERALD_METRICS_MAX_FLOWS' }),
        type: Type.String(),
        in: Type.Integer({ description: 'stored since the hub started' }),
        out: Type.Integer({ description: 'published to herald.events since the hub started' }),
        rateIn: RatesSchema,
        rateOut: RatesSchema,
        lastSeen: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
      }),
    ),
    subscriptions: Type.Array(
      Type.Object({
        name: Type.String(),
        state: Type.Union([Type.Literal('active'), Type.Literal('sleeping')]),
        consumer: Type.Union([Type.String(), Type.Null()]),
        standbys: Type.Integer(),
        lagEvents: Type.Integer(),
        lagSeconds: Type.Number(),
        delivered: Type.Integer({ description: 'delivered to its consumers since the hub started' }),
        rate: RatesSchema,
      }),
    ),
    receivers: Type.Array(
      Type.Object({ queue: Type.String(), messages: Type.Integer(), limit: Type.Integer(), fill: Type.Number({ description: 'percent' }) }),
    ),
    pauses: Type.Object({ active: Type.Integer(), held: Type.Integer() }),
    replays: Type.Object({ active: Type.Integer() }),
    headOffset: Type.Union([Type.String(), Type.Null()]),
    amqpConnected: Type.Boolean(),
    storeConnected: Type.Boolean(),
  }),
);

/** How often the stats stream sends a snapshot. */
const STREAM_INTERVAL_MS = 1000;

/**
 * `/metrics` (Prometheus text format, open like the probes), `/api/v1/stats` (the same as JSON with
 * rates, for the dashboard) and `/api/v1/stats/stream` (a snapshot a second as Server-Sent Events).
 */
export function metricsRoutes(app: FastifyInstance, deps: { metrics: HubMetrics; maxStreams?: number | undefined }): void {
  const { metrics } = deps;
  const whileOpen = openRequests(app);
  const streams = createCap('sseStreams', deps.maxStreams);

  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        tags: ['monitoring'],
        response: { 200: { description: 'the Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
    async (_request, reply) => {
      const text = await metrics.scrape();
      return reply.type(metrics.contentType).send(text);
    },
  );

  app.get(
    '/api/v1/stats',
    {
      schema: {
        summary: 'Counts and rates per flow and subscription, receiver fill, pauses, replays, connections',
        tags: ['monitoring'],
        response: { 200: StatsSchema },
      },
    },
    () => metrics.stats(),
  );

  app.get(
    '/api/v1/stats/stream',
    {
      schema: {
        summary: 'The stats as Server-Sent Events, one `stats` event a second',
        tags: ['monitoring'],
        response: {
          200: {
            description: 'text/event-stream, until the client disconnects',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
        },
        problems: [429],
      },
    },
    async (request, reply) => {
      const release = streams.take();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      await whileOpen(request, async (signal) => {
        while (!signal.aborted && !res.destroyed) {
          const snapshot = await metrics.stats().catch((err: unknown) => {
            request.log.warn({ err }, 'stats snapshot failed');
            return undefined;
          });
          // A client that reads slower than a snapshot a second gets the next one when it caught up.
          if (snapshot !== undefined && res.writableLength === 0) res.write(`event: stats\ndata: ${JSON.stringify(snapshot)}\n\n`);
          await sleep(STREAM_INTERVAL_MS, undefined, { signal }).catch(() => undefined);
        }
      }).finally(() => {
        release();
        if (!res.destroyed && !res.writableEnded) res.end();
      });
    },
  );
}
