import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorCodes, type HeraldError, parseSelector, type Selector } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { assertSubscriptionName } from '../subscriptions/start-position.ts';
import type { SubscriptionView } from '../subscriptions/types.ts';
import { openRequests } from './open-requests.ts';
import { SelectorBody } from './pauses-routes.ts';
import { notFound } from './problems.ts';
import { subscriptionPullRoutes } from './subscriptions-pull-routes.ts';
import {
  NameParams,
  naming,
  needManager,
  OffsetInput,
  type SubscriptionRoutesDeps,
  SubscriptionSchema,
  subscriptionAccess,
  subscriptionJson,
} from './subscriptions-shared.ts';
import { subscriptionSseRoutes } from './subscriptions-sse-routes.ts';

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

/**
 * `/api/v1/subscriptions`: create, list, get (with lag), delete; pull with long poll, ack; an SSE
 * stream. Errors come from the manager (NOT_FOUND 404, CONFLICT 409, INVALID_* 400 naming the
 * field) or from needManager (409 archive mode, 503 standby or stopping).
 *
 * Offsets are decimal strings in every answer, as in /api/v1/events; acks take a JSON integer or a
 * decimal string. An ack is the subscription's, whichever transport delivered the events. The SSE
 * stream never acknowledges by itself: the client does, with POST …/ack or with the Last-Event-ID
 * of its reconnect; see streamSubscription (subscriptions-sse-routes.ts).
 */
export function subscriptionsRoutes(app: FastifyInstance, deps: SubscriptionRoutesDeps): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const access = subscriptionAccess(app);
  const { usable, usableView } = access;
  const whileOpen = openRequests(app);

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

  subscriptionPullRoutes(app, deps, { access, whileOpen });
  subscriptionSseRoutes(app, deps, { access, whileOpen });
}
