import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DEAD_QUEUE, INGEST_EXCHANGE, isUuid } from '@herald/core';
import { type Channel, type ChannelModel, type ConfirmChannel, connect } from 'amqplib';
import { type AmqpInput, amqpInput, amqpMessage } from './amqp-inputs.ts';
import { type Finding, type FuzzHub, fuzzSettings, getText, startFuzzHub } from './fuzz-kit.ts';
import { fuzzEdge, type Outcome } from './fuzz-runner.ts';

const settings = fuzzSettings();
/** A publish RabbitMQ neither confirms nor refuses within this long counts as unconfirmed (and the channel is reopened). */
const CONFIRM_MS = 10_000;

/** How long a dead letter may lag behind the probe stored after it. */
const DEAD_LAG_MS = 2000;

/** One tally per kind of refusal: the field or the kind of value, not the numbers in the message. */
function kind(message: string): string {
  const field = /^Field '(\w+)' is the wrong type/.exec(message)?.[1];
  if (field) return `${field} has the wrong type or length`;
  if (/out of range|BigInt|Decimal value/.test(message)) return 'a number out of range for its field type';
  if (message.startsWith('Encoded field table')) return 'header table over its 64 KiB encoding buffer';
  return message
    .replace(/\d+/g, 'N')
    .replace(/[':\n].*$/s, '')
    .slice(0, 90);
}

/**
 * A plain amqplib publisher with confirms that survives what it publishes: RabbitMQ closes the
 * channel on some properties (an invalid expiration) and the connection on some frames, amqplib
 * throws on values it cannot encode (a table over its 64 KiB buffer, a short string over 255 bytes)
 * and may leave the channel's confirm sequence off after that. Either way the next publish gets a
 * fresh channel (and connection when needed).
 */
async function amqpSender(url: string) {
  let conn: ChannelModel | undefined;
  let ch: ConfirmChannel | undefined;
  let closedWith: string | undefined;
  const channel = async (): Promise<ConfirmChannel> => {
    if (ch) return ch;
    if (!conn) {
      const c = await connect(url, { noDelay: true });
      c.on('error', () => undefined);
      c.on('close', () => {
        if (conn === c) conn = undefined;
      });
      conn = c;
    }
    const opened = await conn.createConfirmChannel();
    closedWith = undefined;
    opened.on('error', (err: Error) => {
      closedWith = kind(/with message "([^"]*)"/.exec(err.message)?.[1] ?? err.message);
    });
    opened.on('close', () => {
      if (ch === opened) ch = undefined;
    });
    ch = opened;
    return opened;
  };
  // herald.dead is read on a connection of its own: the publishing one is dropped and reopened often.
  const dead = new Set<string>();
  let deadCount = 0;
  let deadConn: ChannelModel | undefined;
  let deadCh: Channel | undefined;
  const deadConnection = async () => {
    if (!deadConn) {
      deadConn = await connect(url);
      deadConn.on('error', () => undefined);
    }
    return deadConn;
  };
  const drop = () => {
    const old = ch;
    ch = undefined;
    void old?.close().catch(() => undefined);
  };

  return {
    async send(input: AmqpInput): Promise<Outcome> {
      const m = amqpMessage(input);
      const c = await channel();
      return new Promise<Outcome>((resolve) => {
        const timer = setTimeout(() => {
          drop();
          resolve({ tally: 'unconfirmed' });
        }, CONFIRM_MS);
        const done = (o: Outcome) => {
          clearTimeout(timer);
          resolve(o);
        };
        try {
          c.publish(INGEST_EXCHANGE, m.routingKey, m.content, { persistent: true, ...m.options }, (err) => {
            if (!err) return done({ tally: 'confirmed' });
            // The channel closes right after a refused publish; wait for its reason.
            setImmediate(() => done({ tally: `refused by RabbitMQ${closedWith ? `: ${closedWith}` : ' (nack)'}` }));
          });
        } catch (err) {
          drop();
          done({ tally: `refused by amqplib: ${kind((err as Error).message)}` });
        }
      });
    },
    /** Message ids of the dead letters read off herald.dead so far (as amqplib decodes them). */
    dead,
    /** Reads what is on herald.dead into `dead`. Resolves on failure too (what was read is kept). */
    async drainDead(): Promise<void> {
      try {
        deadCh ??= await (await deadConnection()).createChannel();
        for (let m = await deadCh.get(DEAD_QUEUE, { noAck: true }); m !== false; m = await deadCh.get(DEAD_QUEUE, { noAck: true })) {
          deadCount++;
          if (typeof m.properties.messageId === 'string') dead.add(m.properties.messageId);
        }
      } catch {
        deadCh = undefined;
      }
    },
    /** Dead letters read off herald.dead in all. */
    deadLetters: () => deadCount,
    async close() {
      await conn?.close().catch(() => undefined);
      await deadConn?.close().catch(() => undefined);
    },
  };
}

/** A message RabbitMQ confirmed into herald.ingest, with the message id the hub will see. */
interface Confirmed {
  readonly id: string;
  readonly index: number;
  readonly input: AmqpInput;
}

/**
 * "Never silence": every message RabbitMQ confirmed is either stored (GET by id) or dead-lettered
 * (on herald.dead, read here by message id). Only messages with a message id can be traced, and
 * not those given an `expiration` (RabbitMQ may drop them before the hub reads them). Checked once
 * the probe published after them is stored, so the hub has read them all.
 */
async function accountFor(http: string, pub: Awaited<ReturnType<typeof amqpSender>>, confirmed: readonly Confirmed[]): Promise<Finding[]> {
  const missing: Confirmed[] = [];
  for (const c of confirmed) {
    if (pub.dead.has(c.id)) continue;
    if (isUuid(c.id)) {
      const r = await getText(`${http}/api/v1/events/by-id/${encodeURIComponent(c.id)}`);
      if ('status' in r && r.status === 200) continue;
    }
    missing.push(c);
  }
  const until = Date.now() + DEAD_LAG_MS;
  let left = missing;
  while (left.length > 0) {
    await pub.drainDead();
    left = left.filter((c) => !pub.dead.has(c.id));
    if (Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return left.map((c) => ({
    signature: 'a message RabbitMQ confirmed into herald.ingest was neither stored nor dead-lettered',
    index: c.index,
    input: c.input,
    detail: `message id ${JSON.stringify(c.id)}`,
  }));
}

describe('fuzz: AMQP messages into herald.ingest, router hub on PostgreSQL', () => {
  let hub: FuzzHub | undefined;
  let pub: Awaited<ReturnType<typeof amqpSender>> | undefined;

  before(async () => {
    console.log(
      `# fuzz amqp: seed ${settings.seed} (HERALD_FUZZ_SEED=${settings.seed} reproduces), ${settings.runs} inputs, batch ${settings.batch}`,
    );
    hub = await startFuzzHub('fuzzamqp', settings);
    pub = await amqpSender(hub.fx.vhost.url);
  });
  after(async () => {
    await pub?.close();
    await hub?.close();
  });

  test(`${settings.runs} random and mutated messages; each confirmed one is stored or dead-lettered, and after every ${settings.batch} the hub is ready, stores and delivers a good event, and stays within its memory bound`, async () => {
    const h = hub as FuzzHub;
    const p = pub as NonNullable<typeof pub>;
    let confirmed: Confirmed[] = [];
    const report = await fuzzEdge(
      h,
      {
        name: 'amqp',
        arbitrary: amqpInput,
        async send(input, index) {
          const o = await p.send(input);
          const { messageId, expiration } = input.properties;
          // The id as the hub reads it back: a lone surrogate goes out as the bytes of U+FFFD.
          if (o.tally === 'confirmed' && index >= 0 && typeof messageId === 'string' && messageId !== '' && expiration === undefined)
            confirmed.push({ id: Buffer.from(messageId, 'utf8').toString('utf8'), index, input });
          return o;
        },
        async afterCheck() {
          const found = await accountFor(h.fx.http, p, confirmed);
          confirmed = [];
          return found;
        },
      },
      settings,
    );
    console.log(report.text);
    console.log(`# fuzz amqp: ${p.deadLetters()} dead letters read off herald.dead`);
    assert.ok(report.ok, report.summary);
    assert.ok(report.inputs >= settings.runs);
  });
});
