import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorCodes } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { createCap } from '../caps/index.ts';
import type { openRequests } from './open-requests.ts';
import {
  DeliveredSchema,
  deliveredJson,
  NameParams,
  naming,
  needManager,
  OffsetInput,
  offsetOf,
  type SubscriptionAccess,
  type SubscriptionRoutesDeps,
} from './subscriptions-shared.ts';

const DEFAULT_MAX = 100;
const MAX_MAX = 1000;
const DEFAULT_WAIT_S = 5;
const MAX_WAIT_S = 30;

/**
 * `GET /api/v1/subscriptions/:name/events` (pull, with long poll) and `POST …/ack`. An ack is the
 * subscription's, whichever transport delivered the events; it takes a JSON integer or a decimal string.
 */
export function subscriptionPullRoutes(
  app: FastifyInstance,
  deps: SubscriptionRoutesDeps,
  ctx: { access: SubscriptionAccess; whileOpen: ReturnType<typeof openRequests> },
): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { usable } = ctx.access;
  const whileOpen = ctx.whileOpen;
  const longPolls = createCap('longPolls', deps.maxLongPolls);

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
}
