// /metrics and /api/v1/stats of a real hub process (router mode, PostgreSQL, RabbitMQ): events of
// known flows are published over AMQP, and the scrape finds exactly those counts; 5,000 distinct
// types stay within the label cap, the rest counted under `other`; a durable subscription's
// deliveries and lag show; dead letters are counted by code.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  makeEvents,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';

/** The samples of one metric in a Prometheus text document: labels (as text) → value. */
function samples(text: string, metric: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    const space = line.lastIndexOf(' ');
    const labels = line.startsWith(`${metric}{`) ? line.slice(metric.length + 1, line.indexOf('}')) : '';
    out.set(labels, Number(line.slice(space + 1)));
  }
  return out;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe('metrics (e2e: hub process, PostgreSQL, RabbitMQ)', () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: HeraldProcess;
  let base: string;

  before(async () => {
    vhost = await createTestVhost('metrics');
    db = await createTestDatabase('metrics');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_MODE: 'router',
      HERALD_HTTP_PORT: String(port),
      HERALD_METRICS_MAX_FLOWS: '1000',
    });
  });
  after(async () => {
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  const scrape = async () => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    return res.text();
  };

  test('a known number of events per sender×type: exactly those counts, ingested and forwarded; the head offset; a subscription delivers', async () => {
    const sub = await fetch(`${base}/api/v1/subscriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'metered', selector: 'billing:*', start: 'earliest' }),
    });
    assert.equal(sub.status, 201, await sub.text());
    // 4 senders × 3 types, 25 of each: 300 events.
    const events = makeEvents(300);
    const pub = await createRawPublisher(vhost.url);
    assert.ok((await pub.publishMany(INGEST_EXCHANGE, events, 100)).every(Boolean));
    // One message that is not an event (a routing key without a type): a dead letter.
    assert.ok(await pub.publish(INGEST_EXCHANGE, { routingKey: 'billing', content: Buffer.from('{}'), options: {} }));
    await pub.close();
    let text = '';
    await waitFor(
      'every event forwarded, as /metrics says',
      async () => {
        text = await scrape();
        return sum(samples(text, 'herald_events_forwarded_total')) >= 300;
      },
      60_000,
      200,
    );
    const expected = new Map<string, number>();
    for (const e of events) {
      const [sender, ...type] = e.routingKey.split('.');
      const labels = `sender="${sender}",type="${type.join('.')}"`;
      expected.set(labels, (expected.get(labels) ?? 0) + 1);
    }
    assert.equal(expected.size, 12);
    assert.deepEqual(samples(text, 'herald_events_ingested_total'), expected);
    assert.deepEqual(samples(text, 'herald_events_forwarded_total'), expected);
    assert.equal(samples(text, 'herald_log_head_offset').get(''), 300);
    assert.equal(samples(text, 'herald_amqp_connected').get(''), 1);
    assert.equal(samples(text, 'herald_store_connected').get(''), 1);
    assert.ok((samples(text, 'herald_store_append_seconds_count').get('') ?? 0) >= 1);
    assert.equal(samples(text, 'herald_store_batch_events_sum').get(''), 300);
    assert.equal(samples(text, 'herald_forward_latency_seconds_count').get(''), 300);
    assert.ok(text.includes('process_resident_memory_bytes'), 'the default process metrics');
    await waitFor(
      'the dead letter counted',
      async () => (samples(await scrape(), 'herald_dead_letters_total').get('reason="INVALID_EVENT"') ?? 0) === 1,
      30_000,
      200,
    );

    // The subscription: pulled, delivered, acknowledged; its lag goes to 0.
    const pulled = await fetch(`${base}/api/v1/subscriptions/metered/events?max=1000&wait=0`);
    const batch = (await pulled.json()) as { events: { offset: string }[] };
    assert.equal(batch.events.length, 75, 'billing: 3 types × 25');
    const ack = await fetch(`${base}/api/v1/subscriptions/metered/ack`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ offset: batch.events.at(-1)?.offset }),
    });
    assert.equal(ack.status, 204, await ack.text());
    text = await scrape();
    assert.equal(samples(text, 'herald_events_delivered_total').get('subscription="metered"'), 75);
    await waitFor(
      'the lag of the subscription at 0',
      async () => samples(await scrape(), 'herald_subscription_lag_events').get('subscription="metered"') === 0,
      30_000,
      200,
    );
    assert.equal(
      samples(text, 'herald_subscription_consumers').get('subscription="metered",state="active"'),
      1,
      'an HTTP pull is active for 30 s',
    );
    assert.ok(samples(text, 'herald_receiver_queue_limit').size >= 1);

    // /api/v1/stats: the same counts, with rates.
    const stats = (await (await fetch(`${base}/api/v1/stats`)).json()) as {
      totals: { in: number; out: number; dead: number; rateIn: Record<string, number> };
      flows: { sender: string; type: string; in: number; out: number; lastSeen: string | null }[];
      subscriptions: { name: string; delivered: number; lagEvents: number }[];
      receivers: { fill: number }[];
      headOffset: string;
    };
    assert.equal(stats.totals.in, 300);
    assert.equal(stats.totals.out, 300);
    assert.equal(stats.totals.dead, 1);
    assert.ok(stats.totals.rateIn['60s']! > 0, 'a rate over the last minute');
    assert.equal(stats.flows.length, 12);
    for (const f of stats.flows) {
      assert.equal(f.in, 25);
      assert.equal(f.out, 25);
      assert.ok(f.lastSeen !== null);
    }
    assert.deepEqual(
      stats.subscriptions.map((s) => [s.name, s.delivered, s.lagEvents]),
      [['metered', 75, 0]],
    );
    assert.equal(stats.headOffset, '300');
    assert.ok(stats.receivers.every((r) => r.fill >= 0 && r.fill <= 100));
  });

  test('the stats stream sends a snapshot a second', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/v1/stats/stream`, { signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const started = Date.now();
    while ((text.match(/event: stats\n/g) ?? []).length < 2) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 800, `two snapshots about a second apart (${elapsed} ms)`);
    const first = JSON.parse(/data: (.*)\n/.exec(text)?.[1] ?? 'null') as { totals: { in: number } };
    assert.ok(first.totals.in >= 300);
    ac.abort();
  });

  test('5,000 distinct types: at most 1,000 sender×type series, the rest under other, the totals exact', async () => {
    const before = sum(samples(await scrape(), 'herald_events_ingested_total'));
    const types = Array.from({ length: 5000 }, (_, i) => `flood.t${i}`);
    const events = makeEvents(5000, { senders: ['flooder'], types });
    const pub = await createRawPublisher(vhost.url);
    assert.ok((await pub.publishMany(INGEST_EXCHANGE, events, 500)).every(Boolean));
    await pub.close();
    let ingested = new Map<string, number>();
    await waitFor(
      'the 5,000 counted',
      async () => {
        ingested = samples(await scrape(), 'herald_events_ingested_total');
        return sum(ingested) >= before + 5000;
      },
      60_000,
      200,
    );
    assert.equal(sum(ingested), before + 5000, 'every event counted once');
    assert.equal(ingested.size, 1001, '1,000 flows and other');
    const other = ingested.get('sender="other",type="other"') ?? 0;
    assert.equal(other, 5000 - (1000 - 12), 'the first 988 new flows got series of their own; the other 4,012 events are other');
  });
});
