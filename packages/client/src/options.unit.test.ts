import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ARCHIVE_BINDING, Headers, HeraldError, wireTopology } from '@herald/core';
import { deadLetterOptions, deathCause } from './dead-letter.ts';
import {
  normalizeConnection,
  normalizeDurableSubscriptionOptions,
  normalizePublisherOptions,
  normalizeSubscriberOptions,
} from './options.ts';
import type { PublisherOptions, SubscriberOptions } from './types.ts';

function rejects(fn: () => unknown, code: string, mentions: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof HeraldError, `expected a HeraldError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.ok(err.message.includes(mentions), `${JSON.stringify(err.message)} should mention ${JSON.stringify(mentions)}`);
    return true;
  });
}

describe('publisher options', () => {
  test('defaults', () => {
    const o = normalizePublisherOptions({ sender: 'billing', url: 'amqp://alice:secret@h:5672/v' });
    assert.equal(o.maxPending, 10_000);
    assert.equal(o.confirmTimeoutMs, 30_000);
    assert.equal(o.maxEventBytes, 1024 * 1024);
    assert.equal(o.setUserId, true);
    assert.equal(o.declareTopology, false);
    assert.equal(o.user, 'alice');
    assert.equal(o.reconnectInitialDelayMs, 100);
    assert.equal(o.reconnectMaxDelayMs, 5000);
    assert.equal(o.connectionName, `herald-publisher-${process.pid}`);
  });

  test('a URL without a user publishes as guest, as amqplib logs in', () => {
    assert.equal(normalizeConnection({ url: 'amqp://127.0.0.1' }, 'x').user, 'guest');
  });

  test('bad fields are rejected by name', () => {
    rejects(() => normalizePublisherOptions({ sender: 'bad sender' }), 'INVALID_SENDER', 'bad sender');
    rejects(() => normalizePublisherOptions({} as PublisherOptions), 'INVALID_SENDER', 'undefined');
    rejects(() => normalizePublisherOptions({ sender: 's', maxPending: 0 }), 'INVALID_CONFIG', 'maxPending');
    rejects(() => normalizePublisherOptions({ sender: 's', confirmTimeoutMs: -1 }), 'INVALID_CONFIG', 'confirmTimeoutMs');
    rejects(() => normalizePublisherOptions({ sender: 's', url: 'http://x' }), 'INVALID_CONFIG', 'url');
    rejects(() => normalizePublisherOptions({ sender: 's', setUserId: 'yes' as never }), 'INVALID_CONFIG', 'setUserId');
    rejects(
      () => normalizePublisherOptions({ sender: 's', reconnectInitialDelayMs: 500, reconnectMaxDelayMs: 100 }),
      'INVALID_CONFIG',
      'reconnectMaxDelayMs',
    );
    rejects(() => normalizePublisherOptions({ sender: 's', maxPendng: 5 } as PublisherOptions), 'INVALID_CONFIG', '"maxPendng"');
  });

  test('the password never appears in an error', () => {
    assert.throws(
      () => normalizePublisherOptions({ sender: 's', url: 'ftp://u:hunter2@x' }),
      (err: Error) => !err.message.includes('hunter2'),
    );
  });
});

describe('subscriber options', () => {
  test('defaults follow concurrency', () => {
    const o = normalizeSubscriberOptions({ selector: 'billing:*, *:invoice.paid' });
    assert.equal(o.concurrency, 1);
    assert.equal(o.prefetch, 50);
    assert.equal(o.maxAttempts, 5);
    assert.equal(o.retryDelayMs, 1000);
    assert.equal(o.queue, undefined);
    assert.deepEqual(o.bindingKeys, ['*.invoice.paid', 'billing.#']);
    assert.equal(normalizeSubscriberOptions({ selector: '*:*', concurrency: 40 }).prefetch, 80);
  });

  test('bad fields are rejected by name', () => {
    rejects(() => normalizeSubscriberOptions({} as SubscriberOptions), 'INVALID_CONFIG', 'selector');
    rejects(() => normalizeSubscriberOptions({ selector: 'billing' }), 'INVALID_SELECTOR', '<sender>:<type>');
    rejects(() => normalizeSubscriberOptions({ selector: '*:*', concurrency: 0 }), 'INVALID_CONFIG', 'concurrency');
    rejects(() => normalizeSubscriberOptions({ selector: '*:*', concurrency: 10, prefetch: 5 }), 'INVALID_CONFIG', 'prefetch');
    rejects(() => normalizeSubscriberOptions({ selector: '*:*', maxAttempts: 0 }), 'INVALID_CONFIG', 'maxAttempts');
    rejects(() => normalizeSubscriberOptions({ selector: '*:*', queue: 'amq.mine' }), 'INVALID_CONFIG', 'amq.');
    rejects(() => normalizeSubscriberOptions({ selector: '*:*', queue: '' }), 'INVALID_CONFIG', 'queue');
  });
});

describe('dead letters', () => {
  test('keep the original properties, drop user_id, add the x-herald-dead-* headers', () => {
    const o = deadLetterOptions(
      {
        fields: { exchange: 'herald.events', routingKey: 'billing.invoice.paid' } as never,
        properties: {
          messageId: 'id-1',
          userId: 'guest',
          appId: 'billing',
          headers: { tenant: 'acme', [Headers.DEAD_STORED]: 'true' },
          expiration: '5',
        } as never,
      },
      deathCause(new Error('boom'), 3, { firstFailedAt: 1_700_000_000_000, lastFailedAt: 1_700_000_000_250, queue: 'billing-q' }),
    );
    assert.equal(o.messageId, 'id-1');
    assert.equal(o.appId, 'billing');
    assert.equal(o.userId, undefined);
    assert.equal(o.expiration, undefined);
    assert.equal(o.persistent, true);
    assert.deepEqual(o.headers, {
      tenant: 'acme',
      [Headers.DEAD_REASON]: 'boom',
      [Headers.DEAD_CODE]: 'HANDLER_FAILED',
      [Headers.ATTEMPTS]: 3,
      [Headers.FIRST_FAILED_AT]: 1_700_000_000_000,
      [Headers.LAST_FAILED_AT]: 1_700_000_000_250,
      [Headers.ORIGINAL_EXCHANGE]: 'herald.events',
      [Headers.ORIGINAL_ROUTING_KEY]: 'billing.invoice.paid',
      [Headers.ORIGINAL_QUEUE]: 'billing-q',
    });
  });

  test('the first failure defaults to the last, the last to now; never after the last', () => {
    const before = Date.now();
    const c = deathCause('no', 0);
    assert.ok(c.lastFailedAt >= before && c.firstFailedAt === c.lastFailedAt);
    assert.equal(c.queue, undefined);
    assert.equal(deathCause('no', 2, { firstFailedAt: 20, lastFailedAt: 10 }).firstFailedAt, 10);
  });
});

describe('wire topology', () => {
  test('archive mode adds exactly the ingest → events binding', () => {
    const router = wireTopology('router');
    const archive = wireTopology('archive');
    assert.deepEqual(
      router.exchanges.map((x) => x.name),
      ['herald.ingest', 'herald.events', 'herald.dead'],
    );
    assert.ok(router.exchanges.every((x) => x.type === 'topic' && x.durable));
    assert.deepEqual(router.queues, [{ name: 'herald.dead', durable: true }]);
    assert.ok(!router.bindings.includes(ARCHIVE_BINDING));
    assert.deepEqual(archive.bindings.slice(router.bindings.length), [ARCHIVE_BINDING]);
    assert.throws(() => wireTopology('fast' as never), /unknown hub mode/);
  });
});

describe('hub addresses and queue types', () => {
  test('subscription(): one gRPC address, a list, or a comma-separated string; at most 16, no blanks', () => {
    const urls = (url: unknown) => normalizeDurableSubscriptionOptions('s', '*:*', { url: url as string }).urls;
    assert.deepEqual(urls('grpc://hub-a:50051/'), ['hub-a:50051']);
    assert.deepEqual(urls(['hub-a:1', 'http://hub-b:2']), ['hub-a:1', 'hub-b:2']);
    assert.deepEqual(urls('hub-a:1, hub-b:2'), ['hub-a:1', 'hub-b:2']);
    assert.equal(normalizeDurableSubscriptionOptions('s', '*:*', { url: ['hub-a:1', 'hub-b:2'] }).url, 'hub-a:1');
    rejects(() => urls([]), 'INVALID_CONFIG', 'url');
    rejects(() => urls(Array.from({ length: 17 }, (_, i) => `h:${i}`)), 'INVALID_CONFIG', 'url');
    rejects(() => urls('hub-a:1,,hub-b:2'), 'INVALID_CONFIG', 'url');
    rejects(() => urls(['hub a:1']), 'INVALID_CONFIG', 'url');
    rejects(() => urls([42]), 'INVALID_CONFIG', 'url');
  });

  test('createSubscriber: queueType classic by default; quorum needs a named queue', () => {
    const base = { selector: 'billing:*' } as SubscriberOptions;
    assert.equal(normalizeSubscriberOptions(base).queueType, 'classic');
    assert.equal(normalizeSubscriberOptions({ ...base, queue: 'q', queueType: 'quorum' }).queueType, 'quorum');
    rejects(() => normalizeSubscriberOptions({ ...base, queueType: 'quorum' }), 'INVALID_CONFIG', 'named queue');
    rejects(() => normalizeSubscriberOptions({ ...base, queue: 'q', queueType: 'stream' as 'quorum' }), 'INVALID_CONFIG', 'queueType');
  });
});
