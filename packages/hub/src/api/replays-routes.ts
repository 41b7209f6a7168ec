import { selectorPatterns } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { boundToJson, type Replay } from '../replays/index.ts';
import { type DispatcherRoutesDeps, isoOrNull, needDispatcher, SelectorBody } from './pauses-routes.ts';
import { notFound } from './problems.ts';

const Offset = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: '^[0-9]+$' })]);
const Time = Type.String({ description: 'ISO 8601' });
const Bound = Type.Union([Type.Integer(), Type.String()]);

const ReplaySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  selector: Type.Array(Type.String()),
  from: Type.Record(Type.String(), Bound),
  to: Type.Union([Type.Record(Type.String(), Bound), Type.Null()]),
  target: Type.String(),
  status: Type.String({ enum: ['pending', 'running', 'done', 'failed'] }),
  count: Type.Integer({ description: 'events sent so far' }),
  createdAt: Type.String({ format: 'date-time' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
});

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
 * A bad body is 400 naming the parameter; a target other than `flow` is 400 (replay into a
 * subscription is not built yet); an unknown id 404.
 */
export function replaysRoutes(app: FastifyInstance, deps: DispatcherRoutesDeps): void {
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
            target: Type.Optional(Type.String({ description: 'only "flow" for now (the default)' })),
          },
          { additionalProperties: false },
        ),
        response: { 202: ReplaySchema },
      },
    },
    async (request, reply) => {
      const body = request.body as { selector: string | string[]; from: unknown; to?: unknown; target?: string };
      const r = await needDispatcher(deps).createReplay(body);
      return reply.code(202).header('location', `/api/v1/replays/${r.id}`).send(replayJson(r));
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
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const r = await needDispatcher(deps).getReplay(id);
      if (!r) throw notFound(`no replay ${id}`);
      return replayJson(r);
    },
  );
}
