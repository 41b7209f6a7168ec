import { ErrorCodes, HeraldError, selectorPatterns } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { Dispatcher, PauseView } from '../dispatcher/index.ts';
import { named } from './openapi.ts';
import { notFound } from './problems.ts';

/** What the pause and replay routes need from the hub. */
export interface DispatcherRoutesDeps {
  /** The router-mode dispatcher; undefined in archive mode, on a standby hub, or while stopping. */
  dispatcher: () => Dispatcher | undefined;
  /** `archive` makes the answer 409 rather than 503. */
  mode: string;
}

/** The dispatcher, or the problem a client reads when this hub cannot pause or replay (409 archive mode, 503 standby). */
export function needDispatcher(deps: DispatcherRoutesDeps): Dispatcher {
  const d = deps.dispatcher();
  if (d) return d;
  if (deps.mode === 'archive')
    throw new HeraldError(
      ErrorCodes.CONFLICT,
      'pauses and replays need the hub in router mode (HERALD_MODE=router); this hub runs in archive mode',
    );
  throw new HeraldError(
    ErrorCodes.UNAVAILABLE,
    'this hub does not dispatch events right now (standby or stopping); ask the hub that holds the writer lease',
  );
}

/** An epoch-ms time as ISO 8601, or null. */
export const isoOrNull = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

const Nullable = (t: ReturnType<typeof Type.String>) => Type.Union([t, Type.Null()]);
export const SelectorBody = Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], {
  description: 'patterns sender:type, as an array or comma-separated',
});

const PauseSchema = named(
  'Pause',
  Type.Object({
    id: Type.String({ format: 'uuid' }),
    selector: Type.Array(Type.String()),
    reason: Nullable(Type.String()),
    createdAt: Type.String({ format: 'date-time' }),
    expiresAt: Type.String({ format: 'date-time', description: 'the pause ends by itself then' }),
    endedAt: Nullable(Type.String({ format: 'date-time', description: 'set once resumed or expired, while the release runs' })),
    held: Type.Integer({ description: 'held events its selector matches' }),
  }),
);

/** A pause as the REST API shows it. */
export function pauseJson(p: PauseView) {
  return {
    id: p.id,
    selector: selectorPatterns(p.selector),
    reason: p.reason ?? null,
    createdAt: isoOrNull(p.createdAt),
    expiresAt: isoOrNull(p.expiresAt),
    endedAt: isoOrNull(p.endedAt),
    held: p.held,
  };
}

const IdParams = Type.Object({ id: Type.String() });

/**
 * POST /api/v1/pauses (create with ttl), GET /api/v1/pauses (those still holding), GET one, DELETE
 * one (= resume; idempotent). A bad body is 400 naming the parameter (a ttl above the maximum
 * included), an unknown id 404; a create past the active pauses cap (HERALD_MAX_PAUSES) 429.
 */
export function pausesRoutes(app: FastifyInstance, deps: DispatcherRoutesDeps): void {
  app.post(
    '/api/v1/pauses',
    {
      schema: {
        summary: 'Pause the flow of a selector',
        description:
          'Matching events are stored but held back from herald.events until the pause ends (DELETE or its expiry); then they are released in offset order, before newer events of that flow.',
        tags: ['pauses'],
        body: Type.Object(
          {
            selector: SelectorBody,
            ttl: Type.Optional(
              Type.Number({ exclusiveMinimum: 0, description: 'seconds; default 300, at most the configured maximum (24 h)' }),
            ),
            reason: Type.Optional(Type.String({ maxLength: 1000 })),
          },
          { additionalProperties: false, examples: [{ selector: ['billing:*'], ttl: 300, reason: 'migrating the ledger' }] },
        ),
        response: { 201: PauseSchema },
        problems: [400, 409, 429, 503],
      },
    },
    async (request, reply) => {
      const body = request.body as { selector: string | string[]; ttl?: number; reason?: string };
      const p = await needDispatcher(deps).createPause(body);
      return reply.code(201).header('location', `/api/v1/pauses/${p.id}`).send(pauseJson(p));
    },
  );

  app.get(
    '/api/v1/pauses',
    {
      schema: {
        summary: 'Pauses that still hold: active, or ended with a release in progress',
        tags: ['pauses'],
        response: { 200: Type.Object({ items: Type.Array(PauseSchema) }) },
      },
    },
    async () => ({ items: (await needDispatcher(deps).listPauses()).map(pauseJson) }),
  );

  app.get(
    '/api/v1/pauses/:id',
    { schema: { summary: 'One pause', tags: ['pauses'], params: IdParams, response: { 200: PauseSchema } } },
    async (request) => {
      const { id } = request.params as { id: string };
      const p = await needDispatcher(deps).getPause(id);
      if (!p) throw notFound(`no pause ${id}`);
      return pauseJson(p);
    },
  );

  app.delete(
    '/api/v1/pauses/:id',
    {
      schema: {
        summary: 'Resume: end the pause',
        description:
          'Its held events are released in the background, in offset order; `held` says how many its selector matched. Idempotent.',
        tags: ['pauses'],
        params: IdParams,
        response: { 200: PauseSchema },
      },
    },
    async (request) => pauseJson(await needDispatcher(deps).resume((request.params as { id: string }).id)),
  );
}
