import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { notFound } from '../api/problems.ts';

/**
 * The routes of the dashboard, in the access table as `open`: the page and its scripts carry no
 * data; every call the page makes goes to the normal API, with the user's token.
 */
export const DASHBOARD_ROUTES: readonly string[] = ['GET /', 'GET /dashboard/*'];

/**
 * Strict for the page: scripts and styles from the hub only (no inline script, no eval), fetches
 * to the hub only, no frames, no forms posted anywhere. The stats stream and the API are the same
 * origin, so `connect-src 'self'` is all the page needs.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

interface Asset {
  type: string;
  body: Buffer;
}

/** The extension of a file name, with its dot; '' when none. */
function extOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? '' : name.slice(dot);
}

/**
 * The libraries the page imports, from the hub's own node_modules (so a packed or installed hub
 * serves them too, and the page needs no internet). A module's bare `from "preact"` is rewritten
 * to the served path: browsers resolve no bare names without an import map, and an import map is
 * an inline script, which the CSP refuses. Source-map comments are dropped (no maps are served).
 */
function vendorAssets(): Map<string, Asset> {
  const require = createRequire(import.meta.url);
  // From the package's main entry up to its package.json: not every package exports ./package.json.
  const root = (pkg: string) => {
    let dir = dirname(require.resolve(pkg));
    while (!(existsSync(join(dir, 'package.json')) && JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name === pkg)) {
      const up = dirname(dir);
      if (up === dir) throw new Error(`the dashboard cannot find the package ${pkg}`);
      dir = up;
    }
    return dir;
  };
  const files: [string, string, string][] = [
    ['preact.mjs', 'preact', 'dist/preact.mjs'],
    ['hooks.mjs', 'preact', 'hooks/dist/hooks.mjs'],
    ['htm.mjs', 'htm', 'dist/htm.module.js'],
    ['uplot.mjs', 'uplot', 'dist/uPlot.esm.js'],
    ['uplot.css', 'uplot', 'dist/uPlot.min.css'],
  ];
  const out = new Map<string, Asset>();
  for (const [name, pkg, path] of files) {
    let text = readFileSync(join(root(pkg), path), 'utf8');
    text = text.replace(/from\s*["']preact["']/g, 'from"./preact.mjs"').replace(/\/[/*]# sourceMappingURL=\S*/g, '');
    out.set(`vendor/${name}`, { type: TYPES[extOf(name)] as string, body: Buffer.from(text) });
  }
  return out;
}

/** The page's own files: ./static/ beside this module (copied to dist/ by scripts/build.mjs). */
function staticAssets(): Map<string, Asset> {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'static');
  const out = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[extOf(name)];
    if (type !== undefined) out.set(name, { type, body: readFileSync(join(dir, name)) });
  }
  return out;
}

/** The headers of every dashboard answer: no sniffing, no framing, the CSP, and revalidate on each load. */
function send(reply: FastifyReply, asset: Asset): FastifyReply {
  return reply
    .header('content-type', asset.type)
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache')
    .send(asset.body);
}

/**
 * `GET /` (the page) and `GET /dashboard/<file>` (its scripts, styles and the libraries under
 * `vendor/`). The files are read once, when the routes are registered: a missing file fails the
 * hub's start rather than a page load. Any other name under /dashboard/ is 404. Hidden from the
 * OpenAPI document: they are not API.
 */
export function dashboardRoutes(app: FastifyInstance): void {
  const assets = new Map([...staticAssets(), ...vendorAssets()]);
  const page = assets.get('index.html');
  if (page === undefined) throw new Error('the dashboard has no index.html');
  app.get('/', { schema: { hide: true } }, (_request, reply) => send(reply, page));
  app.get('/dashboard/*', { schema: { hide: true } }, (request, reply) => {
    const name = (request.params as { '*': string })['*'];
    const asset = name === 'index.html' ? undefined : assets.get(name);
    if (asset === undefined) throw notFound(`no dashboard file ${name.slice(0, 200)}`);
    return send(reply, asset);
  });
}
