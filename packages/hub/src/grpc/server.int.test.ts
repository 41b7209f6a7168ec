// The gRPC server and the SDK's subscription client over the real subscription manager (a
// PostgreSQL store, RabbitMQ, a dispatcher forwarding to herald.events): Publish, flow control,
// a server restart under a stream, standby handover, UNAVAILABLE without a manager, CONFLICT.
// A consumer breaking off at random points under load is grpc-reconnect.e2e.test.ts; the whole hub
// killed under a stream is grpc-restart.e2e.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type SubscriptionEvent, subscription } from '@herald/client/grpc';
import { GRPC_ERROR_CODE_KEY, type HeraldError, PROTO_LOADER_OPTIONS, PROTO_PATH } from '@herald/core';
import { freePort, waitFor } from '@herald/testing';
import { pino } from 'pino';
import type { StoredEvent } from '../store/types.ts';
import { createRig, type Rig } from '../subscriptions/test-kit.ts';
import type { SubscriptionManager } from '../subscriptions/types.ts';
import { createGrpcServer, type GrpcServer } from './server.ts';

/** `n` events of `sender`, types cycling through `types`. */
const spec = (sender: string, n: number, types = ['a', 'b']): [string, string][] =>
  Array.from({ length: n }, (_, i) => [sender, types[i % types.length] as string]);

const offsets = (list: readonly StoredEvent[]): bigint[] => list.map((e) => e.offset);

describe('gRPC server with the SDK subscription client (real manager, PostgreSQL, RabbitMQ)', { timeout: 60_000 }, () => {
  let rig: Rig;
  let m: SubscriptionManager;
  /** What the server sees; undefined = no manager (a standby hub). */
  let manager: SubscriptionManager | undefined;
  let port: number;
  let url: string;
  let server: GrpcServer;
  const logger = pino({ level: process.env.HERALD_TEST_LOG ?? 'silent' });

  const start = async () => {
    server = createGrpcServer({
      host: '127.0.0.1',
      port,
      manager: () => manager,
      publish: async (e) => void (await rig.ingestEvents([e])),
      logger,
    });
    await server.start();
  };

  before(async () => {
    rig = await createRig('postgres', 'grpc');
    m = await rig.manager();
    manager = m;
    port = await freePort();
    url = `127.0.0.1:${port}`;
    await start();
  });
  after(async () => {
    await server?.stop();
    await rig?.close();
  });

  test('Publish stores the event; bad input is INVALID_ARGUMENT naming the field, with the Herald code', async () => {
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const Herald = grpc.loadPackageDefinition(def).herald as never as { v1: { Herald: grpc.ServiceClientConstructor } };
    const client = new Herald.v1.Herald(url, grpc.credentials.createInsecure());
    type Callback = (err: grpc.ServiceError | null, res?: { id: string }) => void;
    const rpc = client as unknown as { publish: (req: object, cb: Callback) => void };
    const call = (req: object) =>
      new Promise<{ id: string }>((resolve, reject) =>
        rpc.publish.call(client, req, (err, res) => (err ? reject(err) : resolve(res as { id: string }))),
      );
    try {
      const r = await call({
        sender: 'billing',
        type: 'invoice.paid',
        data: Buffer.from('{"n":1}'),
        contentType: 'application/json',
        timeMs: '1700000000000',
        headers: { k: 'v' },
      });
      const [e] = await rig.store.query({ selector: 'billing:invoice.paid', limit: 10 });
      assert.ok(e, 'the event is in the log');
      assert.equal(r.id, e.id);
      assert.equal(e.time, 1700000000000);
      assert.equal(e.contentType, 'application/json');
      assert.deepEqual(e.headers, { k: 'v' });
      assert.equal(e.data.toString(), '{"n":1}');
      await assert.rejects(call({ sender: 'bad sender!', type: 'x' }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.deepEqual(err.metadata.get(GRPC_ERROR_CODE_KEY), ['INVALID_SENDER']);
        assert.match(err.details, /sender/);
        return true;
      });
    } finally {
      client.close();
    }
  });

  test('no more than max in flight unacknowledged; after acks the rest flow in order; the ack is saved', async () => {
    const stored = await rig.ingest(spec('flow', 60));
    const want = offsets(stored.filter((e) => e.type === 'a'));
    const sub = subscription('flow', 'flow:a', { url, start: 'earliest', maxInFlight: 10 });
    const it = sub[Symbol.asyncIterator]();
    const got: SubscriptionEvent[] = [];
    for (let i = 0; i < 10; i++) got.push((await it.next()).value as SubscriptionEvent);
    const eleventh = it.next();
    const first = await Promise.race([eleventh.then(() => 'event'), sleep(500).then(() => 'waiting')]);
    assert.equal(first, 'waiting', 'the 11th waits while 10 are unacknowledged');
    for (const e of got) e.ack();
    got.push((await eleventh).value as SubscriptionEvent);
    got.at(-1)?.ack();
    while (got.length < want.length) {
      const r = await it.next();
      (r.value as SubscriptionEvent).ack();
      got.push(r.value as SubscriptionEvent);
    }
    await sub.close();
    assert.deepEqual(
      got.map((e) => e.offset),
      want,
    );
    const view = await m.get('flow');
    assert.equal(view?.ackedOffset, want.at(-1), 'the last ack was saved before the stream closed');
    assert.equal(view?.state, 'sleeping', 'the consumer detached');
  });

  test('the SDK reconnects when the server restarts and does not yield an event twice', async () => {
    const errors: string[] = [];
    const stored = await rig.ingest(spec('rs', 300));
    const sub = subscription('restart', 'rs:*', {
      url,
      start: 'earliest',
      maxInFlight: 50,
      reconnectInitialDelayMs: 20,
      onError: (e) => errors.push(e.code),
    });
    const got: bigint[] = [];
    let restarted = false;
    for await (const e of sub) {
      got.push(e.offset);
      // Ack only every 7th: after the restart the unacknowledged tail comes again and must be skipped.
      if (got.length % 7 === 0) e.ack();
      if (got.length === 100 && !restarted) {
        restarted = true;
        await server.stop();
        await start();
        stored.push(...(await rig.ingest(spec('rs', 300))));
      }
      if (got.length === 600) break;
    }
    assert.equal(new Set(got).size, 600, 'nothing yielded twice');
    assert.deepEqual(got, offsets(stored));
    assert.ok(errors.includes('UNAVAILABLE'), `errors ${errors}`);
  });

  test('without a manager Subscribe is UNAVAILABLE and the SDK keeps trying until one serves', async () => {
    manager = undefined;
    const errors: HeraldError[] = [];
    const sub = subscription('late', 'late:*', {
      url,
      start: 'earliest',
      reconnectInitialDelayMs: 20,
      reconnectMaxDelayMs: 50,
      onError: (e) => errors.push(e),
    });
    try {
      const it = sub[Symbol.asyncIterator]();
      const next = it.next();
      const reported = () => errors.find((e) => /does not serve subscriptions right now/.test(e.message));
      await waitFor('UNAVAILABLE reported', () => reported() !== undefined, 5000, 10);
      assert.equal(reported()?.code, 'UNAVAILABLE');
      const [e] = await rig.ingest(spec('late', 1));
      manager = m;
      const r = await next;
      assert.equal(r.done, false);
      assert.equal((r.value as SubscriptionEvent).offset, e?.offset);
    } finally {
      manager = m;
      await sub.close();
    }
  });

  test('permanent failures end the iteration with a clear error: another selector (CONFLICT), a bad selector', async () => {
    const sub = subscription('flow', 'flow:b', { url });
    await assert.rejects(
      (async () => {
        for await (const _ of sub) break;
      })(),
      (err: HeraldError) => err.code === 'CONFLICT' && /exists with selector/.test(err.message) && /ALREADY_EXISTS/.test(err.message),
    );
    assert.throws(
      () => subscription('x', 'not a selector', { url }),
      (err: HeraldError) => err.code === 'INVALID_SELECTOR',
    );
    assert.throws(
      () => subscription('bad name!', '*:*', { url }),
      (err: HeraldError) => err.code === 'INVALID_CONFIG',
    );
  });

  test('a second stream on an active subscription waits as a standby and takes over after the ack', async () => {
    const a = subscription('standby', 'sb:*', { url, start: 'new' });
    const ai = a[Symbol.asyncIterator]();
    const ap = ai.next();
    await waitFor('a active', async () => (await m.get('standby'))?.state === 'active', 5000, 10);
    const b = subscription('standby', 'sb:*', { url });
    const bi = b[Symbol.asyncIterator]();
    const bp = bi.next();
    await sleep(100);
    const stored = await rig.ingest(spec('sb', 2));
    const ea = (await ap).value as SubscriptionEvent;
    assert.equal(ea.offset, stored[0]?.offset);
    ea.ack();
    await a.close();
    const eb = (await bp).value as SubscriptionEvent;
    assert.equal(eb.offset, stored[1]?.offset, 'the standby continues after the acknowledged offset');
    await b.close();
  });
});
