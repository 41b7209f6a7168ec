import { type AmqpProperties, ErrorCodes, HeraldError, INGEST_EXCHANGE, wireTopology } from '@herald/core';
import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { later, type ManagedConnection, openConnection } from '../connection.ts';
import type { NormalizedConnection } from '../options.ts';
import { applyTopology } from '../topology.ts';

/** One message of a round, as toAmqp made it. */
export interface SinkMessage {
  readonly routingKey: string;
  readonly content: Buffer;
  readonly properties: AmqpProperties;
}

/**
 * What became of one message: confirmed; refused by RabbitMQ because of what was published (a
 * nack, or the channel closed over it: worth counting against the row); or lost on the way (the
 * connection or channel went away, a timeout, the exchange is missing: nothing the row did).
 */
export type Outcome = { readonly ok: true } | { readonly ok: false; readonly refused: boolean; readonly reason: string };

const CONFIRMED: Outcome = { ok: true };
/** The message amqplib gives a confirm callback on a nack. */
const NACKED = 'message nacked';
const MISSING_EXCHANGE = `exchange ${INGEST_EXCHANGE} does not exist: run \`herald topology\` or start the hub`;

/**
 * The relay's way to RabbitMQ: one recovering connection and one confirm channel on it, reopened
 * after every loss. A round is published with pipelined confirms and settles once every message
 * has an outcome; nothing is re-sent here, since the outbox table is the relay's buffer.
 */
export class AmqpSink {
  private readonly conn: ManagedConnection;
  private ch: ConfirmChannel | undefined;
  /** The server's reason when it closed the current channel. */
  private channelError: (Error & { code?: number }) | undefined;
  private closed = false;
  private failures = 0;
  private readyWaiters: (() => void)[] = [];

  constructor(
    private readonly s: NormalizedConnection & { declareTopology: boolean; confirmTimeoutMs: number },
    private readonly report: (err: HeraldError) => void,
  ) {
    this.conn = openConnection(s, { onConnect: (model) => void this.attach(model), report });
  }

  get ready(): boolean {
    return this.ch !== undefined;
  }

  /** Resolves when a channel is up, or after `ms`. */
  waitReady(ms: number): Promise<void> {
    if (this.ch || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = later(ms, done);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.readyWaiters.push(done);
    });
  }

  /** Publishes `messages` in order on the current channel and resolves with each one's outcome. */
  async publish(messages: readonly SinkMessage[]): Promise<Outcome[]> {
    const ch = this.ch;
    const outcomes: (Outcome | undefined)[] = new Array(messages.length);
    if (!ch) return messages.map(() => ({ ok: false, refused: false, reason: 'no channel to RabbitMQ' }));
    let settle: () => void = () => undefined;
    let left = messages.length;
    const all = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const set = (i: number, o: Outcome) => {
      if (outcomes[i] !== undefined) return;
      outcomes[i] = o;
      if (--left === 0) settle();
    };
    const timer = later(this.s.confirmTimeoutMs, () => {
      for (let i = 0; i < messages.length; i++)
        set(i, { ok: false, refused: false, reason: `not confirmed within ${this.s.confirmTimeoutMs} ms` });
    });
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as SinkMessage;
      let room: boolean;
      try {
        room = ch.publish(INGEST_EXCHANGE, m.routingKey, m.content, m.properties as Options.Publish, (err) =>
          set(i, err ? this.outcomeOf(err) : CONFIRMED),
        );
      } catch (err) {
        // The channel is closing: this and the rest never went out.
        for (let j = i; j < messages.length; j++) set(j, { ok: false, refused: false, reason: (err as Error).message });
        break;
      }
      if (!room && i < messages.length - 1) {
        await new Promise<void>((resolve) => {
          const go = () => {
            ch.off('drain', go);
            ch.off('close', go);
            resolve();
          };
          ch.on('drain', go);
          ch.on('close', go);
        });
      }
    }
    if (left > 0) await all;
    clearTimeout(timer);
    return outcomes as Outcome[];
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeReady();
    const ch = this.ch;
    this.ch = undefined;
    await ch?.close().catch(() => undefined);
    await this.conn.close();
  }

  private outcomeOf(err: Error): Outcome {
    if (err.message === NACKED) return { ok: false, refused: true, reason: 'RabbitMQ refused the event (nack)' };
    const server = this.channelError;
    if (server && server.code !== 404)
      return { ok: false, refused: true, reason: `RabbitMQ closed the publish channel: ${server.message}` };
    return { ok: false, refused: false, reason: server ? MISSING_EXCHANGE : `connection lost: ${err.message}` };
  }

  private wakeReady(): void {
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) w();
  }

  private async attach(model: ChannelModel): Promise<void> {
    const stale = () => this.closed || model !== this.conn.current;
    try {
      const probe = await model.createChannel();
      probe.on('error', () => undefined);
      if (this.s.declareTopology) await applyTopology(probe, wireTopology('router'));
      else {
        try {
          await probe.checkExchange(INGEST_EXCHANGE);
        } catch (cause) {
          if ((cause as { code?: number }).code === 404) throw new HeraldError(ErrorCodes.PUBLISH_FAILED, MISSING_EXCHANGE, { cause });
          throw cause;
        }
      }
      await probe.close().catch(() => undefined);
      const ch = await model.createConfirmChannel();
      if (stale()) {
        await ch.close().catch(() => undefined);
        return;
      }
      ch.on('error', (err: Error & { code?: number }) => {
        this.channelError = err;
        this.report(new HeraldError(ErrorCodes.PUBLISH_FAILED, `RabbitMQ closed the publish channel: ${err.message}`, { cause: err }));
      });
      ch.on('close', () => {
        const failed = this.channelError !== undefined;
        // Confirm callbacks run before 'close'; the reason is no longer needed after it.
        this.channelError = undefined;
        if (this.ch === ch) this.ch = undefined;
        // A channel error leaves the connection up: open a new channel on it. A dropped
        // connection closes its channels first; recovery's 'connect' will attach again.
        if (failed) this.retry(model);
      });
      this.ch = ch;
      this.failures = 0;
      this.wakeReady();
    } catch (err) {
      if (stale()) return;
      this.report(
        err instanceof HeraldError
          ? err
          : new HeraldError(ErrorCodes.PUBLISH_FAILED, `cannot open a publish channel: ${(err as Error).message}`, { cause: err }),
      );
      this.retry(model);
    }
  }

  private retry(model: ChannelModel): void {
    const delay = Math.min(this.s.reconnectMaxDelayMs, this.s.reconnectInitialDelayMs * 2 ** this.failures++);
    later(delay, () => {
      if (!this.closed && model === this.conn.current && !this.ch) void this.attach(model);
    });
  }
}
