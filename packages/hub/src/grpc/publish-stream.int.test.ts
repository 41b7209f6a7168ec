// PublishStream of the gRPC server over an in-memory append, with the SDK's hub publisher: the
// direct path's answers (offsets, duplicates), coalescing into few append calls, one call at a
// time per stream, and events the hub answers UNAVAILABLE sent again.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createHubPublisher } from '@herald/client';
import { ErrorCodes, HeraldError, type HeraldEvent, uuidv7 } from '@herald/core';
import { waitFor } from '@herald/testing';
import { pino } from 'pino';
import { type DirectOutcome, PUBLISH_STREAM_LIMITS } from './publish-stream.ts';
import { createGrpcServer, type GrpcServer } from './server.ts';
import { openRawPublishStream } from './test-kit.ts';

describe('PublishStream over an in-memory log (gRPC server, SDK)', { timeout: 60_000 }, () => {
  let server: GrpcServer;
  let url = '';
  const log: HeraldEvent[] = [];
  const offsets = new Map<string, bigint>();
  const calls: number[] = [];
  let running = 0;
  let maxRunning = 0;
  let failNext = 0;
  /** When set, append waits for it. */
  let gate: Promise<void> | undefined;
  let appendCalled: (() => void) | undefined;

  before(async () => {
    server = createGrpcServer({
      host: '127.0.0.1',
      port: 0,
      manager: () => undefined,
      publish: async () => undefined,
      logger: pino({ level: 'silent' }),
      append: async (events) => {
        running += 1;
        maxRunning = Math.max(maxRunning, running);
        calls.push(events.length);
        appendCalled?.();
        await gate;
        await new Promise((r) => setTimeout(r, 2));
        running -= 1;
        if (failNext > 0) {
          failNext -= 1;
          throw new HeraldError(ErrorCodes.UNAVAILABLE, 'the store is down');
        }
        return events.map((e): DirectOutcome => {
          const known = offsets.get(e.id);
          if (known !== undefined) return { offset: known, duplicate: true };
          log.push(e);
          const offset = BigInt(log.length);
          offsets.set(e.id, offset);
          return { offset, duplicate: false };
        });
      },
    });
    url = `127.0.0.1:${(await server.start()).port}`;
  });
  after(async () => {
    await server?.stop();
  });

  test('answers carry the offsets; a duplicate names the first; what arrives together is one append', async () => {
    const publisher = createHubPublisher({ sender: 'billing', url });
    const N = 3000;
    const receipts = await Promise.all(Array.from({ length: N }, (_, i) => publisher.publish('int.event', { i })));
    const again = await publisher.publish('int.event', { i: 0 }, { id: receipts[0]?.id });
    await publisher.close();
    assert.deepEqual(
      receipts.map((r) => r.offset),
      Array.from({ length: N }, (_, i) => BigInt(i + 1)),
      'offsets in publish order',
    );
    assert.ok(receipts.every((r) => !r.duplicate));
    assert.deepEqual({ duplicate: again.duplicate, offset: again.offset }, { duplicate: true, offset: 1n });
    assert.deepEqual(
      log.map((e) => JSON.parse(e.data.toString()).i),
      Array.from({ length: N }, (_, i) => i),
    );
    assert.ok(calls.length <= N / 20, `coalesced: ${calls.length} append calls for ${N} events`);
    assert.ok(
      calls.every((n) => n <= PUBLISH_STREAM_LIMITS.eventsPerAppend),
      'each call within the bound',
    );
    assert.equal(maxRunning, 1, 'one append at a time on a stream');
  });

  test('events answered UNAVAILABLE are sent again on a new stream and stored once', async () => {
    const errors: Error[] = [];
    const publisher = createHubPublisher({ sender: 'billing', url, reconnectInitialDelayMs: 10, onError: (e) => errors.push(e) });
    failNext = 2;
    const ids = Array.from({ length: 50 }, () => uuidv7());
    const receipts = await Promise.all(ids.map((id) => publisher.publish('int.retry', null, { id })));
    await publisher.close();
    await waitFor('both failures used', () => failNext === 0, 5000);
    assert.deepEqual(
      receipts.map((r) => r.id),
      ids,
    );
    assert.ok(
      receipts.every((r) => r.offset !== undefined),
      'all stored',
    );
    assert.deepEqual(
      log.filter((e) => e.type === 'int.retry').map((e) => e.id),
      ids,
      'stored once each, in order',
    );
    assert.ok(
      errors.some((e) => (e as HeraldError).code === 'UNAVAILABLE'),
      `told of the refusal: ${errors.map(String)}`,
    );
  });

  test('stop(): the append in flight is answered, then the stream ends UNAVAILABLE', async () => {
    const { call, acks, status, close } = await openRawPublishStream(url);
    let open: () => void = () => {};
    gate = new Promise((r) => {
      open = r;
    });
    const called = new Promise<void>((r) => {
      appendCalled = r;
    });
    call.write({ seq: '7', events: [{ id: uuidv7(), sender: 'billing', type: 'int.stop', headers: {} }] });
    await called;
    const stopping = server.stop();
    open();
    const s = await status;
    await stopping;
    close();
    assert.deepEqual(
      acks.map((a) => [a.seq, a.outcome]),
      [['7', 'stored']],
    );
    assert.equal(s.code, grpc.status.UNAVAILABLE, s.details);
    assert.match(s.details, /stopping/);
  });
});
