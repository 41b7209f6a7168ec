import type { FastifyInstance } from 'fastify';

/**
 * `/docs`: the REST API as people read and try it. The page reads `/openapi.json` (the document
 * built from the routes' own schemas, so it cannot drift) and shows every operation by tag, with
 * its parameters, body and answers, and a form that sends the request, with a bearer token when
 * one is given, and shows the answer. No library and nothing from the internet: one HTML page and
 * one script, held here as text so that the package ships them without a build step.
 *
 * Security: the page carries no data; what it shows comes from the API, which checks every request
 * as usual (same origin, the token the user typed, kept in sessionStorage). A strict CSP allows
 * only this script, and everything is written as text (textContent), never as HTML.
 */
/** The routes of the page, as ACCESS names them (open, and left out of the OpenAPI document). */
export const DOCS_PAGE_ROUTES: readonly string[] = ['GET /docs', 'GET /docs/docs.js'];

export function docsPageRoutes(app: FastifyInstance): void {
  app.get('/docs', { schema: { hide: true } }, async (_request, reply) =>
    reply.headers(SECURITY_HEADERS).type('text/html; charset=utf-8').send(HTML),
  );
  app.get('/docs/docs.js', { schema: { hide: true } }, async (_request, reply) =>
    reply.headers(SECURITY_HEADERS).type('text/javascript; charset=utf-8').send(SCRIPT),
  );
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Herald API</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem 1.5rem; color: #1d232b; }
header { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; border-bottom: 1px solid #d8dde3; padding-bottom: .75rem; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; text-transform: capitalize; }
details { border: 1px solid #d8dde3; border-radius: 6px; margin: .35rem 0; }
summary { cursor: pointer; padding: .45rem .6rem; display: flex; gap: .6rem; align-items: baseline; }
.method { font: 600 12px ui-monospace, monospace; width: 4.5rem; text-transform: uppercase; }
.get { color: #1b6ac9; } .post { color: #1c8a4a; } .put { color: #a66400; } .delete { color: #c22f2f; }
.path { font-family: ui-monospace, monospace; }
.body { padding: .3rem .8rem .8rem; border-top: 1px solid #eef0f3; }
label { display: block; margin: .3rem 0; font-family: ui-monospace, monospace; font-size: 12px; }
input, textarea { font: 12px ui-monospace, monospace; width: 100%; box-sizing: border-box; padding: .25rem; }
textarea { min-height: 5rem; }
pre { background: #f5f7f9; padding: .5rem; overflow: auto; max-height: 24rem; font-size: 12px; }
button { margin-top: .4rem; padding: .3rem .8rem; }
.muted { color: #66707a; }
</style>
</head>
<body>
<header>
  <h1>Herald API</h1>
  <span class="muted">from <a href="/openapi.json">/openapi.json</a></span>
  <label style="flex:1; min-width: 16rem">token <input id="token" type="password" autocomplete="off" placeholder="API token (only when authentication is on)"></label>
</header>
<main id="main"><p class="muted">Loading…</p></main>
<script type="module" src="/docs/docs.js"></script>
</body>
</html>
`;

const SCRIPT = `// Renders /openapi.json; every text goes in as textContent, never as HTML.
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (k === 'class') e.className = v; else e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const token = document.getElementById('token');
token.value = sessionStorage.getItem('herald.token') ?? '';
token.addEventListener('change', () => sessionStorage.setItem('herald.token', token.value.trim()));

function resolveRef(doc, schema) {
  if (schema && schema.$ref) return doc.components.schemas[schema.$ref.split('/').pop()];
  return schema;
}

function operation(doc, path, method, op) {
  const params = op.parameters ?? [];
  const inputs = new Map();
  const form = el('div');
  for (const p of params) {
    const input = el('input', { placeholder: p.description ?? '' });
    inputs.set(p, input);
    form.append(el('label', {}, p.in + ' ' + p.name + (p.required ? ' *' : ''), input));
  }
  let bodyInput;
  if (op.requestBody) {
    bodyInput = el('textarea', { spellcheck: 'false' });
    bodyInput.value = '{}';
    form.append(el('label', {}, 'JSON body', bodyInput));
  }
  const out = el('pre', { hidden: '' });
  const send = el('button', { type: 'button' }, 'Send');
  send.addEventListener('click', async () => {
    let url = path;
    const query = new URLSearchParams();
    for (const [p, input] of inputs) {
      const v = input.value;
      if (v === '') continue;
      if (p.in === 'path') url = url.replace('{' + p.name + '}', encodeURIComponent(v));
      else if (p.in === 'query') query.set(p.name, v);
    }
    const q = query.toString();
    const headers = {};
    if (token.value.trim() !== '') headers.authorization = 'Bearer ' + token.value.trim();
    if (bodyInput) headers['content-type'] = 'application/json';
    out.hidden = false;
    out.textContent = method.toUpperCase() + ' ' + url + (q ? '?' + q : '') + ' …';
    try {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 10000);
      const res = await fetch(url + (q ? '?' + q : ''), { method: method.toUpperCase(), headers, body: bodyInput ? bodyInput.value : undefined, signal: ac.signal });
      const type = res.headers.get('content-type') ?? '';
      let text = '';
      if (type.startsWith('text/event-stream')) {
        // A stream: its first chunk, then it is closed.
        const reader = res.body.getReader();
        const { value } = await reader.read();
        text = new TextDecoder().decode(value ?? new Uint8Array()) + '\\n(stream closed by this page)';
        await reader.cancel();
      } else text = await res.text();
      clearTimeout(timer);
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch {}
      out.textContent = res.status + ' ' + res.statusText + '\\n' + text;
    } catch (err) {
      out.textContent = 'failed: ' + err.message;
    }
  });
  const answers = el('ul');
  for (const [status, r] of Object.entries(op.responses ?? {})) answers.append(el('li', {}, status + ': ' + (r.description ?? '')));
  const body = el('div', { class: 'body' });
  if (op.description) body.append(el('p', {}, op.description));
  if (op.requestBody) {
    const schema = resolveRef(doc, op.requestBody.content?.['application/json']?.schema);
    body.append(el('details', {}, el('summary', {}, 'body schema'), el('pre', {}, JSON.stringify(schema, null, 2))));
  }
  body.append(el('p', { class: 'muted' }, op.security?.length ? 'needs a token when authentication is on' : 'open'));
  body.append(form, send, out, el('p', {}, 'Answers:'), answers);
  return el(
    'details',
    { id: op.operationId ?? method + path },
    el('summary', {}, el('span', { class: 'method ' + method }, method), el('span', { class: 'path' }, path), el('span', { class: 'muted' }, op.summary ?? '')),
    body,
  );
}

async function main() {
  const main = document.getElementById('main');
  const doc = await (await fetch('/openapi.json')).json();
  const byTag = new Map();
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = op.tags?.[0] ?? 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  main.replaceChildren();
  for (const [tag, ops] of byTag) main.append(el('h2', {}, tag), ...ops);
}
main().catch((err) => { document.getElementById('main').textContent = 'could not read /openapi.json: ' + err.message; });
`;
