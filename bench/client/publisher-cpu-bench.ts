/**
 * The SDK publisher's CPU per event against raw amqplib, in the publishing process, against real
 * RabbitMQ, no hub. In alternating rounds (the order turned each round), each path publishes --events
 * 1 KiB JSON events with up to 1,000 in flight, persistent, with publisher confirms:
 *   - raw: an amqplib ConfirmChannel, `publish` with a confirm callback and the properties Herald
 *     puts on the wire (messageId, sender as appId, type, time), the body JSON.stringify'd per event;
 *   - sdk: createPublisher's `publish(type, data)`, each promise awaited, 1,000 at a time.
 * CPU per event is the process.cpuUsage() delta (user + system) over the round divided by the
 * events, in µs; the figures are medians [min–max] of the rounds, and `ratio` is sdk / raw per
 * round. With `--queue bound` a durable queue is bound to `herald.ingest` with `#`, as the router
 * hub's is, so every confirm waits for RabbitMQ's disk; with `--queue none` nothing is bound and
 * RabbitMQ confirms at once; `both` (the default) measures each.
 *
 *   node --expose-gc --conditions=herald-source --import tsx bench/client/publisher-cpu-bench.ts [--events 20000] [--rounds 3] [--queue both]
 *
 * Needs RabbitMQ (with its management API) as the tests do; works in a vhost of its own and removes
 * it. Prints one JSON document; asserts nothing.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createPublisher, declareTopology, type Publisher } from '@herald/client';
import { INGEST_EXCHANGE } from '@herald/core';
import { createTestVhost } from '@herald/testing';
import { type ConfirmChannel, connect } from 'amqplib';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    queue: { type: 'string', default: 'both' },
  },
});
const events = Number(values.events);
const rounds = Number(values.rounds);
const queueModes = values.queue === 'both' ? ['bound', 'none'] : [values.queue as string];
const WINDOW = 1000;
const SENDER = 'bench';
const TYPE = 'cpu.measured';
/** About 1 KiB of JSON, like the other benchmarks' events. */
const data = { n: 0, pad: 'x'.repeat(1000) };

interface Round {
  cpuMicrosPerEvent: number;
  eventsPerSecond: number;
}

/** Runs `publishAll` once and measures it. */
async function measure(publishAll: () => Promise<void>): Promise<Round> {
  (globalThis as { gc?: () => void }).gc?.();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await publishAll();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return {
    cpuMicrosPerEvent: Number(((cpu.user + cpu.system) / events).toFixed(2)),
    eventsPerSecond: Math.round(events / (ms / 1000)),
  };
}

/** Publishes `count` events on a raw confirm channel, at most WINDOW unconfirmed. */
function rawPublishAll(ch: ConfirmChannel, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let confirmed = 0;
    let waitingForDrain = false;
    const routingKey = `${SENDER}.${TYPE}`;
    const onConfirm = (err: unknown) => {
      if (err) return reject(err);
      if (++confirmed === count) resolve();
      else if (!waitingForDrain) pump();
    };
    const pump = () => {
      while (sent < count && sent - confirmed < WINDOW) {
        data.n = sent++;
        const now = Date.now();
        const ok = ch.publish(
          INGEST_EXCHANGE,
          routingKey,
          Buffer.from(JSON.stringify(data)),
          {
            persistent: true,
            messageId: randomUUID(),
            appId: SENDER,
            type: TYPE,
            contentType: 'application/json',
            timestamp: Math.floor(now / 1000),
            headers: { 'x-herald-time': now },
          },
          onConfirm,
        );
        if (!ok) {
          waitingForDrain = true;
          ch.once('drain', () => {
            waitingForDrain = false;
            pump();
          });
          return;
        }
      }
    };
    pump();
  });
}

/** Publishes `count` events through the SDK, at most WINDOW promises awaited at a time. */
function sdkPublishAll(publisher: Publisher, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let confirmed = 0;
    const onConfirm = () => {
      if (++confirmed === count) resolve();
      else if (sent < count) next();
    };
    const next = () => {
      data.n = sent++;
      publisher.publish(TYPE, data).then(onConfirm, reject);
    };
    while (sent < count && sent < WINDOW) next();
  });
}

function summary(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median: Number(median.toFixed(2)), min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

const vhost = await createTestVhost('publisher-cpu-bench');
const report: Record<string, unknown> = { events, rounds, window: WINDOW, node: process.version, gc: typeof globalThis.gc === 'function' };
try {
  await declareTopology({ url: vhost.url, mode: 'router' });
  const amqp = await connect(vhost.url);
  const admin = await amqp.createChannel();
  const ch = await amqp.createConfirmChannel();
  const publisher = createPublisher({ url: vhost.url, sender: SENDER });
  await admin.assertQueue('herald.ingest', { durable: true });
  for (const mode of queueModes) {
    if (mode === 'bound') await admin.bindQueue('herald.ingest', INGEST_EXCHANGE, '#');
    else await admin.unbindQueue('herald.ingest', INGEST_EXCHANGE, '#');
    // Warm-up: connections up and the hot paths compiled before anything is measured.
    await rawPublishAll(ch, 2000);
    await sdkPublishAll(publisher, 2000);
    await admin.purgeQueue('herald.ingest');
    const raw: Round[] = [];
    const sdk: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? ['raw', 'sdk'] : ['sdk', 'raw'];
      for (const path of order) {
        if (path === 'raw') raw.push(await measure(() => rawPublishAll(ch, events)));
        else sdk.push(await measure(() => sdkPublishAll(publisher, events)));
        await admin.purgeQueue('herald.ingest');
      }
    }
    report[mode === 'bound' ? 'boundQueue' : 'noQueue'] = {
      rawCpuMicrosPerEvent: summary(raw.map((x) => x.cpuMicrosPerEvent)),
      sdkCpuMicrosPerEvent: summary(sdk.map((x) => x.cpuMicrosPerEvent)),
      ratio: summary(sdk.map((x, i) => Number((x.cpuMicrosPerEvent / (raw[i] as Round).cpuMicrosPerEvent).toFixed(2)))),
      rawEventsPerSecond: summary(raw.map((x) => x.eventsPerSecond)),
      sdkEventsPerSecond: summary(sdk.map((x) => x.eventsPerSecond)),
    };
  }
  await publisher.close();
  await amqp.close();
} finally {
  await vhost.delete();
}
console.log(JSON.stringify(report));
