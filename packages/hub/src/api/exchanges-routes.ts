import { bindingKeys, selectorPatterns } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { Exchanges } from '../exchanges/exchanges.ts';
import type { ExchangeRecord } from '../store/index.ts';
import { named } from './openapi.ts';
import { isoOrNull, SelectorBody } from './pauses-routes.ts';

const ExchangeSchema = named(
  'Exchange',
  Type.Object({
    name: Type.String(),
    selector: Type.Array(Type.String(), { description: 'the patterns it delivers, canonical' }),
    bindingKeys: Type.Array(Type.String(), { description: 'its bindings to herald.events' }),
    createdAt: Type.String({ format: 'date-time' }),
  }),
);

function exchangeJson(e: ExchangeRecord) {
  return { name: e.name, selector: selectorPatterns(e.selector), bindingKeys: bindingKeys(e.selector), createdAt: isoOrNull(e.createdAt) };
}

const NameParams = Type.Object({ name: Type.String({ description: 'the exchange name' }) });

/**
 * `/api/v1/exchanges` (seed 001: "create only an exchange"): a durable topic exchange bound to
 * `herald.events` with a selector's keys, for a client that binds its own queues. Admins only.
 */
export function exchangesRoutes(app: FastifyInstance, exchanges: Exchanges): void {
  app.post(
    '/api/v1/exchanges',
    {
      schema: {
        summary: 'Create an exchange that receives a selector’s events',
        description:
          'A durable topic exchange bound to herald.events with the selector’s binding keys; bind your own queues to it ' +
          '(with `#`, or narrower keys) to receive those events with their original routing keys, and no others. ' +
          'The same name and selector again: 200 with it. Names starting with herald., herald- or amq. are reserved.',
        tags: ['exchanges'],
        body: Type.Object(
          { name: Type.String({ description: '1-200 of A-Z a-z 0-9 _ . -' }), selector: SelectorBody },
          { additionalProperties: false, examples: [{ name: 'crm.feed', selector: ['billing:invoice.*', '*:user.created'] }] },
        ),
        response: { 200: ExchangeSchema, 201: ExchangeSchema },
        problems: [400, 409, 429, 503],
      },
    },
    async (request, reply) => {
      const body = request.body as { name: string; selector: unknown };
      const { exchange, created } = await exchanges.create(body.name, body.selector);
      return reply
        .code(created ? 201 : 200)
        .header('location', `/api/v1/exchanges/${encodeURIComponent(exchange.name)}`)
        .send(exchangeJson(exchange));
    },
  );

  app.get(
    '/api/v1/exchanges',
    {
      schema: {
        summary: 'The exchanges Herald made',
        tags: ['exchanges'],
        response: { 200: Type.Object({ items: Type.Array(ExchangeSchema) }) },
      },
    },
    async () => ({ items: (await exchanges.list()).map(exchangeJson) }),
  );

  app.get(
    '/api/v1/exchanges/:name',
    { schema: { summary: 'One exchange', tags: ['exchanges'], params: NameParams, response: { 200: ExchangeSchema }, problems: [404] } },
    async (request) => exchangeJson(await exchanges.get((request.params as { name: string }).name)),
  );

  app.delete(
    '/api/v1/exchanges/:name',
    {
      schema: {
        summary: 'Delete an exchange',
        description: 'Queues bound to it stay, and receive nothing more.',
        tags: ['exchanges'],
        params: NameParams,
        response: { 204: Type.Null({ description: 'deleted' }) },
        problems: [404, 503],
      },
    },
    async (request, reply) => {
      await exchanges.delete((request.params as { name: string }).name);
      return reply.code(204).send(null);
    },
  );
}
