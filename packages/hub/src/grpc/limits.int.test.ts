// The gRPC server's limits over the real subscription manager (PostgreSQL, RabbitMQ): a Publish
// past the event size limit plus the envelope is refused by grpc-js before it is parsed, one
// within the envelope's room by the envelope check; Subscribe streams are capped; and events with
// large headers still go out in messages within the send limit.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type SubscriptionEvent, subscription } from '@herald/client/grpc';
import { createEvent, GRPC_ERROR_CODE_KEY, PROTO_LOADER_OPTIONS, PROTO_PATH } from '@herald/core';
import { freePort, waitFor } from '@herald/testing';
import { pino } from 'pino';
import { createRig, type Rig } from '../subscriptions/test-kit.ts';
import { createGrpcServer, type GrpcServer, grpcServerOptions } from './server.ts';

const MAX_EVENT_BYTES = 64 * 1024;
const MAX_STREAMS = 2;

type Callback = (err: grpc.ServiceError | null, res?: { id: string }) => void;
interface HeraldClient extends grpc.Client {
  publish(req: object, cb: Callback): void;
  subscribe(): grpc.ClientDuplexStream<object, { opened?: unknown; events?: { events: unknown[] } }>;
}

describe('gRPC limits: message sizes and the Subscribe stream cap', { timeout: 90_000 }, () => {
  let rig: Rig;
  let server: GrpcServer;
  let url: string;
  let client: HeraldClient;
  const logger = pino({ level: process.env.HERALD_TEST_LOG ?? 'silent' });

  const publish = (req: object) =>
    new Promise<{ id: string }>((resolve, reject) =>
      client.publish(req, (err, res) => (err ? reject(err) : resolve(res as { id: string }))),
    );

  /** Opens a raw Subscribe stream; resolves `opened` on the hub's `opened` message, `status` on the end. */
  const open = (name: string) => {
    const call = client.subscribe();
    const opened = new Promise<void>((resolve) => call.on('data', (m) => m.opened && resolve()));
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    call.write({ open: { name, selector: [`${name}:*`], start: { earliest: true }, maxInFlight: 10 } });
    return { call, opened, status };
  };

  before(async () => {
    rig = await createRig('postgres', 'grpclimits');
    const m = await rig.manager();
    const port = await freePort();
    url = `127.0.0.1:${port}`;
    server = createGrpcServer({
      host: '127.0.0.1',
      port,
      manager: () => m,
      publish: async (e) => void (await rig.ingestEvents([e])),
      logger,
      maxEventBytes: MAX_EVENT_BYTES,
      maxStreams: MAX_STREAMS,
    });
    await server.start();
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const Herald = grpc.loadPackageDefinition(def).herald as never as { v1: { Herald: grpc.ServiceClientConstructor } };
    // The client may send more than the server takes: the refusal under test is the server's.
    client = new Herald.v1.Herald(url, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
    }) as unknown as HeraldClient;
  });
  after(async () => {
    client?.close();
    await server?.stop();
    await rig?.close();
  });

  test('Publish: the largest event is stored; a body past the limit is INVALID_ARGUMENT, a message past the envelope RESOURCE_EXHAUSTED', async () => {
    const limit = grpcServerOptions(MAX_EVENT_BYTES)['grpc.max_receive_message_length'] as number;
    assert.ok(limit > MAX_EVENT_BYTES && limit <= MAX_EVENT_BYTES + 256 * 1024, `receive limit ${limit}`);
    const base = { sender: 'sizes', type: 'publish', contentType: 'application/octet-stream' };
    // The largest body, with big headers: fits the envelope's room.
    const ok = await publish({ ...base, data: Buffer.alloc(MAX_EVENT_BYTES, 1), headers: { big: 'h'.repeat(60_000) } });
    const [stored] = await rig.store.query({ selector: 'sizes:publish', limit: 10 });
    assert.equal(stored?.id, ok.id);
    assert.equal(stored?.data.length, MAX_EVENT_BYTES);
    // One byte more: parsed, then refused by the envelope check with the configured limit.
    await assert.rejects(publish({ ...base, data: Buffer.alloc(MAX_EVENT_BYTES + 1, 1) }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.deepEqual(err.metadata.get(GRPC_ERROR_CODE_KEY), ['EVENT_TOO_LARGE']);
      assert.match(err.details, new RegExp(`limit of ${MAX_EVENT_BYTES} bytes`));
      return true;
    });
    // Past the limit plus the envelope: grpc-js refuses the message before it is parsed.
    await assert.rejects(publish({ ...base, data: Buffer.alloc(limit + 1, 1) }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, `${grpc.status[err.code]}: ${err.details}`);
      return true;
    });
    assert.equal((await rig.store.query({ selector: 'sizes:publish', limit: 10 })).length, 1, 'nothing else was stored');
  });

  test('the stream past HERALD_MAX_GRPC_STREAMS ends with RESOURCE_EXHAUSTED naming it; a freed slot serves the next', async () => {
    const a = open('cap-a');
    const b = open('cap-b');
    await Promise.all([a.opened, b.opened]);
    const c = open('cap-c');
    const refused = await c.status;
    assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED, `${grpc.status[refused.code]}: ${refused.details}`);
    assert.match(refused.details, /at most 2 at once \(HERALD_MAX_GRPC_STREAMS\)/);
    assert.deepEqual(refused.metadata.get(GRPC_ERROR_CODE_KEY), ['LIMIT_EXCEEDED']);
    // The client ends one stream; once the hub has let it go, a new stream is served.
    a.call.end();
    assert.equal((await a.status).code, grpc.status.OK);
    let d: ReturnType<typeof open> | undefined;
    await waitFor(
      'a stream served after one ended',
      async () => {
        const attempt = open('cap-d');
        const first = await Promise.race([attempt.opened.then(() => 'opened' as const), attempt.status]);
        if (first === 'opened') {
          d = attempt;
          return true;
        }
        return false;
      },
      10_000,
      50,
    );
    for (const s of [b, d]) s?.call.end();
    await Promise.all([b.status, d?.status]);
  });

  test('events with large headers go out in messages within the send limit, all of them, in order', async () => {
    // 30 events with 60 KB of headers each: 1.8 MB, far past one message's send limit if one batch held them.
    const sendLimit = grpcServerOptions(MAX_EVENT_BYTES)['grpc.max_send_message_length'] as number;
    assert.ok(30 * 60_000 > sendLimit);
    const stored = await rig.ingestEvents(
      Array.from({ length: 30 }, (_, i) =>
        createEvent({ sender: 'wide', type: 'headers', data: { i }, headers: { pad: 'p'.repeat(60_000) } }),
      ),
    );
    const sub = subscription('wide', 'wide:*', { url, start: 'earliest', maxInFlight: 1000 });
    const got: bigint[] = [];
    try {
      for await (const e of sub as AsyncIterable<SubscriptionEvent>) {
        assert.equal(e.headers.pad?.length, 60_000);
        got.push(e.offset);
        e.ack();
        if (got.length === stored.length) break;
      }
    } finally {
      await sub.close();
    }
    assert.deepEqual(
      got,
      stored.map((e) => e.offset),
    );
  });
});
