import { ErrorCodes, HeraldError, parseOffset as parseOffsetValue, selectorPatterns } from '@herald/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { DeliveredEvent, SubscriptionManager, SubscriptionView } from '../subscriptions/types.ts';
import { EventSchema, eventJson } from './events-routes.ts';
import { named } from './openapi.ts';
import { isoOrNull } from './pauses-routes.ts';
import { notFound } from './problems.ts';

/**
 * What the subscription routes share: the hub's dependencies, the JSON of a subscription and of a
 * delivered event, offsets and the access check. The routes are in subscriptions-routes.ts (create,
 * list, get, delete), subscriptions-pull-routes.ts (pull, ack) and subscriptions-sse-routes.ts
 * (the Server-Sent Events stream).
 */

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
/** An offset a client sends. Any number or string passes the schema: parseOffset (core) gives the one message for every bad offset. */
export const OffsetInput = Type.Union([Type.Number(), Type.String()], {
  description: 'an offset from 0 to 2^63 - 1: a JSON integer, or a decimal string (needed above 2^53)',
});

/** A subscription in answers (OpenAPI `Subscription`); subscriptionJson writes it. */
export const SubscriptionSchema = named(
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

/** A delivered event in answers (OpenAPI `DeliveredEvent`); deliveredJson writes it. */
export const DeliveredSchema = named(
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

/** An offset sent as a JSON integer or a decimal string (a header, a body field), as a bigint; 400 naming `parameter` otherwise. */
export const offsetOf = (parameter: string, value: number | string): bigint => parseOffsetValue(parameter, value);

/** Gives a manager error the request parameter it is about, so the problem document names it. */
export function naming(err: unknown, parameter: (e: HeraldError) => string | undefined): unknown {
  if (!(err instanceof HeraldError) || typeof err.details?.parameter === 'string') return err;
  const p = parameter(err);
  if (p === undefined) return err;
  return new HeraldError(err.code, err.message, { cause: err, details: { ...err.details, parameter: p } });
}

/** The `:name` path parameter: any string, an unknown name is 404. */
export const NameParams = Type.Object({ name: Type.String({ description: 'the subscription name' }) });

/** Whether the caller may use a subscription, checked from memory (a pull or an ack costs no lag query). */
export interface SubscriptionAccess {
  /** Throws unless the caller may use the subscription: 404 when it is absent, then 403 when it is another user's or outside the caller's selectors. */
  usable(request: FastifyRequest, m: SubscriptionManager, name: string): Promise<void>;
  /** The subscription's view (with lag), once the caller may use it. */
  usableView(request: FastifyRequest, m: SubscriptionManager, name: string): Promise<SubscriptionView>;
}

/** The access checks of the subscription routes, on the app's auth (a denial throws 404 or 403 as above). */
export function subscriptionAccess(app: FastifyInstance): SubscriptionAccess {
  const usable = async (request: FastifyRequest, m: SubscriptionManager, name: string): Promise<void> => {
    const selector = m.selectorOf(name);
    if (!selector) throw notFound(`no subscription ${name}`);
    await app.auth.assertSubscription(request.principal, name, selector, { create: false });
  };
  const usableView = async (request: FastifyRequest, m: SubscriptionManager, name: string): Promise<SubscriptionView> => {
    await usable(request, m, name);
    const view = await m.get(name);
    if (!view) throw notFound(`no subscription ${name}`);
    return view;
  };
  return { usable, usableView };
}
