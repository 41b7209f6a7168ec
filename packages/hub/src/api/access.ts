import { ErrorCodes, HeraldError } from '@herald/core';
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import type { Auth } from '../auth/auth.ts';
import { isLoopbackHost } from '../auth/auth.ts';
import type { Principal } from '../auth/types.ts';

/**
 * Who may call a route, before its handler looks closer:
 * - `open`: anyone, no credentials (probes, the OpenAPI document, metrics);
 * - `admin`: an admin;
 * - `publisher`: a user with a publisher role; the handler checks the sender;
 * - `subscriber`: a user with a subscriber role; the handler checks the selector and the owner;
 * - `user`: any authenticated user; the handler shows what the user's roles cover (the event catalog).
 */
export type Access = 'open' | 'admin' | 'publisher' | 'subscriber' | 'user';

/**
 * Every route of the REST API and who may call it: the one table (DESIGN.md §8). A route missing
 * here cannot be registered (createApi fails), so no route goes without a rule.
 */
export const ACCESS: Readonly<Record<string, Access>> = {
  'GET /healthz': 'open',
  'GET /readyz': 'open',
  'GET /openapi.json': 'open',
  'GET /metrics': 'open',
  // The API reference page and its script (no data; its calls carry the token the user gives).
  'GET /docs': 'open',
  'GET /docs/docs.js': 'open',
  // The dashboard's page and static files (no data; its API calls carry the user's token).
  'GET /': 'open',
  'GET /dashboard/*': 'open',
  'GET /api/v1/stats': 'admin',
  'GET /api/v1/stats/stream': 'admin',
  'GET /api/v1/events': 'subscriber',
  'GET /api/v1/events/:offset': 'subscriber',
  'GET /api/v1/events/by-id/:id': 'subscriber',
  'POST /api/v1/events': 'publisher',
  'POST /api/v1/subscriptions': 'subscriber',
  'GET /api/v1/subscriptions': 'subscriber',
  'GET /api/v1/subscriptions/:name': 'subscriber',
  'DELETE /api/v1/subscriptions/:name': 'subscriber',
  'GET /api/v1/subscriptions/:name/events': 'subscriber',
  'POST /api/v1/subscriptions/:name/ack': 'subscriber',
  'GET /api/v1/subscriptions/:name/stream': 'subscriber',
  'POST /api/v1/pauses': 'admin',
  'GET /api/v1/pauses': 'admin',
  'GET /api/v1/pauses/:id': 'admin',
  'DELETE /api/v1/pauses/:id': 'admin',
  'POST /api/v1/replays': 'admin',
  'GET /api/v1/replays/:id': 'admin',
  'DELETE /api/v1/replays/:id': 'admin',
  'GET /api/v1/dead-letters': 'admin',
  'GET /api/v1/dead-letters/:id': 'admin',
  'POST /api/v1/dead-letters/:id/redrive': 'admin',
  'POST /api/v1/dead-letters/redrive': 'admin',
  'DELETE /api/v1/dead-letters/:id': 'admin',
  'DELETE /api/v1/dead-letters': 'admin',
  'POST /api/v1/exchanges': 'admin',
  'GET /api/v1/exchanges': 'admin',
  'GET /api/v1/exchanges/:name': 'admin',
  'DELETE /api/v1/exchanges/:name': 'admin',
  'POST /api/v1/users': 'admin',
  'GET /api/v1/users': 'admin',
  'GET /api/v1/users/:name': 'admin',
  'DELETE /api/v1/users/:name': 'admin',
  'PUT /api/v1/users/:name/roles': 'admin',
  'POST /api/v1/users/:name/tokens': 'admin',
  'GET /api/v1/users/:name/tokens': 'admin',
  'DELETE /api/v1/users/:name/tokens/:id': 'admin',
  // The event catalog: read by any user (each sees the types its roles cover), written by publishers of the sender.
  'GET /api/v1/catalog': 'user',
  'GET /api/v1/catalog/asyncapi.json': 'user',
  'GET /api/v1/catalog/:sender/:type': 'user',
  'PUT /api/v1/catalog/:sender/:type': 'publisher',
  'DELETE /api/v1/catalog/:sender/:type': 'publisher',
};

/** The rule of a route; HEAD goes as its GET. */
export function accessOf(method: string, url: string): Access | undefined {
  return ACCESS[`${method === 'HEAD' ? 'GET' : method} ${url}`];
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Authentication and the access rules (auth/auth.ts). */
    auth: Auth;
  }
  interface FastifyRequest {
    /** Who sent the request: set by the access hook before anything else reads the request (null on open routes). */
    principal: Principal;
  }
}

/**
 * A request a web page could have made: refused, so no page in a browser can drive the hub (auth
 * off on loopback included). Browsers send `Origin` on cross-origin requests, `Sec-Fetch-Site` on
 * all of them; a page that rebinds its own domain to 127.0.0.1 sends its domain as `Host`.
 */
function browserRefusal(request: FastifyRequest, authEnabled: boolean): string | undefined {
  const host = request.headers.host ?? '';
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return 'a request from another site';
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== 'null') {
    let originHost: string | undefined;
    try {
      originHost = new URL(origin).host;
    } catch {
      return 'a request with a malformed Origin';
    }
    if (originHost !== host) return `a cross-origin request from ${origin.slice(0, 200)} (the hub serves no CORS)`;
  } else if (origin === 'null') return 'a request from an opaque origin';
  if (!authEnabled) {
    const name = host.replace(/:\d+$/, '');
    if (name !== '' && !isLoopbackHost(name)) return `Host ${host.slice(0, 200)}: a hub without authentication answers loopback names only`;
  }
  return undefined;
}

/**
 * Installs the access hook: the first onRequest hook, before the body is read or anything is
 * validated, so a request without valid credentials learns nothing but 401. It refuses browser
 * requests from other origins, authenticates (401, or 429 after too many failures from the
 * address) and applies the route's rule (403). Registers a check that fails createApi for a route
 * without a rule.
 */
export function installAccess(app: FastifyInstance, auth: Auth): void {
  app.decorate('auth', auth);
  app.decorateRequest('principal', null as never);
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (accessOf(method, route.url) === undefined)
        throw new Error(`route ${method} ${route.url} has no access rule: add it to ACCESS in packages/hub/src/api/access.ts`);
    }
  });
  app.addHook('onRequest', async (request) => {
    const refusal = browserRefusal(request, auth.enabled);
    if (refusal !== undefined) throw new HeraldError(ErrorCodes.FORBIDDEN, `refused ${refusal}`);
    const url = request.routeOptions.url;
    // Unknown routes (404) still need credentials: without them, nobody learns which routes exist.
    const access = url === undefined ? 'admin' : (accessOf(request.method, url) ?? 'admin');
    // An open route is anyone's: it has no principal, and asks for none.
    if (access === 'open') return;
    const header = request.headers.authorization;
    request.principal = await auth.authenticate(Array.isArray(header) ? header[0] : header, request.ip);
    if (url === undefined) return;
    if (access === 'admin') auth.assertAdmin(request.principal, `${request.method} ${url}`);
    else if (access === 'publisher') auth.assertSomePublisher(request.principal);
    else if (access === 'subscriber') auth.assertSomeSubscriber(request.principal);
  });
}
