// Publishes of a validated type through the hub's REST and gRPC APIs, against a hub process (router
// mode, RabbitMQ, PostgreSQL): an event whose data does not match is refused in the answer (400
// SCHEMA_VIOLATION, INVALID_ARGUMENT with the same message) and never reaches the log nor the dead
// letters; a valid one is published; an AMQP publish of a violating event is still dead-lettered.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GRPC_ERROR_CODE_KEY, INGEST_EXCHANGE, PROTO_LOADER_OPTIONS, PROTO_PATH, uuidv7 } from '@herald/core';
import { createRawPublisher, type RouterHub, restClient, startRouterHub, waitFor } from '@herald/testing';

const ORDER = {
  type: 'object',
  properties: { orderId: { type: 'string', minLength: 1 }, amount: { type: 'integer', minimum: 0 } },
  required: ['orderId', 'amount'],
  additionalProperties: false,
};

type Callback = (err: grpc.ServiceError | null, res?: { id: string }) => void;

describe('publish of a validated type refused at the API edge (e2e: hub process)', { timeout: 90_000 }, () => {
  let fx: RouterHub;
  let call: ReturnType<typeof restClient>;
  let client: grpc.Client;
  let grpcPublish: (req: object) => Promise<{ id: string }>;

  before(async () => {
    fx = await startRouterHub('pubcheck');
    call = restClient(fx.http);
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const Herald = grpc.loadPackageDefinition(def).herald as never as { v1: { Herald: grpc.ServiceClientConstructor } };
    client = new Herald.v1.Herald(fx.grpc, grpc.credentials.createInsecure());
    const rpc = client as unknown as { publish: (req: object, cb: Callback) => void };
    grpcPublish = (req) =>
      new Promise((resolve, reject) => rpc.publish.call(client, req, (err, res) => (err ? reject(err) : resolve(res as { id: string }))));
  });
  after(async () => {
    client?.close();
    await fx?.close();
  });

  test('REST and gRPC: a violating event is refused with the reason and publishes nothing; a valid one passes', async () => {
    const put = await call('PUT', '/api/v1/catalog/shop/order.placed', { schema: ORDER, validate: true });
    assert.equal(put.status, 201, put.text);

    const rest = await call('POST', '/api/v1/events', { sender: 'shop', type: 'order.placed', data: { orderId: 'o-1', amount: -3 } });
    assert.equal(rest.status, 400, rest.text);
    const problem = rest.json();
    assert.equal(problem.code, 'SCHEMA_VIOLATION');
    assert.equal(problem.parameter, 'data');
    assert.match(String(problem.detail), /shop:order\.placed \(schema version 1\): \/amount must be >= 0/);

    const notJson = await call('POST', '/api/v1/events', { sender: 'shop', type: 'order.placed', contentType: 'text/plain', data: 'hi' });
    assert.equal(notJson.status, 400, notJson.text);
    assert.match(String(notJson.json().detail), /content type is text\/plain, not JSON/);

    const refused = await grpcPublish({
      sender: 'shop',
      type: 'order.placed',
      data: Buffer.from(JSON.stringify({ orderId: 'o-1', amount: -3 })),
      contentType: 'application/json',
    }).then(
      () => assert.fail('a violating gRPC publish was accepted'),
      (err: grpc.ServiceError) => err,
    );
    assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(refused.metadata.get(GRPC_ERROR_CODE_KEY)[0], 'SCHEMA_VIOLATION');
    assert.equal(refused.details, problem.detail, 'the same message on both APIs');

    const ok = await call('POST', '/api/v1/events', { sender: 'shop', type: 'order.placed', data: { orderId: 'o-2', amount: 3 } });
    assert.equal(ok.status, 202, ok.text);
    await grpcPublish({
      sender: 'shop',
      type: 'order.placed',
      data: Buffer.from(JSON.stringify({ orderId: 'o-3', amount: 4 })),
      contentType: 'application/json',
    });
    // Last, straight to herald.ingest: ingest still dead-letters it. Once its letter is in, every
    // earlier publish has gone through ingest (one queue, in order), so the counts below are final.
    const pub = await createRawPublisher(fx.vhost.url);
    try {
      const content = Buffer.from(JSON.stringify({ orderId: 'o-4', amount: -1 }));
      assert.ok(
        await pub.publish(INGEST_EXCHANGE, {
          routingKey: 'shop.order.placed',
          content,
          options: { messageId: uuidv7(), contentType: 'application/json' },
        }),
      );
    } finally {
      await pub.close();
    }
    type Letter = { reason: string };
    let letters: Letter[] = [];
    await waitFor(
      'the AMQP violation dead-lettered',
      async () => {
        letters = (await call('GET', '/api/v1/dead-letters?code=SCHEMA_VIOLATION')).json().items as Letter[];
        return letters.length >= 1;
      },
      30_000,
      200,
    );
    let events: { data: unknown }[] = [];
    await waitFor(
      'the two valid events in the log',
      async () => {
        events = (await call('GET', '/api/v1/events?selector=shop:order.placed')).json().events as typeof events;
        return events.length >= 2;
      },
      30_000,
      200,
    );
    assert.deepEqual(
      events.map((e) => e.data),
      [
        { orderId: 'o-2', amount: 3 },
        { orderId: 'o-3', amount: 4 },
      ],
      'only the valid ones reached the log',
    );
    assert.equal(letters.length, 1, `only the AMQP publish was dead-lettered: ${JSON.stringify(letters)}`);
    assert.match(letters[0]?.reason ?? '', /\/amount must be >= 0/);
  });

  test("the OpenAPI document names SCHEMA_VIOLATION in the publish route's 400", async () => {
    const doc = (await call('GET', '/openapi.json')).json() as {
      paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
    };
    assert.match(doc.paths['/api/v1/events']?.post?.responses['400']?.description ?? '', /SCHEMA_VIOLATION/);
  });
});
