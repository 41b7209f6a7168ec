// The event catalog against a real hub process (router mode, RabbitMQ, PostgreSQL and the embedded
// store): PUT/GET/DELETE with schema versions; hostile schemas refused with 400; validation at
// ingest dead-letters a violating event with the validator's reason and lets the next valid one
// through; producers and consumers observed; the AsyncAPI document passes @asyncapi/parser; a
// change made through a second hub on the same store takes effect on the hub that ingests.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { INGEST_EXCHANGE, uuidv7 } from '@herald/core';
import {
  asyncApiDiagnostics,
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  restClient,
  spawnHerald,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';

type Json = Record<string, unknown>;

const INVOICE = {
  type: 'object',
  properties: { invoiceId: { type: 'string', minLength: 1 }, amount: { type: 'integer', minimum: 0 } },
  required: ['invoiceId', 'amount'],
  additionalProperties: false,
};

function cases(name: string, storeEnv: () => Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }>) {
  describe(`catalog (e2e: hub process, ${name})`, () => {
    let vhost: TestVhost;
    let hub: HeraldProcess;
    let cleanup: () => Promise<void> = async () => {};
    let call: ReturnType<typeof restClient>;

    before(async () => {
      vhost = await createTestVhost('catalog');
      const store = await storeEnv();
      cleanup = store.cleanup;
      const port = await freePort();
      call = restClient(`http://127.0.0.1:${port}`);
      hub = await startHubProcess({ HERALD_AMQP_URL: vhost.url, HERALD_MODE: 'router', HERALD_HTTP_PORT: String(port), ...store.env });
    });
    after(async () => {
      await hub?.kill('SIGKILL');
      await vhost?.delete();
      await cleanup();
    });

    const publish = async (routingKey: string, body: string, options: Json = {}) => {
      const pub = await createRawPublisher(vhost.url);
      try {
        assert.ok(
          await pub.publish(INGEST_EXCHANGE, {
            routingKey,
            content: Buffer.from(body),
            options: { messageId: uuidv7(), contentType: 'application/json', userId: 'guest', ...options },
          }),
        );
      } finally {
        await pub.close();
      }
    };

    test('PUT: a new entry is version 1 (201); the same schema keeps it, a changed one is the next; GET shows every version', async () => {
      const put = await call('PUT', '/api/v1/catalog/billing/invoice.paid', {
        schema: INVOICE,
        description: 'An invoice was paid',
        example: { invoiceId: 'inv-1', amount: 100 },
      });
      assert.equal(put.status, 201, put.text);
      assert.equal(put.json().version, 1);
      assert.equal(put.json().validate, false, 'validation is off by default');
      // Keys in another order: the same schema, so the same version.
      const same = await call('PUT', '/api/v1/catalog/billing/invoice.paid', {
        schema: { required: INVOICE.required, type: 'object', additionalProperties: false, properties: INVOICE.properties },
        description: 'An invoice was paid in full',
      });
      assert.equal(same.status, 200, same.text);
      assert.equal(same.json().version, 1);
      assert.equal(same.json().example, null, 'PUT replaces the example');
      const v2 = { ...INVOICE, properties: { ...INVOICE.properties, currency: { type: 'string' } } };
      const changed = await call('PUT', '/api/v1/catalog/billing/invoice.paid', { schema: v2 });
      assert.equal(changed.json().version, 2);
      // A version given must be above the latest; the same schema under another number is a conflict too.
      const low = await call('PUT', '/api/v1/catalog/billing/invoice.paid', { schema: { type: 'object' }, version: 2 });
      assert.equal(low.status, 409, low.text);
      assert.equal((await call('PUT', '/api/v1/catalog/billing/invoice.paid', { schema: v2, version: 5 })).status, 409);
      const jump = await call('PUT', '/api/v1/catalog/billing/invoice.paid', { schema: INVOICE, version: 10, description: 'back' });
      assert.equal(jump.json().version, 10);
      const one = await call('GET', '/api/v1/catalog/billing/invoice.paid');
      assert.equal(one.status, 200);
      assert.deepEqual(
        (one.json().versions as { version: number }[]).map((v) => v.version),
        [1, 2, 10],
      );
      assert.deepEqual(one.json().schema, INVOICE);
      const list = (await call('GET', '/api/v1/catalog')).json().items as Json[];
      const item = list.find((t) => t.sender === 'billing' && t.type === 'invoice.paid');
      assert.equal(item?.version, 10);
      assert.equal(item?.description, 'back');
      assert.equal((await call('GET', '/api/v1/catalog/billing/nothing.here')).status, 404);
      // Pages: follow next until null.
      await call('PUT', '/api/v1/catalog/billing/invoice.voided', { schema: { type: 'object' } });
      const first = (await call('GET', '/api/v1/catalog?limit=1')).json();
      assert.deepEqual(
        (first.items as Json[]).map((t) => t.type),
        ['invoice.paid'],
      );
      assert.equal(first.next, 'billing:invoice.paid');
      const second = (await call('GET', `/api/v1/catalog?limit=1&after=${first.next}`)).json();
      assert.deepEqual(
        (second.items as Json[]).map((t) => t.type),
        ['invoice.voided'],
      );
      assert.equal(second.next, null);
      for (const bad of ['nocolon', 'bad.sender:x', 'billing:', `billing:${'x'.repeat(300)}`]) {
        const r = await call('GET', `/api/v1/catalog?after=${encodeURIComponent(bad)}`);
        assert.equal(r.status, 400, `after=${bad.slice(0, 20)}: ${r.text}`);
      }
      assert.equal((await call('GET', '/api/v1/catalog?limit=0')).status, 400);
      assert.equal((await call('DELETE', '/api/v1/catalog/billing/invoice.voided')).status, 204);
    });

    test('hostile schemas and bodies: 400 with the reason, nothing written', async () => {
      const path = '/api/v1/catalog/billing/hostile.case';
      let deep: unknown = { type: 'string' };
      for (let i = 0; i < 40; i++) deep = { anyOf: [deep] };
      const refused: [string, unknown, RegExp][] = [
        ['not compilable (ajv)', { schema: { type: 'objekt' } }, /does not compile: schema is invalid/],
        ['unknown keyword (ajv strict)', { schema: { type: 'string', minimumLength: 3 } }, /unknown keyword/],
        ['remote $ref', { schema: { $ref: 'https://example.com/evil.json' } }, /references inside the schema/],
        ['relative $ref', { schema: { properties: { a: { $ref: 'other.json#/a' } } } }, /references inside the schema/],
        ['deep', { schema: deep }, /nests deeper than/],
        ['huge', { schema: { enum: Array.from({ length: 8000 }, (_, i) => `value-number-${i}`) } }, /larger than 65536 bytes/],
        ['exponential pattern', { schema: { type: 'string', pattern: '^(a+)+$' } }, /quantified group holds a quantifier/],
        ['backreference', { schema: { type: 'string', pattern: '(a)\\1' } }, /backreference/],
        ['unbounded uniqueItems', { schema: { type: 'array', uniqueItems: true } }, /uniqueItems needs maxItems/],
        ['not a schema', { schema: 'string' }, /must be a JSON Schema/],
        ['example that does not match', { schema: INVOICE, example: { invoiceId: 'x' } }, /example does not match the schema/],
        ['unknown field', { schema: INVOICE, owner: 'me' }, /.+/],
        ['version 0', { schema: INVOICE, version: 0 }, /.+/],
        ['huge version', { schema: INVOICE, version: 2 ** 40 }, /.+/],
        ['NUL in the description', { schema: INVOICE, description: 'a\u0000b' }, /NUL/],
        ['long description', { schema: INVOICE, description: 'x'.repeat(1001) }, /.+/],
      ];
      for (const [what, body, reason] of refused) {
        const r = await call('PUT', path, body);
        assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
        assert.match(String(r.json().detail), reason, what);
      }
      assert.equal((await call('PUT', '/api/v1/catalog/bad.sender/x', { schema: {} })).status, 400, 'a sender with a dot');
      assert.equal((await call('PUT', '/api/v1/catalog/billing/bad..type', { schema: {} })).status, 400, 'an empty type segment');
      assert.equal((await call('GET', '/api/v1/catalog/billing/hostile.case')).status, 404, 'nothing was written');
    });

    test('validation at ingest: a violating event is dead-lettered with the reason; the flow goes on', async () => {
      const put = await call('PUT', '/api/v1/catalog/billing/invoice.checked', { schema: INVOICE, validate: true });
      assert.equal(put.status, 201, put.text);
      const bad = JSON.stringify({ invoiceId: 'inv-9', amount: -5 });
      const good = JSON.stringify({ invoiceId: 'inv-10', amount: 5 });
      await publish('billing.invoice.checked', bad);
      await publish('billing.invoice.checked', 'this is not JSON', { contentType: 'text/plain' });
      await publish('billing.invoice.checked', good);
      type Letter = { code: string; reason: string; routingKey: string };
      let letters: Letter[] = [];
      await waitFor(
        'two schema violations',
        async () => {
          letters = (await call('GET', '/api/v1/dead-letters?code=SCHEMA_VIOLATION')).json().items as Letter[];
          return letters.length >= 2;
        },
        30_000,
        200,
      );
      assert.equal(letters[0]?.routingKey, 'billing.invoice.checked');
      assert.match(letters[0]?.reason ?? '', /billing:invoice\.checked \(schema version 1\).*\/amount must be >= 0/);
      assert.match(letters[1]?.reason ?? '', /content type is text\/plain, not JSON/);
      let events: { data: unknown }[] = [];
      await waitFor(
        'the valid event in the log',
        async () => {
          events = (await call('GET', '/api/v1/events?selector=billing:invoice.checked')).json().events as { data: unknown }[];
          return events.length >= 1;
        },
        30_000,
        200,
      );
      assert.deepEqual(
        events.map((e) => e.data),
        [{ invoiceId: 'inv-10', amount: 5 }],
        'only the valid one was stored',
      );
      // Validation off again: the same bad data is stored.
      await call('PUT', '/api/v1/catalog/billing/invoice.checked', { schema: INVOICE, validate: false });
      await publish('billing.invoice.checked', bad);
      await waitFor(
        'the unchecked event stored',
        async () => ((await call('GET', '/api/v1/events?selector=billing:invoice.checked')).json().events as unknown[]).length === 2,
        30_000,
        200,
      );
    });

    test('observed: producers (with the RabbitMQ user) and consumers (subscriptions, exchanges) with first and last seen', async () => {
      const sub = `cat-sub-${uuidv7().slice(-8)}`;
      const ex = `cat.ex.${uuidv7().slice(-8)}`;
      assert.equal((await call('POST', '/api/v1/subscriptions', { name: sub, selector: 'shipping:*' })).status, 201);
      assert.equal((await call('POST', '/api/v1/exchanges', { name: ex, selector: '*:parcel.sent' })).status, 201);
      await publish('shipping.parcel.sent', '{"parcel":1}');
      await publish('shipping.parcel.sent', '{"parcel":2}', { userId: undefined });
      let t: Json | undefined;
      await waitFor(
        'producers and consumers flushed',
        async () => {
          const r = await call('GET', '/api/v1/catalog/shipping/parcel.sent');
          t = r.status === 200 ? r.json() : undefined;
          return (t?.consumers as unknown[] | undefined)?.length === 2;
        },
        30_000,
        250,
      );
      assert.ok(t);
      assert.equal(t.version, null, 'only observed: no schema');
      const producers = t.producers as { sender: string; userId: string | null; events: number }[];
      assert.deepEqual(producers.map((p) => [p.sender, p.userId ?? '(none)', p.events]).sort(), [
        ['shipping', '(none)', 1],
        ['shipping', 'guest', 1],
      ]);
      assert.deepEqual(
        (t.consumers as { kind: string; name: string }[]).map((c) => [c.kind, c.name]),
        [
          ['exchange', ex],
          ['subscription', sub],
        ],
      );
      assert.ok(Date.parse(String(t.firstSeen)) <= Date.parse(String(t.lastSeen)));
      await call('DELETE', `/api/v1/subscriptions/${sub}`);
      await call('DELETE', `/api/v1/exchanges/${ex}`);
    });

    test('the AsyncAPI document: channels per routing key on herald.events, send and receive operations; @asyncapi/parser finds no error', async () => {
      const r = await call('GET', '/api/v1/catalog/asyncapi.json');
      assert.equal(r.status, 200);
      const doc = r.json() as {
        channels: Record<string, { address: string; bindings: { amqp: { exchange: { name: string } } } }>;
        operations: Record<string, { action: string }>;
        servers: Record<string, { host: string; protocol: string }>;
      };
      assert.equal(doc.channels['billing.invoice.paid']?.address, 'billing.invoice.paid');
      assert.equal(doc.channels['billing.invoice.paid']?.bindings.amqp.exchange.name, 'herald.events');
      assert.equal(doc.servers.rabbitmq?.protocol, 'amqp');
      assert.doesNotMatch(r.text, /guest:guest/, 'no credentials in the document');
      const actions = Object.values(doc.operations).map((o) => o.action);
      assert.ok(actions.includes('send') && actions.includes('receive'), JSON.stringify(Object.keys(doc.operations)));
      const errors = (await asyncApiDiagnostics(r.text)).filter((d) => d.severity === 0);
      assert.deepEqual(errors, []);
    });

    test('DELETE takes the entry and its versions: 204, then 404; validation stops', async () => {
      assert.equal((await call('DELETE', '/api/v1/catalog/billing/invoice.paid')).status, 204);
      assert.equal((await call('GET', '/api/v1/catalog/billing/invoice.paid')).status, 404);
      assert.equal((await call('DELETE', '/api/v1/catalog/billing/invoice.paid')).status, 404);
    });
  });
}

cases('PostgreSQL', async () => {
  const db = await createTestDatabase('catalog');
  return { env: { HERALD_DATABASE_URL: db.url }, cleanup: () => db.drop() };
});

cases('embedded store', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'herald-catalog-'));
  return { env: { HERALD_DATABASE_URL: join(dir, 'store') }, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe('catalog across hubs (e2e: two hub processes on one PostgreSQL database)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let active: HeraldProcess;
  let standby: HeraldProcess;

  before(async () => {
    vhost = await createTestVhost('catalog2');
    db = await createTestDatabase('catalog2');
    const env = { HERALD_AMQP_URL: vhost.url, HERALD_DATABASE_URL: db.url, HERALD_MODE: 'router' };
    active = await startHubProcess({ ...env, HERALD_HTTP_PORT: String(await freePort()) });
    const port = await freePort();
    standby = spawnHerald(['hub'], { ...env, HERALD_HTTP_PORT: String(port) });
    await standby.waitFor('waiting as a standby', 60_000);
    (standby as { port?: number }).port = port;
  });
  after(async () => {
    await standby?.kill('SIGKILL');
    await active?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  test('validate turned on through the standby: the ingesting hub dead-letters violations within its poll', async () => {
    const port = (standby as { port?: number }).port as number;
    const viaStandby = restClient(`http://127.0.0.1:${port}`);
    const put = await viaStandby('PUT', '/api/v1/catalog/crm/contact.added', {
      schema: { type: 'object', required: ['email'], properties: { email: { type: 'string', format: 'email' } } },
      validate: true,
    });
    assert.equal(put.status, 201, put.text);
    const t0 = Date.now();
    const pub = await createRawPublisher(vhost.url);
    // Until the ingesting hub has read the change, a bad event is stored; keep sending until one is dead-lettered.
    let letters: { code: string; reason: string }[] = [];
    try {
      await waitFor(
        'a violation dead-lettered on the other hub',
        async () => {
          await pub.publish(INGEST_EXCHANGE, {
            routingKey: 'crm.contact.added',
            content: Buffer.from('{"email":"not an address"}'),
            options: { messageId: uuidv7(), contentType: 'application/json' },
          });
          letters = (await viaStandby('GET', '/api/v1/dead-letters?code=SCHEMA_VIOLATION')).json().items as typeof letters;
          return letters.length > 0;
        },
        30_000,
        500,
      );
    } finally {
      await pub.close();
    }
    const ms = Date.now() - t0;
    assert.ok(ms < 15_000, `took effect after ${ms} ms (poll every 10 s)`);
    assert.match(letters[0]?.reason ?? '', /must match format "email"/);
    console.log(`# a catalog change through another hub took effect after ${ms} ms`);
  });
});
