// PublishStream against a hub process (router mode, authentication required, RabbitMQ, PostgreSQL):
// events published with the SDK's hub publisher reach a receiver queue on herald.events and a
// durable gRPC subscription, in publish order; a duplicate id is stored once; refused events
// (a sender the token may not use, an oversized body, a schema violation, an event that is not
// protobuf) are answered refused while the events around them on the same stream are stored.
// The assertions hold whether the hub stores directly (offsets in the answers) or through
// herald.ingest (no offsets).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createHubPublisher, createSubscriber, type HubPublishReceipt } from '@herald/client';
import { subscription } from '@herald/client/grpc';
import { type DeliveredEvent, GRPC_SERVICE, PROTO_LOADER_OPTIONS, PROTO_PATH, uuidv7, type WirePublishRequest } from '@herald/core';
import { type RouterHub, restClient, startRouterHub, waitFor } from '@herald/testing';
import { openStore } from '../store/index.ts';
import type { Store, StoredEvent } from '../store/types.ts';
import { openRawPublishStream } from './test-kit.ts';

const ADMIN = 'publish-stream-admin-token-0123456789';
const MAX_EVENT_BYTES = 4096;

async function logOf(reader: Store, selector: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for (;;) {
    const page = await reader.query({ selector, after: out.at(-1)?.offset, limit: 10_000 });
    out.push(...page);
    if (page.length < 10_000) return out;
  }
}

describe('PublishStream (e2e: hub process, auth required)', { timeout: 120_000 }, () => {
  let fx: RouterHub;
  let reader: Store;
  let token = '';

  before(async () => {
    fx = await startRouterHub('pubstream', {
      HERALD_AUTH: 'required',
      HERALD_ADMIN_TOKEN: ADMIN,
      HERALD_MAX_EVENT_BYTES: String(MAX_EVENT_BYTES),
    });
    reader = await openStore({ url: fx.db.url });
    const admin = restClient(fx.http, ADMIN);
    const user = `ps-${Date.now().toString(36)}`;
    const created = await admin('POST', '/api/v1/users', { name: user, roles: [{ role: 'publisher', senders: ['billing', 'shop'] }] });
    assert.equal(created.status, 201, created.text);
    const t = await admin('POST', `/api/v1/users/${user}/tokens`, { name: 'e2e' });
    assert.equal(t.status, 201, t.text);
    token = t.json().token as string;
    const put = await admin('PUT', '/api/v1/catalog/shop/order.placed', {
      schema: { type: 'object', properties: { amount: { type: 'integer', minimum: 0 } }, required: ['amount'] },
      validate: true,
    });
    assert.equal(put.status, 201, put.text);
  });
  after(async () => {
    await reader?.close();
    await fx?.close();
  });

  test('published events reach a receiver on herald.events and a durable subscription, in order', async () => {
    const run = uuidv7();
    const received: DeliveredEvent[] = [];
    const receiver = createSubscriber({ url: fx.vhost.url, selector: 'billing:ps.*' }, (e) => {
      received.push(e);
    });
    await receiver.queue;
    const sub = subscription(`ps-order-${run.slice(-8)}`, 'billing:ps.*', { url: fx.grpc, token: ADMIN, start: 'new' });
    const delivered: { offset: bigint; id: string; type: string }[] = [];
    const reading = (async () => {
      for await (const e of sub) {
        delivered.push({ offset: e.offset, id: e.id, type: e.type });
        e.ack();
      }
    })();
    // The subscription exists once its stream is open: a first event through it says so.
    const publisher = createHubPublisher({ sender: 'billing', url: fx.grpc, token });
    await waitFor(
      'the subscription is open',
      async () => {
        await publisher.publish('ps.probe', { run });
        return delivered.length > 0;
      },
      20_000,
      200,
    );
    const N = 2000;
    const events = <T extends { type: string }>(list: T[]) => list.filter((e) => e.type === 'ps.event');
    const receipts = await Promise.all(Array.from({ length: N }, (_, i) => publisher.publish('ps.event', { run, i })));
    await waitFor('the receiver has them all', () => events(received).length >= N, 30_000, 20);
    await waitFor('the subscription has them all', () => events(delivered).length >= N, 30_000, 20);
    await publisher.close();
    await sub.close();
    await reading;
    await receiver.close();

    const sent = receipts.map((r) => r.id);
    assert.deepEqual(
      events(received).map((e) => e.id),
      sent,
      'the receiver on herald.events: every event once, in publish order',
    );
    const mine = events(delivered);
    assert.deepEqual(
      mine.map((e) => e.id),
      sent,
      'the durable subscription: every event once, in publish order',
    );
    for (let i = 1; i < delivered.length; i++) assert.ok(delivered[i]!.offset > delivered[i - 1]!.offset, 'offsets ascend');
    assertOffsets(
      receipts,
      mine.map((e) => e.offset),
    );
    assert.ok(receipts.every((r) => !r.duplicate));
  });

  test('a duplicate id answers duplicate (or stored, through herald.ingest) and is stored once', async () => {
    const publisher = createHubPublisher({ sender: 'billing', url: fx.grpc, token });
    const id = uuidv7();
    const first = await publisher.publish('ps.dup', { n: 1 }, { id });
    const second = await publisher.publish('ps.dup', { n: 2 }, { id });
    const marker = await publisher.publish('ps.dup', { n: 3 });
    await publisher.close();
    assert.equal(first.id, id);
    assert.equal(second.id, id);
    assert.equal(first.duplicate, false);
    if (first.offset !== undefined) {
      assert.equal(second.duplicate, true, 'the direct path answers duplicate');
      assert.ok(second.offset === undefined || second.offset === first.offset, 'the duplicate names the first one');
    } else assert.equal(second.offset, undefined);
    await waitFor('the marker is stored', async () => (await logOf(reader, 'billing:ps.dup')).some((e) => e.id === marker.id), 20_000);
    const stored = (await logOf(reader, 'billing:ps.dup')).filter((e) => e.id === id);
    assert.equal(stored.length, 1, 'stored once');
    assert.deepEqual(JSON.parse(stored[0]?.data.toString() ?? ''), { n: 1 }, 'the first one is kept');
  });

  test('refused events are answered refused; the next events on the same stream are stored', async () => {
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    const service = def[GRPC_SERVICE] as grpc.ServiceDefinition;
    const encodeEvent = (service.Publish as grpc.MethodDefinition<WirePublishRequest, unknown>).requestSerialize;
    // Raw bytes, so that one event can be garbage: field 1 = seq, field 2 = one event each.
    const raw = await openRawPublishStream(fx.grpc, { token, bytes: true });
    const { call, status } = raw;
    const ev = (over: Partial<WirePublishRequest>): Buffer =>
      encodeEvent({
        id: uuidv7(),
        sender: 'billing',
        type: 'ps.refusal',
        data: Buffer.from('{}'),
        contentType: 'application/json',
        headers: {},
        ...over,
      });
    const frame = (seq: number, events: Buffer[]) => {
      const parts: Buffer[] = [Buffer.from([0x08, seq])];
      for (const e of events) parts.push(Buffer.from([0x12]), varint(e.length), e);
      return Buffer.concat(parts);
    };
    const ok1 = uuidv7();
    const ok2 = uuidv7();
    const ok3 = uuidv7();
    call.write(
      frame(10, [
        ev({ id: ok1 }),
        ev({ sender: 'shipping' }),
        ev({ data: Buffer.alloc(MAX_EVENT_BYTES + 1, 0x61), contentType: 'text/plain' }),
        ev({ sender: 'shop', type: 'order.placed', data: Buffer.from('{"amount":-1}') }),
        Buffer.from([0x22, 0x7f, 0x01]),
        ev({ id: ok2 }),
      ]),
    );
    call.write(frame(20, [ev({ id: ok3 })]));
    await waitFor('every seq answered', () => raw.acks.length >= 7, 20_000, 10);
    call.end();
    assert.equal((await status).code, grpc.status.OK, 'the stream ends OK after a half-close');
    raw.close();
    const acks = new Map(raw.acks.map((a) => [a.seq, a]));
    assert.equal(acks.size, raw.acks.length, 'each seq answered once');
    const outcome = (seq: number) => acks.get(String(seq));
    for (const seq of [10, 15, 20]) assert.equal(outcome(seq)?.outcome, 'stored', `seq ${seq}: ${JSON.stringify(outcome(seq))}`);
    assert.deepEqual(
      [11, 12, 13, 14].map((s) => outcome(s)?.refused?.code),
      ['FORBIDDEN', 'EVENT_TOO_LARGE', 'SCHEMA_VIOLATION', 'INVALID_REQUEST'],
    );
    assert.equal(outcome(10)?.id, ok1);
    assert.ok(
      [11, 12, 13, 14].every((s) => (outcome(s)?.refused?.message.length ?? 0) > 0),
      'each refusal says why',
    );
    await waitFor('stored', async () => (await logOf(reader, 'billing:ps.refusal')).length >= 3, 20_000);
    const stored = await logOf(reader, '*:ps.refusal,shop:order.placed');
    assert.deepEqual(
      stored.map((e) => e.id),
      [ok1, ok2, ok3],
      'only the good ones, in stream order',
    );
  });

  test('a stream without a valid token is refused; one request past 1,000 events ends the stream', async () => {
    const bad = createHubPublisher({ sender: 'billing', url: fx.grpc, token: 'not-a-token' });
    await assert.rejects(bad.publish('ps.x', 1), (err: { code?: string }) => err.code === 'UNAUTHENTICATED');
    await bad.close();

    const { call, status, close } = await openRawPublishStream(fx.grpc, { token });
    call.write({ seq: '1', events: Array.from({ length: 1001 }, () => ({ sender: 'billing', type: 'ps.flood', headers: {} })) });
    const s = await status;
    close();
    assert.equal(s.code, grpc.status.RESOURCE_EXHAUSTED, s.details);
    assert.match(s.details, /at most 1000 events/);
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** Offsets in the answers (direct path) are the log's; through herald.ingest there are none. */
function assertOffsets(receipts: HubPublishReceipt[], delivered: bigint[]): void {
  if (receipts[0]?.offset === undefined) {
    assert.ok(
      receipts.every((r) => r.offset === undefined),
      'no offsets through herald.ingest',
    );
    return;
  }
  assert.deepEqual(
    receipts.map((r) => r.offset),
    delivered,
    'the answered offsets are the delivered ones',
  );
}
