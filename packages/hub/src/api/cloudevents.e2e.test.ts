import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { uuidv7 } from '@herald/core';
import { type RouterHub, startRouterHub, waitFor } from '@herald/testing';

// CloudEvents 1.0 over the REST API of a real router hub (auth on): binary and structured mode in,
// structured mode and batches out, the mapping both ways, the refusals, and the publish checks
// (access, the per-token rate) that apply to every REST publish.

const ADMIN_TOKEN = randomBytes(32).toString('base64url');
const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TS = 'rojo=00f067aa0ba902b7';

interface Answer {
  status: number;
  type: string;
  text: string;
  headers: Headers;
  json(): Record<string, unknown>;
}

describe('CloudEvents over REST', { timeout: 120_000 }, () => {
  let fx: RouterHub;
  let publisherToken = '';
  const suffix = randomBytes(4).toString('hex');

  const call = async (
    method: string,
    path: string,
    init: { headers?: Record<string, string>; body?: string | Buffer; token?: string } = {},
  ) => {
    const res = await fetch(`${fx.http}${path}`, {
      method,
      headers: { authorization: `Bearer ${init.token ?? ADMIN_TOKEN}`, ...init.headers },
      body: init.body,
    });
    const text = await res.text();
    const answer: Answer = {
      status: res.status,
      type: res.headers.get('content-type') ?? '',
      text,
      headers: res.headers,
      json: () => JSON.parse(text),
    };
    return answer;
  };
  const structured = (ce: unknown, token?: string) =>
    call('POST', '/api/v1/events', { headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(ce), token });
  const asCloudEvent = async (id: string) => {
    let answer: Answer | undefined;
    await waitFor(`event ${id} stored`, async () => {
      answer = await call('GET', `/api/v1/events/by-id/${id}`, { headers: { accept: 'application/cloudevents+json' } });
      return answer.status === 200;
    });
    const a = answer as Answer;
    assert.match(a.type, /^application\/cloudevents\+json/);
    return a.json();
  };

  before(async () => {
    fx = await startRouterHub('cloudevents', {
      HERALD_AUTH: 'required',
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
      HERALD_PUBLISH_RATE_PER_TOKEN: '3',
      HERALD_AUTH_FAILURES_PER_MINUTE: '100000',
    });
    const user = `ce-pub-${suffix}`;
    const created = await call('POST', '/api/v1/users', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: user, roles: [{ role: 'publisher', senders: ['billing'] }] }),
    });
    assert.equal(created.status, 201, created.text);
    const token = await call('POST', `/api/v1/users/${user}/tokens`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ce' }),
    });
    assert.equal(token.status, 201, token.text);
    publisherToken = token.json().token as string;
  });
  after(async () => {
    await call('DELETE', `/api/v1/users/ce-pub-${suffix}`).catch(() => undefined);
    await fx?.close();
  });

  test('a CloudEvent posted in binary mode comes back identical in structured mode', async () => {
    const id = uuidv7();
    const data = Buffer.from([0x68, 0x69, 0x00, 0xff, 0x0a]);
    const posted = await call('POST', '/api/v1/events', {
      headers: {
        'content-type': 'application/octet-stream',
        'ce-specversion': '1.0',
        'ce-id': id,
        'ce-source': 'billing',
        'ce-type': 'invoice.paid',
        'ce-time': '2026-03-04T05:06:07.089Z',
        'ce-subject': 'INV-%C3%A9 1042',
        'ce-correlationid': 'corr-1',
        'ce-causationid': 'cause-1',
        'ce-traceparent': TP,
        'ce-tracestate': TS,
        'ce-tenant': 'acme',
      },
      body: data,
    });
    assert.equal(posted.status, 202, posted.text);
    assert.equal(posted.json().id, id);
    const ce = await asCloudEvent(id);
    const { heraldoffset, ...rest } = ce;
    assert.match(String(heraldoffset), /^[0-9]+$/);
    assert.deepEqual(rest, {
      specversion: '1.0',
      id,
      source: 'billing',
      type: 'invoice.paid',
      time: '2026-03-04T05:06:07.089Z',
      datacontenttype: 'application/octet-stream',
      data_base64: data.toString('base64'),
      subject: 'INV-é 1042',
      correlationid: 'corr-1',
      causationid: 'cause-1',
      traceparent: TP,
      tracestate: TS,
      tenant: 'acme',
    });
    // The same event by offset, and in Herald's own JSON (the default).
    const byOffset = await call('GET', `/api/v1/events/${heraldoffset}`, { headers: { accept: 'application/cloudevents+json' } });
    assert.deepEqual(byOffset.json(), ce);
    const plain = await call('GET', `/api/v1/events/by-id/${id}`);
    assert.match(plain.type, /^application\/json/);
    assert.equal(plain.json().sender, 'billing');
    assert.deepEqual(plain.json().headers, { tenant: 'acme' });
    assert.equal(plain.json().traceparent, TP);
  });

  test('binary mode with JSON data and structured mode: data parsed; a batch of CloudEvents pages with x-herald-next', async () => {
    const binaryId = uuidv7();
    const json = await call('POST', '/api/v1/events', {
      headers: {
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': binaryId,
        'ce-source': 'billing',
        'ce-type': 'ce.batch',
      },
      body: '{"sender":"not-a-herald-body","amount":12.5}',
    });
    assert.equal(json.status, 202, json.text);
    const ids = [binaryId];
    const sent: Record<string, unknown>[] = [];
    for (let i = 0; i < 3; i++) {
      const ce = {
        specversion: '1.0',
        id: uuidv7(),
        source: 'billing',
        type: 'ce.batch',
        time: `2026-01-0${i + 1}T00:00:00.000Z`,
        datacontenttype: 'application/json',
        data: { i, nested: [1, { a: 'b' }] },
        subject: `s${i}`,
        traceparent: TP,
        region: 'eu',
        heraldheaders: JSON.stringify({ 'X-Mixed_Case': 'kept' }),
      };
      sent.push(ce);
      ids.push(ce.id);
      const r = await structured(ce);
      assert.equal(r.status, 202, r.text);
    }
    await asCloudEvent(ids[3] as string);
    const page = await call('GET', '/api/v1/events?selector=billing:ce.batch&limit=2', {
      headers: { accept: 'application/cloudevents-batch+json' },
    });
    assert.equal(page.status, 200, page.text);
    assert.match(page.type, /^application\/cloudevents-batch\+json/);
    const first = page.json() as unknown as Record<string, unknown>[];
    assert.ok(Array.isArray(first));
    assert.deepEqual(
      first.map((e) => e.id),
      ids.slice(0, 2),
    );
    assert.deepEqual(first[0]?.data, { sender: 'not-a-herald-body', amount: 12.5 });
    const next = page.headers.get('x-herald-next');
    assert.equal(next, first[1]?.heraldoffset);
    const rest = await call('GET', `/api/v1/events?selector=billing:ce.batch&after=${next}`, {
      headers: { accept: 'application/cloudevents-batch+json' },
    });
    const second = rest.json() as unknown as Record<string, unknown>[];
    assert.equal(rest.headers.get('x-herald-next'), null, 'the last page');
    assert.deepEqual(
      second.map(({ heraldoffset: _, ...e }) => e),
      sent.slice(1),
      'structured mode in, structured mode out, attribute for attribute',
    );
    // Default Accept: Herald's JSON as before.
    const plain = await call('GET', '/api/v1/events?selector=billing:ce.batch');
    assert.equal((plain.json().events as unknown[]).length, 4);
  });

  test('a retry with the same id is stored once', async () => {
    const ce = { specversion: '1.0', id: uuidv7(), source: 'billing', type: 'ce.retry', data: { n: 1 } };
    for (let i = 0; i < 3; i++) assert.equal((await structured(ce)).status, 202);
    await call('POST', '/api/v1/events', {
      headers: {
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': ce.id,
        'ce-source': 'billing',
        'ce-type': 'ce.retry',
      },
      body: '{"n":1}',
    });
    const marker = { ...ce, id: uuidv7() };
    assert.equal((await structured(marker)).status, 202);
    await asCloudEvent(marker.id);
    const all = await call('GET', '/api/v1/events?selector=billing:ce.retry');
    assert.deepEqual(
      (all.json().events as { id: string }[]).map((e) => e.id),
      [ce.id, marker.id],
    );
  });

  test('refusals name the attribute: source, specversion, id, names, modes', async () => {
    const good = { specversion: '1.0', id: uuidv7(), source: 'billing', type: 'ce.bad', data: {} };
    const cases: [unknown, number, string, RegExp][] = [
      [{ ...good, source: 'https://billing.example.com/orders' }, 400, 'source', /not a Herald sender/],
      [{ ...good, source: '' }, 400, 'source', /not a Herald sender/],
      [{ ...good, specversion: '0.3' }, 400, 'specversion', /CloudEvents 1\.0/],
      [{ ...good, id: 'order-42' }, 400, 'id', /not a UUID/],
      [{ ...good, type: 'bad type' }, 400, 'type', /segment/],
      [{ ...good, Tenant: 'x' }, 400, 'Tenant', /extension name/],
      [{ ...good, averyveryverylongextensionname: 'x' }, 400, 'averyveryverylongextensionname', /extension name/],
      [{ ...good, ext: { deep: true } }, 400, 'ext', /extension|must be/],
      [{ ...good, data_base64: 'AA==' }, 400, 'data_base64', /either data or data_base64/],
      [{ ...good, subject: 'a\u0000b' }, 400, 'subject', /NUL/],
      [{ ...good, traceparent: 'nope' }, 400, 'traceparent', /traceparent/],
      [{ ...good, tracestate: TS }, 400, 'tracestate', /needs a traceparent/],
      [{ ...good, heraldheaders: '{"a":1}' }, 400, 'heraldheaders', /string values/],
      [{ ...good, time: 'yesterday' }, 400, 'time', /ISO 8601/],
    ];
    for (const [ce, status, parameter, detail] of cases) {
      const r = await structured(ce);
      assert.equal(r.status, status, `${JSON.stringify(ce).slice(0, 120)}: ${r.text}`);
      assert.equal(r.json().parameter, parameter, r.text);
      assert.match(String(r.json().detail), detail);
    }
    const { specversion: _, ...noVersion } = good;
    assert.equal((await structured(noVersion)).json().parameter, 'specversion');

    const binary = (headers: Record<string, string>, body = '{}') =>
      call('POST', '/api/v1/events', {
        headers: {
          'content-type': 'application/json',
          'ce-specversion': '1.0',
          'ce-id': uuidv7(),
          'ce-source': 'billing',
          'ce-type': 'ce.bad',
          ...headers,
        },
        body,
      });
    for (const [headers, parameter] of [
      [{ 'ce-source': 'billing/eu' }, 'source'],
      [{ 'ce-specversion': '1.1' }, 'specversion'],
      [{ 'ce-id': '42' }, 'id'],
      [{ 'ce-datacontenttype': 'text/plain' }, 'ce-datacontenttype'],
      [{ 'ce-subject': 'a%00b' }, 'subject'],
      [{ 'ce-subject': '%E0%A4%A' }, 'ce-subject'],
      [{ 'ce-my_ext': 'x' }, 'my_ext'],
    ] as [Record<string, string>, string][]) {
      const r = await binary(headers);
      assert.equal(r.status, 400, `${JSON.stringify(headers)}: ${r.text}`);
      assert.equal(r.json().parameter, parameter, r.text);
    }
    const big = await binary({ 'content-type': 'application/octet-stream' }, 'x'.repeat(1024 * 1024 + 1));
    assert.equal(big.status, 413, big.text);

    for (const contentType of ['text/plain', 'application/cloudevents-batch+json']) {
      const r = await call('POST', '/api/v1/events', { headers: { 'content-type': contentType }, body: '[]' });
      assert.equal(r.status, 415, r.text);
      assert.match(String(r.json().detail), /binary-mode CloudEvent/);
    }
    // Herald's own JSON body is still checked as before.
    const old = await call('POST', '/api/v1/events', { headers: { 'content-type': 'application/json' }, body: '{"sender":"billing"}' });
    assert.equal(old.status, 400, old.text);
    assert.equal(old.json().parameter, 'type');
  });

  test('the publish checks apply: a publisher only as its own senders, at its rate', async () => {
    const ce = (source: string) => ({ specversion: '1.0', id: uuidv7(), source, type: 'ce.auth', data: {} });
    const other = await structured(ce('shipping'), publisherToken);
    assert.equal(other.status, 403, other.text);
    const none = await call('POST', '/api/v1/events', {
      headers: { 'content-type': 'application/cloudevents+json', authorization: '' },
      body: JSON.stringify(ce('billing')),
    });
    assert.equal(none.status, 401, none.text);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const binary = await call('POST', '/api/v1/events', {
        headers: { 'content-type': 'text/plain', 'ce-specversion': '1.0', 'ce-id': uuidv7(), 'ce-source': 'billing', 'ce-type': 'ce.auth' },
        body: `n=${i}`,
        token: publisherToken,
      });
      statuses.push(binary.status);
    }
    assert.equal(statuses[0], 202);
    assert.ok(statuses.includes(429), `the per-token rate (3/s) holds for CloudEvents too: ${statuses}`);
  });

  test('the OpenAPI document names the CloudEvents media types', async () => {
    const doc = (await call('GET', '/openapi.json')).json() as {
      paths: Record<
        string,
        Record<
          string,
          { requestBody?: { content: Record<string, unknown> }; responses: Record<string, { content?: Record<string, unknown> }> }
        >
      >;
      components: { schemas: Record<string, unknown> };
    };
    const events = doc.paths['/api/v1/events'];
    assert.deepEqual(Object.keys(events?.post?.requestBody?.content ?? {}), ['application/json', 'application/cloudevents+json', '*/*']);
    assert.ok(events?.get?.responses['200']?.content?.['application/cloudevents-batch+json']);
    assert.ok(doc.paths['/api/v1/events/by-id/{id}']?.get?.responses['200']?.content?.['application/cloudevents+json']);
    assert.ok(doc.components.schemas.CloudEvent, 'one CloudEvent schema, referred to');
  });
});
