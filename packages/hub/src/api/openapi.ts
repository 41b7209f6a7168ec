import type { FastifyInstance, RouteOptions } from 'fastify';
import { accessOf } from './access.ts';

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'A bad parameter or body field, named in `parameter`',
  401: 'No valid credentials (UNAUTHENTICATED): send Authorization: Bearer <token>',
  403: 'The credentials do not allow this (FORBIDDEN): `detail` says what is missing',
  404: 'Not found',
  409: "Conflict with the hub's state or mode",
  413: 'The event body is over the size limit',
  415: 'The body is in a media type this route does not take',
  429: 'A cap of the hub is reached (LIMIT_EXCEEDED; `detail` names it and its setting): retry once a slot is free',
  502: 'RabbitMQ refused or did not confirm the publish',
  503: 'The hub cannot do this right now (standby, stopping, or a component is down)',
};

/** The component name a schema goes under in the document (a symbol: validation and serialization never see it). */
const COMPONENT = Symbol('openapi component');

/**
 * Names a shared schema: the document lists it once under `components.schemas` and refers to it
 * (`$ref`) wherever a route uses it. Returns the schema itself.
 */
export function named<T extends object>(name: string, schema: T): T {
  Object.defineProperty(schema, COMPONENT, { value: name, enumerable: false });
  return schema;
}

/** A copy of `schema` in which every named schema is a `$ref`, the named ones collected into `components`. */
function hoist(schema: unknown, components: Record<string, unknown>): unknown {
  if (Array.isArray(schema)) return schema.map((s) => hoist(s, components));
  if (typeof schema !== 'object' || schema === null) return schema;
  const name = (schema as { [COMPONENT]?: string })[COMPONENT];
  const copy = () => Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, hoist(v, components)]));
  if (name === undefined) return copy();
  if (!(name in components)) {
    components[name] = {}; // taken before the walk, so a schema that holds itself ends
    components[name] = copy();
  }
  return { $ref: `#/components/schemas/${name}` };
}

/** Fastify's by-media-type form, `{ [media]: { schema } }`, with each schema hoisted. */
function hoistContent(content: Record<string, unknown>, components: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(content).map(([media, entry]) => {
      const { schema, ...rest } = entry as { schema?: unknown };
      return [media, schema === undefined ? rest : { ...rest, schema: hoist(schema, components) }];
    }),
  );
}

interface Collected {
  method: string;
  url: string;
  schema: Record<string, unknown>;
}

/**
 * Builds the OpenAPI 3.1 document from the routes' own schemas, so the document cannot drift from
 * what is validated. Call before routes are registered; serves `/openapi.json`.
 */
export function installOpenApi(app: FastifyInstance, info: { title: string; version: string }): void {
  const routes: Collected[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    const schema = route.schema as Record<string, unknown> | undefined;
    if (!schema || schema.hide === true) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (method === 'HEAD') continue;
      routes.push({ method: method.toLowerCase(), url: route.url, schema });
    }
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => document(routes, info));
}

/**
 * A route's operationId unless its schema names one: the method and the path's words, parameters
 * as `By<Name>`, e.g. `get /api/v1/subscriptions/:name/events` → `getSubscriptionsByNameEvents`.
 * Stable as long as the route is, and unique since method and path are.
 */
export function operationIdOf(method: string, url: string): string {
  const words = url
    .split('/')
    .filter((w) => w !== '' && w !== 'api' && w !== 'v1')
    .map((w) => (w.startsWith(':') ? `By-${w.slice(1)}` : w))
    .flatMap((w) => w.split(/[-_.]/))
    .filter((w) => w !== '')
    .map((w) => w[0]!.toUpperCase() + w.slice(1));
  return `${method.toLowerCase()}${words.join('')}`;
}

function document(routes: Collected[], info: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const shared: Record<string, unknown> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [where, key] of [
      ['path', 'params'],
      ['query', 'querystring'],
      ['header', 'headers'],
    ] as const) {
      const s = r.schema[key] as { properties?: Record<string, { description?: string }>; required?: string[] } | undefined;
      for (const [name, prop] of Object.entries(s?.properties ?? {})) {
        parameters.push({
          name,
          in: where,
          required: where === 'path' || (s?.required ?? []).includes(name),
          description: prop.description,
          schema: prop,
        });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, schema] of Object.entries((r.schema.response as Record<string, unknown>) ?? {})) {
      const s = schema as { description?: string; content?: Record<string, unknown> };
      // Fastify's by-media-type form ({ content: { 'text/event-stream': { schema } } }) goes in by media type.
      responses[status] = s.content
        ? { description: s.description ?? status, content: hoistContent(s.content, shared) }
        : { description: s.description ?? status, content: { 'application/json': { schema: hoist(schema, shared) } } };
    }
    // A route that validates parameters or a body answers 400 when they are wrong, declared or not.
    const validates = ['params', 'querystring', 'headers', 'body'].some((k) => r.schema[k] !== undefined);
    const problems = new Set<number>((r.schema.problems as number[] | undefined) ?? []);
    if (validates) problems.add(400);
    // A route that names something in its path answers 404 when there is no such thing.
    if (r.schema.params !== undefined) problems.add(404);
    for (const status of [...problems].sort()) {
      responses[String(status)] = {
        description:
          (r.schema.problemDescriptions as Record<number, string> | undefined)?.[status] ?? PROBLEM_DESCRIPTIONS[status] ?? 'An error',
        content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
      };
    }
    responses.default = {
      description: 'An error, as an RFC 7807 problem document',
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    };
    // Every route but the open ones takes a bearer token, and can answer 401 and 403 (and 429 after failed attempts).
    const open = accessOf(r.method.toUpperCase(), r.url) === 'open';
    if (!open) {
      for (const status of [401, 403, 429]) {
        responses[String(status)] ??= {
          description: status === 429 ? 'Too many failed authentications from this address, or a cap' : PROBLEM_DESCRIPTIONS[status],
          content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
        };
      }
    }
    const op: Record<string, unknown> = {
      operationId: (r.schema.operationId as string | undefined) ?? operationIdOf(r.method, r.url),
      summary: r.schema.summary,
      description: r.schema.description,
      tags: r.schema.tags,
      parameters,
      responses,
      security: open ? [] : [{ bearer: [] }],
    };
    const body = r.schema.body as { content?: Record<string, unknown> } | undefined;
    if (body)
      op.requestBody = {
        required: true,
        content: body.content ? hoistContent(body.content, shared) : { 'application/json': { schema: hoist(body, shared) } },
      };
    paths[path] = { ...(paths[path] ?? {}), [r.method]: op };
  }
  return {
    openapi: '3.1.0',
    info,
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'an API token (POST /api/v1/users/{name}/tokens) or HERALD_ADMIN_TOKEN' },
      },
      schemas: {
        ...shared,
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status', 'detail', 'code'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            code: { type: 'string', description: 'Herald error code, stable across versions' },
            instance: { type: 'string' },
            parameter: { type: 'string', description: 'the parameter or field that is wrong' },
          },
        },
      },
    },
  };
}

declare module 'fastify' {
  interface FastifySchema {
    /** OpenAPI: one line on what the route does. */
    summary?: string;
    description?: string;
    tags?: string[];
    /** OpenAPI: the operation's id; default operationIdOf(method, url). */
    operationId?: string;
    /** Leave the route out of the OpenAPI document. */
    hide?: boolean;
    /** OpenAPI: the statuses this route answers with a problem document, besides `default`. */
    problems?: number[];
    /** OpenAPI: what a problem status means on this route, where it says more than the shared description. */
    problemDescriptions?: Record<number, string>;
  }
}
