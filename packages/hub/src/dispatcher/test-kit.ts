// Test helpers for the dispatcher's int and e2e tests (not exported by the package).
import { EVENTS_EXCHANGE, Headers, type HeraldEvent, toAmqp } from '@herald/core';
import { type Channel, type ChannelModel, type ConfirmChannel, connect } from 'amqplib';
import type { StoredEvent } from '../store/types.ts';
import type { Forward } from './dispatcher.ts';

/** A message seen on a queue bound to herald.events. */
export interface Seen {
  offset: bigint;
  replay: string | undefined;
  sender: string;
  type: string;
}

/** A receiver: a queue bound to herald.events (`#`) whose messages are collected in arrival order. */
export interface TestReceiver {
  readonly seen: Seen[];
  /** Resolves once `n` messages arrived (rejects after `timeoutMs`). */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function createReceiver(url: string, queue = 'receiver', bindingKey = '#'): Promise<TestReceiver> {
  const conn: ChannelModel = await connect(url, { noDelay: true });
  const ch: Channel = await conn.createChannel();
  await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  await ch.assertQueue(queue, { durable: false, autoDelete: false });
  await ch.bindQueue(queue, EVENTS_EXCHANGE, bindingKey);
  const seen: Seen[] = [];
  await ch.consume(
    queue,
    (m) => {
      if (!m) return;
      const h = m.properties.headers ?? {};
      const replay = h[Headers.REPLAY];
      seen.push({
        offset: BigInt(String(h[Headers.OFFSET])),
        replay: replay === undefined ? undefined : String(replay),
        sender: String(m.properties.appId),
        type: String(m.properties.type),
      });
    },
    { noAck: true },
  );
  return {
    seen,
    async waitFor(n, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      while (seen.length < n) {
        if (Date.now() > end) throw new Error(`timed out: ${seen.length} of ${n} messages arrived`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async close() {
      await conn.close().catch(() => undefined);
    },
  };
}

/** A real `forward`: publishes to herald.events on a confirm channel and waits for the confirms. */
export async function createForward(url: string): Promise<{ forward: Forward; published: () => number; close(): Promise<void> }> {
  const conn = await connect(url, { noDelay: true });
  const ch: ConfirmChannel = await conn.createConfirmChannel();
  await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  let n = 0;
  return {
    async forward(events: readonly StoredEvent[], options?: { replay?: string }) {
      for (const e of events) {
        const { routingKey, content, properties } = toAmqp(e, { offset: e.offset, replay: options?.replay });
        ch.publish(EVENTS_EXCHANGE, routingKey, content, properties);
      }
      await ch.waitForConfirms();
      n += events.length;
    },
    published: () => n,
    async close() {
      await conn.close().catch(() => undefined);
    },
  };
}

let seq = 0;
/** Minimal events for append(). */
export function events(spec: readonly [sender: string, type: string][]): HeraldEvent[] {
  return spec.map(([sender, type]) => ({
    id: crypto.randomUUID(),
    sender,
    type,
    time: Date.now(),
    data: Buffer.from(JSON.stringify({ n: ++seq })),
    contentType: 'application/json',
    headers: {},
  }));
}
