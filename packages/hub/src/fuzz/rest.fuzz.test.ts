import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@herald/testing';
import { jsonText, RawJson } from './boundary.ts';
import { AcceptedEvents, type FuzzHub, fuzzSettings, getText, startFuzzHub } from './fuzz-kit.ts';
import { fuzzEdge, type Outcome } from './fuzz-runner.ts';
import { Known, type Operation, operationsOf, type Pool, type RestInput, restInputs } from './openapi-inputs.ts';
import { type HttpAnswer, paramText, pct, restClient } from './rest-client.ts';

const settings = fuzzSettings();
/** A request that has not answered by then hangs (a failure), except on the routes below. */
const ANSWER_MS = 10_000;
/** Long polls and event streams are given up after this long: waiting is what they do. */
const WAITING_MS = 1000;
const WAITING_ROUTES = new Set(['/api/v1/subscriptions/{name}/events', '/api/v1/subscriptions/{name}/stream', '/api/v1/stats/stream']);

/** What the hub made during the run, for requests that name something that exists. */
const pools: Record<Pool, string[]> = { subscription: [], pause: [], replay: [], event: [], offset: [] };
/** Used while a pool is still empty, so a Known always resolves the same way. */
const FALLBACK: Record<Pool, string> = {
  subscription: 'fuzz-all',
  pause: '00000000-0000-4000-8000-000000000000',
  replay: '00000000-0000-4000-8000-000000000000',
  event: '00000000-0000-4000-8000-000000000000',
  offset: '1',
};
const remember = (pool: Pool, value: string) => {
  if (pools[pool].length < 1000 && !pools[pool].includes(value)) pools[pool].push(value);
};

/** `v` with every Known replaced by what it names now. */
function resolve(v: unknown): unknown {
  if (v instanceof Known) {
    const list = pools[v.pool];
    return list.length === 0 ? FALLBACK[v.pool] : list[v.pick % list.length];
  }
  if (Array.isArray(v)) return v.map(resolve);
  if (v instanceof RawJson || v === null || typeof v !== 'object') return v;
  // No prototype: a field named __proto__ stays a field.
  return Object.assign(Object.create(null), Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)])));
}

const problemCode = (a: HttpAnswer) => {
  if (!('status' in a)) return '';
  try {
    return String((JSON.parse(a.text) as { code?: string }).code ?? '');
  } catch {
    return '';
  }
};
const answerText = (a: HttpAnswer) => ('status' in a ? `${a.status} ${a.text.slice(0, 1000)}` : `${a.error}: ${a.message}`);

describe('fuzz: REST requests generated from /openapi.json, router hub on PostgreSQL', () => {
  let hub: FuzzHub | undefined;
  let client: ReturnType<typeof restClient>;
  let ops: Operation[] = [];
  /** Pauses created in this batch: resumed before the probe, which they could otherwise hold. */
  let activePauses: string[] = [];
  const accepted = new AcceptedEvents();

  const get = async (path: string) => client.send('GET', path, {}, undefined, ANSWER_MS);
  const postJson = async (path: string, body: unknown) =>
    client.send('POST', path, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify(body)), ANSWER_MS);

  before(async () => {
    console.log(
      `# fuzz rest: seed ${settings.seed} (HERALD_FUZZ_SEED=${settings.seed} reproduces), ${settings.runs} inputs, batch ${settings.batch}`,
    );
    hub = await startFuzzHub('fuzzrest', settings);
    client = restClient(hub.fx.http);
    const doc = await getText(`${hub.fx.http}/openapi.json`);
    assert.ok('status' in doc && doc.status === 200, 'the hub serves /openapi.json');
    ops = operationsOf(JSON.parse(doc.text));
    // Something to name: two subscriptions and three stored events.
    for (const [name, selector] of [
      ['fuzz-all', '*:*'],
      ['fuzz-billing', 'billing:*'],
    ]) {
      const r = await postJson('/api/v1/subscriptions', { name, selector, start: 'earliest' });
      assert.ok('status' in r && r.status === 201, answerText(r));
      remember('subscription', name as string);
    }
    for (let i = 0; i < 3; i++) {
      const r = await postJson('/api/v1/events', { sender: 'billing', type: 'invoice.paid', data: { i } });
      assert.ok('status' in r && r.status === 202, answerText(r));
      remember('event', (JSON.parse(r.text) as { id: string }).id);
    }
    await waitFor(
      'the fixture events stored',
      async () => {
        const r = await get('/api/v1/events?limit=10');
        return 'status' in r && r.status === 200 && (JSON.parse(r.text) as { events: unknown[] }).events.length >= 3;
      },
      10_000,
    );
    for (const o of ['1', '2', '3']) remember('offset', o);
  });
  after(async () => {
    client?.close();
    await hub?.close();
  });

  /** Sends one generated request and what it implies (a created thing must read back). */
  async function send(input: RestInput, index: number): Promise<Outcome> {
    const op = ops[input.op] as Operation;
    const route = `${op.method} ${op.path}`;
    let path = op.path;
    for (const [name, v] of Object.entries(input.path)) path = path.replace(`{${name}}`, pct(paramText(resolve(v))));
    const query = input.query.map(([k, v]) => `${pct(k)}=${pct(paramText(resolve(v)))}`).join('&');
    if (query) path += `?${query}`;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(input.headers)) headers[k] = paramText(resolve(v));
    let body: Buffer | undefined;
    let json: unknown;
    if (input.body && 'json' in input.body) {
      json = resolve(input.body.json);
      body = Buffer.from(jsonText(json));
      headers['content-type'] = 'application/json';
    } else if (input.body) {
      body = Buffer.from(input.body.raw);
      if (input.body.contentType) headers['content-type'] = input.body.contentType;
    }
    const waiting = WAITING_ROUTES.has(op.path);
    const a = await client.send(op.method, path, headers, body, waiting ? WAITING_MS : ANSWER_MS, waiting);
    if (!('status' in a)) {
      if (a.error === 'timeout' && !waiting)
        return { tally: `${route} no answer`, failure: `${route} → no answer within ${ANSWER_MS} ms`, detail: a.message };
      if (a.error === 'timeout') return { tally: `${route} given up` };
      // Why the connection ended without an answer, in a few words (no numbers: one tally per kind).
      return { tally: `${route} ${a.error}: ${a.message.replace(/\d+/g, 'N').slice(0, 60)}` };
    }
    const tally = `${route} ${a.status}`;
    const declared = a.status === 503 && op.statuses.has('503');
    if (a.status >= 500 && !declared && a.status !== 504)
      return { tally, failure: `${route} → ${a.status} ${problemCode(a)}`.trim(), detail: answerText(a) };
    if (a.status >= 300) return { tally };
    return (await followUp(op, json, a, index, input)) ?? { tally };
  }

  /** What a success promises: a subscription, pause or replay created can be read back; an event accepted is stored (checked after the probe). */
  async function followUp(
    op: Operation,
    json: unknown,
    a: Extract<HttpAnswer, { status: number }>,
    index: number,
    input: RestInput,
  ): Promise<Outcome | undefined> {
    const route = `${op.method} ${op.path}`;
    if (op.method !== 'POST') return undefined;
    const created = (): { id?: string } => {
      try {
        return JSON.parse(a.text) as { id?: string };
      } catch {
        return {};
      }
    };
    const check = async (what: string, readPath: string): Promise<Outcome | undefined> => {
      const r = await get(readPath);
      if ('status' in r && r.status === 200) return undefined;
      return {
        tally: `${route} ${a.status}`,
        failure: `${what} created by ${route} (${a.status}) does not read back: GET ${readPath.replace(/\/[^/]+$/, '/{id}')} answered ${'status' in r ? `${r.status} ${problemCode(r)}`.trim() : r.error}`,
        detail: answerText(r),
      };
    };
    if (op.path === '/api/v1/subscriptions' && (a.status === 201 || a.status === 200)) {
      const name = (json as { name?: unknown } | undefined)?.name;
      if (typeof name !== 'string') return undefined;
      remember('subscription', name);
      return check('a subscription', `/api/v1/subscriptions/${pct(name)}`);
    }
    const id = created().id;
    if (typeof id !== 'string') return undefined;
    if (op.path === '/api/v1/pauses') {
      remember('pause', id);
      activePauses.push(id);
      return (await check('a pause', `/api/v1/pauses/${pct(id)}`)) ?? (await check('a pause (the list)', '/api/v1/pauses'));
    }
    if (op.path === '/api/v1/replays') {
      remember('replay', id);
      return check('a replay', `/api/v1/replays/${pct(id)}`);
    }
    if (op.path === '/api/v1/events') {
      remember('event', id);
      if (index >= 0) accepted.add({ id, index, input, via: route });
    }
    return undefined;
  }

  test(`${settings.runs} requests over every route; no undeclared 5xx, what is created reads back, and after every ${settings.batch} the invariant holds`, async () => {
    const h = hub as FuzzHub;
    const report = await fuzzEdge(
      h,
      {
        name: 'rest',
        arbitrary: restInputs(ops),
        send,
        async beforeCheck() {
          // Resuming is part of the contract: a pause that cannot be deleted breaks the invariant.
          const violations: string[] = [];
          for (const id of activePauses) {
            const r = await client.send('DELETE', `/api/v1/pauses/${pct(id)}`, {}, undefined, ANSWER_MS);
            if (!('status' in r) || (r.status !== 200 && r.status !== 404))
              violations.push(`DELETE /api/v1/pauses/${id} answered ${answerText(r)}`);
          }
          activePauses = [];
          return violations;
        },
        afterCheck: () => accepted.takeUnstored(h.fx.http),
      },
      settings,
    );
    console.log(report.text);
    assert.ok(report.ok, report.summary);
    assert.ok(report.inputs >= settings.runs);
  });
});
