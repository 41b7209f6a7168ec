import { DEFAULT_MAX_EVENT_BYTES, type HeraldEvent } from '@herald/core';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Store } from '../store/index.ts';
import { eventsRoutes } from './events-routes.ts';
import { installOpenApi } from './openapi.ts';
import { installProblems } from './problems.ts';

export { eventJson } from './events-routes.ts';
export type { Problem } from './problems.ts';
export { badParameter, notFound } from './problems.ts';

/** What the REST API needs from the hub. */
export interface ApiDeps {
  store: Store;
  /** Publishes an event to herald.ingest; resolves once RabbitMQ confirmed it. */
  publish(event: HeraldEvent): Promise<void>;
  /** Readiness: true, or a map of component → ok. */
  ready(): boolean | Record<string, boolean> | Promise<boolean | Record<string, boolean>>;
  /** Largest event body accepted by POST /api/v1/events. Default 1 MiB. */
  maxEventBytes?: number;
  config?: { maxEventBytes?: number };
  logger?: FastifyBaseLogger;
  /** Adds more routes (pauses, replays, …) before the server starts. */
  extraRoutes?: ((app: FastifyInstance) => void) | undefined;
}

/**
 * Authentication, in one place (DESIGN.md §8): every route passes this hook. It allows everything
 * for now; users and tokens replace its body, not forty routes.
 */
async function authenticate(): Promise<void> {}

/**
 * The hub's HTTP API: REST under /api/v1, /healthz, /readyz, /openapi.json. Errors are RFC 7807
 * problem documents with a stable `code`. Does not listen: the caller does.
 */
export async function createApi(deps: ApiDeps): Promise<FastifyInstance> {
  const maxEventBytes = deps.maxEventBytes ?? deps.config?.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  const app = Fastify({
    loggerInstance: deps.logger,
    // A JSON body carries data of up to maxEventBytes, plus the envelope and JSON escaping.
    bodyLimit: maxEventBytes * 2 + 64 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
  }) as unknown as FastifyInstance;
  installProblems(app);
  installOpenApi(app, { title: 'Herald', version: '1' });
  app.addHook('onRequest', authenticate);

  app.get('/healthz', { schema: { summary: 'The process is alive', tags: ['health'] } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { summary: 'RabbitMQ and the store are reachable', tags: ['health'] } }, async (_request, reply) => {
    const r = await deps.ready();
    const components = typeof r === 'boolean' ? { hub: r } : r;
    const ok = Object.values(components).every(Boolean);
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', components });
  });
  eventsRoutes(app, { store: deps.store, publish: deps.publish, maxEventBytes });
  deps.extraRoutes?.(app);
  return app;
}
