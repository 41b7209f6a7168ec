// PublishStream on a hub in archive mode (in-process hub, real RabbitMQ and PostgreSQL): the direct
// path needs router mode, so every event is answered refused CONFLICT with the reason, the stream
// itself goes on and ends OK, the SDK's hub publisher rejects with CONFLICT without sending again,
// and nothing of it reaches the log while an event published to herald.ingest afterwards does.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createHubPublisher } from '@herald/client';
import { ErrorCodes, HeraldError, INGEST_EXCHANGE, uuidv7 } from '@herald/core';
import { createRawPublisher, createTestDatabase, createTestVhost, type TestDatabase, type TestVhost, waitFor } from '@herald/testing';
import { pino } from 'pino';
import { normalizeConfig } from '../config/index.ts';
import { createHub, type Hub } from '../hub.ts';
import { openStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { openRawPublishStream } from './test-kit.ts';

/** What the refusal says: the mode the direct path needs. */
const REASON = /router mode/;

describe('PublishStream in archive mode (in-process hub, RabbitMQ, PostgreSQL)', { timeout: 120_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: Hub;
  let reader: Store;
  let url = '';

  before(async () => {
    vhost = await createTestVhost('psarchive');
    db = await createTestDatabase('psarchive');
    const config = normalizeConfig({ amqpUrl: vhost.url, databaseUrl: db.url, mode: 'archive', httpPort: 0, grpcPort: 0 }, {});
    hub = createHub(config, { logger: pino({ level: process.env.HERALD_TEST_LOG_LEVEL ?? 'silent' }) });
    await hub.start();
    const address = hub.grpcAddress();
    assert.ok(address, 'the hub serves gRPC');
    url = `127.0.0.1:${address.port}`;
    reader = await openStore({ url: db.url });
  });
  after(async () => {
    await hub?.stop();
    await reader?.close();
    await vhost?.delete();
    await db?.drop();
  });

  test('every event is answered refused CONFLICT with the reason, the stream ends OK, and none is stored', async () => {
    const { call, acks, status, close } = await openRawPublishStream(url);
    const ids = Array.from({ length: 4 }, () => uuidv7());
    const event = (id: string) => ({ id, sender: 'billing', type: 'archive.direct', data: Buffer.from('{}'), headers: {} });
    call.write({ seq: '1', events: ids.slice(0, 3).map(event) });
    call.write({ seq: '4', events: [event(ids[3] as string)] });
    call.end();
    const s = await status;
    close();

    assert.equal(s.code, grpc.status.OK, `the stream itself is not refused: ${s.details}`);
    assert.deepEqual(
      acks.map((a) => [a.seq, a.id, a.outcome, a.refused?.code]),
      ids.map((id, i) => [String(i + 1), id, 'refused', ErrorCodes.CONFLICT]),
      'each event answered once, refused CONFLICT',
    );
    for (const a of acks) assert.match(a.refused?.message ?? '', REASON);
    await assertNotStored(ids);
  });

  test("the SDK's hub publisher rejects with CONFLICT and the reason, and does not send the event again", async () => {
    const publisher = createHubPublisher({ sender: 'billing', url });
    const id = uuidv7();
    await assert.rejects(
      publisher.publish('archive.sdk', { n: 1 }, { id }),
      (err: unknown) => err instanceof HeraldError && err.code === ErrorCodes.CONFLICT && REASON.test(err.message),
    );
    assert.equal(publisher.pending, 0, 'nothing left in flight to send again');
    await publisher.close();
    await assertNotStored([id]);
  });

  /** The log holds none of `ids`, read once an event published to herald.ingest after them is stored. */
  async function assertNotStored(ids: readonly string[]): Promise<void> {
    const pub = await createRawPublisher(vhost.url);
    const marker = uuidv7();
    try {
      const confirmed = await pub.publish(INGEST_EXCHANGE, {
        routingKey: 'billing.archive.marker',
        content: Buffer.from('{}'),
        options: { messageId: marker, appId: 'billing', type: 'archive.marker', contentType: 'application/json' },
      });
      assert.ok(confirmed, 'RabbitMQ confirmed the marker');
    } finally {
      await pub.close();
    }
    await waitFor('the marker is stored through herald.ingest', async () => (await reader.getById(marker)) !== undefined, 30_000, 50);
    for (const id of ids) assert.equal(await reader.getById(id), undefined, `event ${id} is not in the log`);
    const direct = await reader.query({ selector: 'billing:archive.direct,billing:archive.sdk', limit: 100 });
    assert.deepEqual(direct, [], 'no event of the direct path in the log');
  }
});
