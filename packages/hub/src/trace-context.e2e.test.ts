import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createPublisher, createSubscriber, type Publisher, type Subscriber } from '@herald/client';
import { type SubscriptionEvent, subscription } from '@herald/client/grpc';
import { type DeliveredEvent, INGEST_EXCHANGE, PROTO_LOADER_OPTIONS, PROTO_PATH } from '@herald/core';
import {
  createRawPublisher,
  type RawPublisher,
  type RouterHub,
  registerTestTracing,
  restClient,
  startRouterHub,
  type TestTracing,
  waitFor,
} from '@herald/testing';
import { openSse } from './api/subscriptions-test-kit.ts';

// W3C trace context from the publisher to every consumer, against a real router hub: the SDK
// publisher (explicit, and from the active OpenTelemetry context), the log, the forward to
// herald.events (SDK subscriber), a gRPC subscription, an HTTP pull, a replay; and hostile values.

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TS = 'herald=t61rcWkgMzE,congo=ucfJifl5GOE';

// The OpenTelemetry side is @opentelemetry/api with a tiny AsyncLocalStorage context manager and a
// propagator of the test's own (registerTestTracing): OpenTelemetry's W3C propagator lives in
// @opentelemetry/core, which is not installed.

describe('trace context from publisher to every consumer', { timeout: 180_000 }, () => {
  let fx: RouterHub;
  let pub: Publisher;
  let raw: RawPublisher;
  let sdk: Subscriber;
  let api: ReturnType<typeof restClient>;
  let tracing: TestTracing;
  const inTrace = <T>(traceparent: string, tracestate: string | undefined, fn: () => T): T => tracing.inTrace(traceparent, tracestate, fn);
  /** What the SDK subscriber saw, live and replayed, by id. */
  const live = new Map<string, DeliveredEvent>();
  const replayed = new Map<string, DeliveredEvent>();

  before(async () => {
    tracing = await registerTestTracing();
    fx = await startRouterHub('trace');
    api = restClient(fx.http);
    pub = createPublisher({ url: fx.vhost.url, sender: 'tracer' });
    raw = await createRawPublisher(fx.vhost.url);
    sdk = createSubscriber({ url: fx.vhost.url, selector: 'tracer:*' }, (e) => {
      (e.replay === undefined ? live : replayed).set(e.id, e);
    });
    await sdk.queue;
  });
  after(async () => {
    await sdk?.close();
    await pub?.close();
    await raw?.close();
    tracing?.disable();
    await fx?.close();
  });

  const byId = async (id: string) => {
    let body: Record<string, unknown> = {};
    await waitFor(`event ${id} in the log`, async () => {
      const r = await api('GET', `/api/v1/events/by-id/${id}`);
      if (r.status === 200) body = r.json();
      return r.status === 200;
    });
    return body;
  };

  test('an explicit traceparent reaches the SDK subscriber, a gRPC subscription, an HTTP pull, SSE and a replay unchanged', async () => {
    for (const name of ['trace-pull', 'trace-sse']) {
      const created = await api('POST', '/api/v1/subscriptions', { name, selector: 'tracer:explicit', start: 'earliest' });
      assert.equal(created.status, 201, created.text);
    }
    const { id } = await pub.publish('explicit', { n: 1 }, { traceparent: TP, tracestate: TS });
    const stored = await byId(id);
    assert.equal(stored.traceparent, TP);
    assert.equal(stored.tracestate, TS);
    assert.deepEqual(stored.headers, {}, 'the trace context is not an extra header');

    await waitFor('the SDK subscriber got it', () => live.has(id));
    assert.equal(live.get(id)?.traceparent, TP);
    assert.equal(live.get(id)?.tracestate, TS);

    const grpc = subscription('trace-grpc', 'tracer:explicit', { url: fx.grpc, start: 'earliest' });
    let got: SubscriptionEvent | undefined;
    for await (const e of grpc) {
      e.ack();
      if (e.id === id) {
        got = e;
        break;
      }
    }
    await grpc.close();
    assert.equal(got?.traceparent, TP);
    assert.equal(got?.tracestate, TS);

    const pulled = await api('GET', '/api/v1/subscriptions/trace-pull/events?max=10&wait=5');
    assert.equal(pulled.status, 200, pulled.text);
    const events = pulled.json().events as { id: string; traceparent?: string; tracestate?: string }[];
    assert.deepEqual(
      events.filter((e) => e.id === id).map((e) => [e.traceparent, e.tracestate]),
      [[TP, TS]],
    );

    const sse = await openSse(`${fx.http}/api/v1/subscriptions/trace-sse/stream`);
    await sse.waitFor(1);
    await sse.close();
    const streamed = sse.events[0]?.data as { id?: string; traceparent?: string; tracestate?: string } | undefined;
    assert.deepEqual([streamed?.id, streamed?.traceparent, streamed?.tracestate], [id, TP, TS]);

    const replay = await api('POST', '/api/v1/replays', { selector: 'tracer:explicit', from: { last: 1 } });
    assert.equal(replay.status, 202, replay.text);
    await waitFor('the replayed event reached the SDK subscriber', () => replayed.has(id));
    assert.equal(replayed.get(id)?.traceparent, TP);
    assert.equal(replayed.get(id)?.tracestate, TS);
  });

  test('without one, the publish takes the active OpenTelemetry context; an explicit one wins over it', async () => {
    const other = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
    const fromContext = await inTrace(other, 'rojo=00f067aa0ba902b7', () => pub.publish('otel', { n: 2 }));
    const explicit = await inTrace(other, undefined, () => pub.publish('otel', { n: 3 }, { traceparent: TP }));
    const none = await pub.publish('otel', { n: 4 });
    await waitFor('the three reached the SDK subscriber', () => [fromContext, explicit, none].every((r) => live.has(r.id)));
    assert.equal(live.get(fromContext.id)?.traceparent, other);
    assert.equal(live.get(fromContext.id)?.tracestate, 'rojo=00f067aa0ba902b7');
    assert.equal(live.get(explicit.id)?.traceparent, TP);
    assert.equal(live.get(explicit.id)?.tracestate, undefined);
    assert.equal(live.get(none.id)?.traceparent, undefined);
  });

  test('a malformed context from the propagator is dropped and the event still goes', async () => {
    const r = await inTrace('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u0000', undefined, () =>
      pub.publish('otel', { n: 5 }),
    );
    await waitFor('it reached the SDK subscriber', () => live.has(r.id));
    assert.equal(live.get(r.id)?.traceparent, undefined);
  });

  test('a malformed traceparent set by name is refused: SDK, REST; one in the HTTP request headers is dropped', async () => {
    for (const traceparent of ['00-abc', `${TP}\u0000`, '00-00000000000000000000000000000000-00f067aa0ba902b7-01', TP.toUpperCase()]) {
      await assert.rejects(pub.publish('bad', {}, { traceparent }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'INVALID_EVENT', err.message);
        return true;
      });
    }
    await assert.rejects(pub.publish('bad', {}, { traceparent: TP, tracestate: 'x'.repeat(600) }), /tracestate/);
    await assert.rejects(pub.publish('bad', {}, { tracestate: 'a=b' }), /needs a traceparent/);
    const rest = await api('POST', '/api/v1/events', { sender: 'tracer', type: 'bad', data: {}, traceparent: 'nope' });
    assert.equal(rest.status, 400, rest.text);
    assert.equal(rest.json().parameter, 'traceparent');
    const nul = await api('POST', '/api/v1/events', { sender: 'tracer', type: 'bad', data: {}, traceparent: `${TP}\u0000` });
    assert.equal(nul.status, 400, nul.text);

    // A W3C-instrumented HTTP client sends its own context: taken when well formed, dropped when not.
    const send = (headers: Record<string, string>) =>
      fetch(`${fx.http}/api/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ sender: 'tracer', type: 'http', data: {} }),
      }).then(async (res) => ({ status: res.status, ...((await res.json()) as { id: string }) }));
    const good = await send({ traceparent: TP, tracestate: TS });
    const bad = await send({ traceparent: 'garbage', tracestate: TS });
    assert.deepEqual([good.status, bad.status], [202, 202]);
    assert.equal((await byId(good.id)).traceparent, TP);
    assert.equal((await byId(good.id)).tracestate, TS);
    const dropped = await byId(bad.id);
    assert.equal(dropped.traceparent, undefined);
    assert.equal(dropped.tracestate, undefined);
  });

  test('gRPC Publish takes traceparent and tracestate; a malformed one is INVALID_ARGUMENT', async () => {
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const Herald = grpc.loadPackageDefinition(def).herald as never as { v1: { Herald: grpc.ServiceClientConstructor } };
    const client = new Herald.v1.Herald(fx.grpc, grpc.credentials.createInsecure());
    const rpc = client as unknown as { publish: (req: object, cb: (err: grpc.ServiceError | null, res?: { id: string }) => void) => void };
    const publish = (req: object) =>
      new Promise<{ id: string }>((resolve, reject) =>
        rpc.publish.call(client, { sender: 'tracer', type: 'grpc', data: Buffer.from('{}'), ...req }, (err, res) =>
          err ? reject(err) : resolve(res as { id: string }),
        ),
      );
    try {
      const { id } = await publish({ traceparent: TP, tracestate: TS });
      await waitFor('it reached the SDK subscriber', () => live.has(id));
      assert.deepEqual([live.get(id)?.traceparent, live.get(id)?.tracestate], [TP, TS]);
      await assert.rejects(publish({ traceparent: `${TP}0` }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.match(err.details, /traceparent/);
        return true;
      });
    } finally {
      client.close();
    }
  });

  test('hostile trace headers on AMQP ingest are dropped, never dead-lettered, and the flow goes on', async () => {
    const ids: string[] = [];
    const cases: [Record<string, unknown>, string | undefined, string | undefined][] = [
      [{ traceparent: `${TP}\u0000` }, undefined, undefined],
      [{ traceparent: 'x'.repeat(5000), tracestate: TS }, undefined, undefined],
      [{ traceparent: Buffer.from([0xff, 0xfe, 0x00]) }, undefined, undefined],
      [{ traceparent: 42 }, undefined, undefined],
      [{ traceparent: TP, tracestate: `a=${'b'.repeat(10_000)}` }, TP, undefined],
      [{ traceparent: TP, tracestate: 'a=b\u0000' }, TP, undefined],
      [{ tracestate: TS }, undefined, undefined],
      [{ traceparent: TP, tracestate: TS }, TP, TS],
    ];
    for (const [headers] of cases) {
      const id = crypto.randomUUID();
      ids.push(id);
      assert.ok(
        await raw.publish(INGEST_EXCHANGE, {
          routingKey: 'tracer.amqp',
          content: Buffer.from('{}'),
          options: { messageId: id, contentType: 'application/json', headers },
        }),
      );
    }
    await waitFor('every one reached the SDK subscriber', () => ids.every((id) => live.has(id)));
    cases.forEach(([headers, traceparent, tracestate], i) => {
      const e = live.get(ids[i] as string);
      assert.equal(e?.traceparent, traceparent, `case ${i} ${JSON.stringify(headers).slice(0, 80)}`);
      assert.equal(e?.tracestate, tracestate, `case ${i}`);
      assert.deepEqual(e?.headers, {}, `case ${i}: nothing kept as an extra header`);
    });
    const dead = await api('GET', '/api/v1/dead-letters?limit=100');
    assert.equal(dead.status, 200, dead.text);
    assert.ok(!dead.text.includes('tracer.amqp'), 'no dead letter for a bad trace header');
  });
});
