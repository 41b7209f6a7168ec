import { setTimeout as sleep } from 'node:timers/promises';
import { bindingKeys, compileMatcher, EVENTS_EXCHANGE, fromAmqp, type Matcher, type QueueType, type Selector } from '@herald/core';
import { type Channel, type ChannelModel, type ConsumeMessage, connect } from 'amqplib';
import type { Logger } from 'pino';
import { declareQueue } from '../ingest/topology.ts';
import type { StoredEvent } from '../store/types.ts';
import { receiverQueue } from './subscription-store.ts';

/** Unacknowledged receiver messages RabbitMQ may push per queue. */
const PREFETCH = 1000;

/**
 * Called with the live events of one receiver, in arrival order, synchronously: once it returns,
 * the messages are acknowledged (the log keeps them; the receiver is only the fast path).
 */
export type OnLive = (hash: string, events: StoredEvent[]) => void;

/**
 * The hub's side of the receiver queues: one durable queue (of `queueType`) per canonical selector,
 * bound to `herald.events` with the selector's binding keys, limited to `maxLength` messages
 * (drop-head), and consumed once by the hub on its own connection.
 *
 * Reconnect: when RabbitMQ drops the connection, the receivers reconnect with backoff (100 ms
 * doubling to 5 s, forever), declare their queues again and consume; `onReset` is called so that
 * consumers check the log for what they missed meanwhile. Declaring and deleting while RabbitMQ is
 * away only changes the set; the queues follow on reconnect.
 */
export interface Receivers {
  /** Connects and declares and consumes every receiver given. Rejects with the broker's error. */
  start(selectors: readonly Selector[]): Promise<void>;
  /** Declares (idempotent) the queue of `selector`, binds and consumes it. */
  add(selector: Selector): Promise<void>;
  /** Stops consuming and deletes the queue. */
  remove(selector: Selector): Promise<void>;
  /** Messages in each receiver queue, on a channel of its own (a queue deleted meanwhile is left out); [] while disconnected. */
  depths(): Promise<{ queue: string; messages: number }[]>;
  /** Whether the receivers' connection is up. */
  connected(): boolean;
  stop(): Promise<void>;
}

interface Link {
  conn: ChannelModel;
  ch: Channel;
  gen: number;
}

export function createReceivers(options: {
  amqpUrl: string;
  maxLength: number;
  queueType?: QueueType | undefined;
  logger: Logger;
  onLive: OnLive;
  onReset: () => void;
}): Receivers {
  const { amqpUrl, maxLength, logger: log, onLive, onReset } = options;
  const queueType = options.queueType ?? 'classic';
  const wanted = new Map<string, Selector>();
  /**
   * The matcher of each wanted selector: a queue's binding keys may route more than its selector
   * matches (bindingKeys, for types with two or more `#`), so what arrives is filtered here.
   */
  const matchers = new Map<string, Matcher>();
  const want = (s: Selector) => {
    wanted.set(s.hash, s);
    if (!matchers.has(s.hash)) matchers.set(s.hash, compileMatcher(s));
  };
  /** Queues removed while RabbitMQ was away: deleted on reconnect. */
  const unwanted = new Map<string, Selector>();
  /** consumer tag by hash, on the current link */
  const tags = new Map<string, string>();
  let link: Link | undefined;
  let gen = 0;
  let stopped = false;
  let reconnecting = false;
  let lastTag = 0;
  /** Messages received since the last flush, by hash; acknowledged together. */
  let batch = new Map<string, StoredEvent[]>();
  let lastMsg: ConsumeMessage | undefined;
  let flushScheduled = false;

  const flush = (l: Link) => {
    flushScheduled = false;
    const b = batch;
    const last = lastMsg;
    batch = new Map();
    lastMsg = undefined;
    for (const [hash, events] of b) {
      try {
        onLive(hash, events);
      } catch (err) {
        log.error({ err: String(err), hash }, 'receiver handler failed (the log still has the events)');
      }
    }
    if (last && l.gen === gen) {
      try {
        l.ch.ack(last, true);
      } catch {
        // the channel is gone: the messages come back on the next connection, or are found in the log
      }
    }
  };

  const onMessage = (l: Link, hash: string) => (msg: ConsumeMessage | null) => {
    if (msg === null) {
      if (wanted.has(hash) && l.gen === gen) {
        log.warn({ hash }, 'RabbitMQ cancelled a receiver consumer (queue deleted?); declaring it again');
        tags.delete(hash);
        const sel = wanted.get(hash);
        if (sel) void declare(l, sel).catch((err) => log.warn({ err: String(err) }, 'could not declare the receiver again'));
      }
      return;
    }
    if (l.gen !== gen) return;
    lastMsg = msg;
    try {
      const e = fromAmqp({ routingKey: msg.fields.routingKey, content: msg.content, properties: msg.properties }, { maxBytes: 1 << 30 });
      // The replay mark of a replay into the flow means nothing to a subscription: left out.
      const { offset, replay: _flowReplay, ...event } = e;
      if (offset !== undefined && matchers.get(hash)?.(e.sender, e.type) !== false) {
        const ev: StoredEvent = { ...event, offset, storedAt: Date.now() };
        const list = batch.get(hash);
        if (list) list.push(ev);
        else batch.set(hash, [ev]);
      }
    } catch (err) {
      log.debug({ err: String(err) }, 'unreadable receiver message skipped (the log is the source of truth)');
    }
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(() => flush(l));
    }
  };

  async function declare(l: Link, selector: Selector): Promise<void> {
    const queue = receiverQueue(selector);
    // A declare that fails closes its channel: try it on a channel of its own.
    const tmp = await l.conn.createChannel();
    tmp.on('error', () => undefined);
    try {
      await declareQueue(tmp, queue, queueType, { 'x-max-length': maxLength, 'x-overflow': 'drop-head' });
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause ?? err;
      if ((cause as { code?: unknown }).code !== 406) throw err;
      // PRECONDITION_FAILED: the queue exists with other arguments (another max length or queue
      // type): kept and consumed as it is. The log is the source of truth, so deleting it is safe.
      log.warn(
        { queue, err: String(err) },
        'receiver queue exists with other arguments (a limit, HERALD_QUEUE_TYPE); delete it to apply them',
      );
    } finally {
      await tmp.close().catch(() => undefined);
    }
    for (const key of bindingKeys(selector)) {
      // amqplib throws on a key it cannot encode after it has taken the channel's one RPC slot, and
      // every later RPC on the channel then waits forever: never hand it one (parseSelector refuses
      // such patterns; this keeps the channel safe whatever built the selector).
      if (Buffer.byteLength(key) > 255) throw new Error(`binding key of ${Buffer.byteLength(key)} bytes for ${queue}: at most 255`);
      await l.ch.bindQueue(queue, EVENTS_EXCHANGE, key);
    }
    if (!tags.has(selector.hash)) {
      const tag = `herald-sub-${++lastTag}`;
      tags.set(selector.hash, tag);
      await l.ch.consume(queue, onMessage(l, selector.hash), { noAck: false, consumerTag: tag });
    }
  }

  async function connectAndSetup(): Promise<void> {
    const conn = await connect(amqpUrl, { noDelay: true, clientProperties: { connection_name: 'herald-hub receivers' } });
    conn.on('error', (err) => log.warn({ err: String(err) }, 'receivers: RabbitMQ connection error'));
    try {
      const ch = await conn.createChannel();
      ch.on('error', (err) => log.warn({ err: String(err) }, 'receivers: RabbitMQ channel error'));
      await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
      await ch.prefetch(PREFETCH);
      const l: Link = { conn, ch, gen: ++gen };
      link = l;
      tags.clear();
      batch = new Map();
      lastMsg = undefined;
      for (const sel of [...wanted.values()]) await declare(l, sel);
      for (const [hash, sel] of [...unwanted]) {
        await ch.deleteQueue(receiverQueue(sel));
        unwanted.delete(hash);
      }
      const lost = (why: string) => () => connectionLost(l, why);
      conn.on('close', lost('connection closed'));
      ch.on('close', lost('channel closed'));
    } catch (err) {
      link = undefined;
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  function connectionLost(l: Link, why: string): void {
    if (stopped || link !== l) return;
    link = undefined;
    gen++;
    l.conn.close().catch(() => undefined);
    log.warn({ why }, 'receivers lost RabbitMQ; reconnecting (consumers catch up from the log)');
    onReset();
    void reconnect();
  }

  async function reconnect(): Promise<void> {
    if (reconnecting) return;
    reconnecting = true;
    let delay = 100;
    try {
      while (!stopped) {
        await sleep(delay);
        if (stopped) return;
        try {
          await connectAndSetup();
          if (stopped) {
            await link?.conn.close().catch(() => undefined);
            return;
          }
          log.info('receivers reconnected to RabbitMQ');
          onReset();
          return;
        } catch (err) {
          log.debug({ err: String(err) }, 'receivers: reconnect failed; retrying');
          delay = Math.min(delay * 2, 5000);
        }
      }
    } finally {
      reconnecting = false;
    }
  }

  return {
    async start(selectors) {
      for (const s of selectors) want(s);
      await connectAndSetup();
    },
    async add(selector) {
      want(selector);
      unwanted.delete(selector.hash);
      const l = link;
      if (l) await declare(l, selector);
    },
    async remove(selector) {
      wanted.delete(selector.hash);
      matchers.delete(selector.hash);
      const l = link;
      const tag = tags.get(selector.hash);
      tags.delete(selector.hash);
      if (!l) {
        unwanted.set(selector.hash, selector);
        return;
      }
      if (tag) await l.ch.cancel(tag).catch(() => undefined);
      await l.ch.deleteQueue(receiverQueue(selector));
    },
    async depths() {
      const l = link;
      if (!l) return [];
      const out: { queue: string; messages: number }[] = [];
      let ch: Channel | undefined;
      try {
        for (const s of wanted.values()) {
          ch ??= await l.conn.createChannel();
          ch.on('error', () => undefined);
          const queue = receiverQueue(s);
          try {
            out.push({ queue, messages: (await ch.checkQueue(queue)).messageCount });
          } catch {
            // Deleted meanwhile: checkQueue closed the channel; the next queue opens another.
            ch = undefined;
          }
        }
      } finally {
        await ch?.close().catch(() => undefined);
      }
      return out;
    },
    connected() {
      return link !== undefined;
    },
    async stop() {
      stopped = true;
      const l = link;
      link = undefined;
      if (!l) return;
      if (lastMsg) flush(l);
      await l.ch.close().catch(() => undefined);
      await l.conn.close().catch(() => undefined);
    },
  };
}
