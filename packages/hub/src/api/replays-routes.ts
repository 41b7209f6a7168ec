import { ErrorCodes, HeraldError, selectorPatterns, uuidv7 } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { createCap } from '../caps/index.ts';
import { boundToJson, normalizeReplayInput, type Replay, resolveReplayRange, subscriptionTarget } from '../replays/index.ts';
import type { Store } from '../store/types.ts';
import type { SubscriptionManager } from '../subscriptions/index.ts';
import { named } from './openapi.ts';
import { type DispatcherRoutesDeps, isoOrNull, needDispatcher, SelectorBody } from './pauses-routes.ts';
import { notFound } from './problems.ts';

const Offset = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: '^[0-9]+$' })]);
const Time = Type.String({ description: 'ISO 8601' });
const Bound = Type.Union([Type.Integer(), Type.String()]);

const ReplaySchema = named(
  'Replay',
  Type.Object({
    id: Type.String({ format: 'uuid' }),
    selector: Type.Array(Type.String()),
    from: Type.Record(Type.String(), Bound),
    to: Type.Union([Type.Record(Type.String(), Bound), Type.Null()]),
    target: Type.Union([
      Type.String({ description: '"flow"' }),
      Type.Object({ subscription: Type.String() }, { description: 'a replay into one durable subscription' }),
    ]),
    status: Type.String({
      enum: ['pending', 'running', 'done', 'failed', 'cancelled'],
      description: 'cancelled: stopped by DELETE before it finished',
    }),
    count: Type.Integer({ description: 'events sent so far' }),
    createdAt: Type.String({ format: 'date-time' }),
    finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()]),
  }),
);

/** The answer to creating a replay into one subscription: it runs with the subscription's consumer; GET follows it. */
const SubscriptionReplaySchema = named(
  'SubscriptionReplay',
  Type.Object({
    id: Type.String({ format: 'uuid' }),
    target: Type.Object({ subscription: Type.String() }),
    status: Type.String({ enum: ['running', 'done'], description: 'done when nothing matched' }),
    count: Type.Integer({ description: 'events it will send' }),
  }),
);

type ReplayBody = { selector: string | string[]; from: unknown; to?: unknown; target?: unknown };

/** What the replay routes need from the hub. */
export interface ReplaysRoutesDeps extends DispatcherRoutesDeps {
  /** For `"target": {"subscription": name}`: the manager (undefined on a standby hub, in archive mode, or while stopping). */
  subscriptions?: (() => SubscriptionManager | undefined) | undefined;
  /** Resolves a subscription replay's range against the log. */
  store?: Pick<Store, 'query' | 'headOffset'> | undefined;
  /** Replays pending or running at once, both targets (HERALD_MAX_REPLAYS); the next is 429. Default 16. */
  maxReplays?: number | undefined;
}

/** A replay as the REST API shows it. */
export function replayJson(r: Replay) {
  return {
    id: r.id,
    selector: selectorPatterns(r.selector),
    from: boundToJson(r.from),
    to: r.to === undefined ? null : boundToJson(r.to),
    target: r.target,
    status: r.status,
    count: r.count,
    createdAt: isoOrNull(r.createdAt),
    finishedAt: isoOrNull(r.finishedAt),
    error: r.error ?? null,
  };
}

/**
 * POST /api/v1/replays (202: runs in the background) and GET /api/v1/replays/{id} (status, count).
 * A bad body is 400 naming the parameter; an unknown id 404.
 *
 * `"target": {"subscription": "<name>"}` replays into that subscription alone: the range is resolved
 * as for the flow, the events (up to what the subscription was already given) go to its consumer
 * before its next live events, marked with the replay id. The answer is 202 `{id, target, status,
 * count}` (count: the events it will send): `running` when events will be sent, `done` when none
 * matched. It is kept in the replays table like a replay into the flow: GET shows it with `"target":
 * {"subscription": name}`, its status (pending, running, done; failed when the subscription is
 * deleted before it finished) and the events sent so far; a restarted hub continues it after the
 * last chunk sent. An unknown subscription is 404.
 *
 * At most `maxReplays` replays are pending or running at once, into the flow and into subscriptions
 * together: the next is 429 LIMIT_EXCEEDED naming HERALD_MAX_REPLAYS. A slot is taken while one is
 * created, so requests at once cannot pass the cap together.
 *
 * DELETE /api/v1/replays/{id} cancels (200 with the replay, `cancelled`): no more of it is sent once
 * the answer is out, its slot is free, and a replay into the flow ends its pause (the live events it
 * held go out in order). Idempotent like DELETE of a pause: a finished replay is answered as it
 * stands (`done`, `failed` or `cancelled`). An unknown id is 404.
 */
export function replaysRoutes(app: FastifyInstance, deps: ReplaysRoutesDeps): void {
  const slots = createCap(
    'replays',
    deps.maxReplays,
    () => (deps.dispatcher()?.stats().replays ?? 0) + (deps.subscriptions?.()?.activeReplays() ?? 0),
  );
  app.post(
    '/api/v1/replays',
    {
      schema: {
        summary: 'Replay stored events into the flow',
        description:
          'Re-sends the matching events to herald.events in offset order, each with its x-herald-offset and x-herald-replay: <id>. Live events of the selector are held meanwhile and follow the replay.',
        tags: ['replays'],
        body: Type.Object(
          {
            selector: SelectorBody,
            from: Type.Union([
              Type.Object({ last: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
              Type.Object({ offset: Offset }, { additionalProperties: false }),
              Type.Object({ time: Time }, { additionalProperties: false }),
            ]),
            to: Type.Optional(
              Type.Union([
                Type.Object({ offset: Offset }, { additionalProperties: false }),
                Type.Object({ time: Time }, { additionalProperties: false }),
              ]),
            ),
            target: Type.Optional(
              Type.Union([
                Type.String({ description: '"flow" (the default): the flow of every receiver' }),
                Type.Object({ subscription: Type.String() }, { additionalProperties: false, description: 'one durable subscription' }),
              ]),
            ),
          },
          { additionalProperties: false, examples: [{ selector: ['billing:*'], from: { last: 100 } }] },
        ),
        response: { 202: Type.Union([ReplaySchema, SubscriptionReplaySchema]) },
        problems: [400, 404, 409, 429, 503],
      },
    },
    async (request, reply) => {
      const body = request.body as ReplayBody;
      const name = subscriptionTarget(body.target);
      const dispatcher = needDispatcher(deps);
      // A bad request is 400 even at the cap.
      const req = normalizeReplayInput({ ...body, target: name === undefined ? body.target : undefined });
      // Given back once the replay exists: from then on the dispatcher or the manager counts it.
      const release = slots.take();
      try {
        if (name === undefined) {
          const r = await dispatcher.createReplay(body);
          return reply.code(202).header('location', `/api/v1/replays/${r.id}`).send(replayJson(r));
        }
        const manager = deps.subscriptions?.();
        const store = deps.store;
        if (!manager || !store)
          throw new HeraldError(ErrorCodes.UNAVAILABLE, 'this hub does not serve subscriptions right now (standby or stopping)');
        const range = await resolveReplayRange(store, req, await store.headOffset());
        const id = uuidv7();
        const count = await manager.replay(name, { id, selector: req.selector, from: req.from, to: req.to, ...range });
        return reply
          .code(202)
          .header('location', `/api/v1/replays/${id}`)
          .send({ id, target: { subscription: name }, status: count > 0 ? 'running' : 'done', count });
      } finally {
        release();
      }
    },
  );

  app.get(
    '/api/v1/replays/:id',
    {
      schema: {
        summary: 'A replay’s status and count',
        tags: ['replays'],
        params: Type.Object({ id: Type.String() }),
        response: { 200: ReplaySchema },
        problems: [404, 409, 503],
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const r = await needDispatcher(deps).getReplay(id);
      if (!r) throw notFound(`no replay ${id}`);
      return replayJson(r);
    },
  );

  app.delete(
    '/api/v1/replays/:id',
    {
      schema: {
        summary: 'Cancel a replay',
        description:
          'Stops it: once this answers, no more of its events are sent (those sent before stay sent); it is `cancelled`, ' +
          'its slot is free, and a replay into the flow ends its pause, so the live events it held go out in order. ' +
          'Idempotent: a replay that finished already is answered as it stands (done, failed or cancelled).',
        tags: ['replays'],
        params: Type.Object({ id: Type.String() }),
        response: { 200: ReplaySchema },
        problems: [404, 409, 503],
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const dispatcher = needDispatcher(deps);
      const r = await dispatcher.getReplay(id);
      if (!r) throw notFound(`no replay ${id}`);
      if (r.status !== 'pending' && r.status !== 'running') return replayJson(r);
      if (r.target === 'flow') return replayJson((await dispatcher.cancelReplay(id)) ?? r);
      const manager = deps.subscriptions?.();
      if (!manager) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'this hub does not serve subscriptions right now (standby or stopping)');
      await manager.cancelReplay(r.target.subscription, id);
      return replayJson((await dispatcher.getReplay(id)) ?? r);
    },
  );
}
