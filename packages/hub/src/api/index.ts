import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import { DEFAULT_MAX_EVENT_BYTES, type HeraldEvent, LIMITS } from '@herald/core';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import Type from 'typebox';
import { Auth } from '../auth/auth.ts';
import type { Users } from '../auth/users.ts';
import type { AsyncApiCache, AsyncApiServer, Catalog } from '../catalog/index.ts';
import type { Store } from '../store/index.ts';
import { installAccess } from './access.ts';
import { catalogRoutes } from './catalog-routes.ts';
import { docsPageRoutes } from './docs-page.ts';
import { eventsRoutes } from './events-routes.ts';
import { installInputGuard } from './input-guard.ts';
import { installOpenApi } from './openapi.ts';
import { installProblems } from './problems.ts';
import { usersRoutes } from './users-routes.ts';

export { ACCESS, type Access, accessOf } from './access.ts';
export type { EventJson, EventsRoutesDeps } from './events-routes.ts';
export { eventJson } from './events-routes.ts';
export type { Problem } from './problems.ts';
export { badParameter, notFound } from './problems.ts';

/**
 * Readiness by component, e.g. `{ store: true, amqp: 'connection refused' }`. A component is ok
 * when its value is `true` or `'ok'`; `false` or any other string (the reason) means it is down.
 */
export type Readiness = Record<string, boolean | string>;

/** What the REST API needs from the hub. */
export interface ApiDeps {
  /** The log, read by the query routes. */
  store: Store;
  /** Publishes an event to herald.ingest; resolves once RabbitMQ confirmed it, rejects otherwise (a HeraldError keeps its code). */
  publish(event: HeraldEvent): Promise<void>;
  /** Readiness for /readyz: true/false for the whole hub, or by component. A throw counts as not ready. */
  ready(): boolean | Readiness | Promise<boolean | Readiness>;
  /** Largest event body accepted by POST /api/v1/events, in bytes. Default `config.maxEventBytes`, else 1 MiB. */
  maxEventBytes?: number | undefined;
  /**
   * The hub's configuration: `maxEventBytes` when that is not given, and the HTTP timeouts in
   * seconds, fractions rounded to the millisecond (HubConfig's; the defaults here are the same).
   */
  config?:
    | {
        maxEventBytes?: number | undefined;
        httpRequestTimeout?: number | undefined;
        httpIdleTimeout?: number | undefined;
        httpKeepAliveTimeout?: number | undefined;
      }
    | undefined;
  /** Request and error logs. Default: none. */
  logger?: FastifyBaseLogger | undefined;
  /** Authentication and the access rules. Default: authentication off (every request allowed), as on a loopback hub. */
  auth?: Auth | undefined;
  /** Users and tokens: serves /api/v1/users when given. */
  users?: Users | undefined;
  /** The event catalog and the broker its AsyncAPI document names: serves /api/v1/catalog when given. */
  catalog?: { catalog: Catalog; server: AsyncApiServer; asyncApi: AsyncApiCache } | undefined;
  /** Adds more routes (pauses, replays, …) before the server starts; they get the same auth hook, errors and OpenAPI. */
  extraRoutes?: ((app: FastifyInstance) => void) | undefined;
}

/**
 * The longest path parameter a route accepts (find-my-way answers 414 beyond it). The longest
 * value any route carries is a subscription name (LIMITS.subscriptionNameChars, 128); offsets have
 * 19 digits and ids 36 characters. Four times the name leaves room for a name sent fully
 * percent-encoded (3 characters each), so a wrong name gets the route's own answer (400 or 404),
 * not a 414.
 */
const MAX_PARAM_LENGTH = 4 * LIMITS.subscriptionNameChars.value;

function isOk(value: boolean | string): boolean {
  return value === true || value === 'ok';
}

/**
 * The hub's HTTP API: REST under /api/v1 (events: query, get by offset or id, publish), /healthz,
 * /readyz and /openapi.json (OpenAPI 3.1, generated from the route schemas). Errors are RFC 7807
 * problem documents with a stable `code` (see problems.ts, the one place that maps them).
 *
 * Does not listen: the caller calls `listen` (or `inject` in tests) and `close`. Resolves to the
 * fastify instance with every route registered; rejects only on a programming error.
 */
export async function createApi(deps: ApiDeps): Promise<FastifyInstance> {
  const maxEventBytes = deps.maxEventBytes ?? deps.config?.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  const app = Fastify({
    loggerInstance: deps.logger,
    // A JSON body carries data of up to maxEventBytes, plus the envelope and JSON or base64 expansion;
    // anything in between is refused by createEvent with the exact size.
    bodyLimit: maxEventBytes * 2 + 64 * 1024,
    // Node's requestTimeout covers receiving the request (headers and body) only: once a request
    // is in, a long poll or an SSE stream answers as long as it likes. A slow-sending client is cut.
    requestTimeout: Math.round((deps.config?.httpRequestTimeout ?? 60) * 1000),
    // The socket timeout: a connection silent both ways this long is closed, request open or not.
    // Long polls are silent for up to 30 s plus their read, SSE streams write a heartbeat every
    // 15 s, so the default of 120 s cuts neither and still ends connections whose peer vanished.
    connectionTimeout: Math.round((deps.config?.httpIdleTimeout ?? 120) * 1000),
    keepAliveTimeout: Math.round((deps.config?.httpKeepAliveTimeout ?? 72) * 1000),
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
  }) as unknown as FastifyInstance;
  // TypeBox checks the schemas: query strings and path parameters are converted (limit=10 → 10),
  // bodies are not (a JSON number is not a sender), and unknown fields are refused, not dropped.
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  installProblems(app);
  // First of the request hooks: a request without valid credentials learns nothing but 401 (DESIGN.md §8).
  installAccess(app, deps.auth ?? new Auth({ enabled: false }));
  installInputGuard(app);
  installOpenApi(app, { title: 'Herald', version: '1' });
  docsPageRoutes(app);

  app.get(
    '/healthz',
    {
      schema: {
        summary: 'The process is alive (always 200 while it runs)',
        tags: ['health'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  const ReadySchema = Type.Object({
    status: Type.Union([Type.Literal('ready'), Type.Literal('not ready')]),
    components: Type.Record(Type.String(), Type.Union([Type.Boolean(), Type.String()])),
    detail: Type.Optional(Type.String({ description: 'which components are down, and why' })),
  });
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'The hub can serve: 200 when every component is ok, else 503 naming those that are not',
        tags: ['health'],
        response: { 200: ReadySchema, 503: ReadySchema },
      },
    },
    async (request, reply) => {
      let components: Readiness;
      try {
        const r = await deps.ready();
        components = typeof r === 'boolean' ? { hub: r } : r;
      } catch (err) {
        request.log.warn({ err }, 'readiness check failed');
        components = { hub: `readiness check failed: ${(err as Error).message}` };
      }
      const down = Object.entries(components).filter(([, v]) => !isOk(v));
      if (down.length === 0) return reply.code(200).send({ status: 'ready', components });
      const detail = `not ready: ${down.map(([k, v]) => (typeof v === 'string' ? `${k} (${v})` : k)).join(', ')}`;
      return reply.code(503).send({ status: 'not ready', components, detail });
    },
  );

  eventsRoutes(app, { store: deps.store, publish: deps.publish, maxEventBytes });
  if (deps.users) usersRoutes(app, deps.users);
  if (deps.catalog) catalogRoutes(app, deps.catalog);
  deps.extraRoutes?.(app);
  return app;
}
