import { setTimeout as sleep } from 'node:timers/promises';
import { EVENTS_EXCHANGE } from '@herald/core';
import { type ChannelModel, type ConfirmChannel, connect } from 'amqplib';
import type { Logger } from 'pino';
import { HEADERS_DROPPED_HEADER, isEncodingError } from '../ingest/amqp-table.ts';
import type { StoredEvent } from '../store/types.ts';
import { type ForwardMessage, forwardMessage, reducedForwardMessage } from './forward-message.ts';

/** How many forwards without headers are remembered, so each event's warning is logged once. */
const DROPPED_WARNINGS_KEPT = 10_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The dispatcher's confirm channel to `herald.events`, on a connection of its own (so flow control
 * on these publishes never slows ingest's deliveries and acknowledgements).
 *
 * Reconnect: when the connection or channel is lost it reconnects with backoff (100 ms doubling to
 * 5 s, forever) and calls `onReset` with the new generation once the new channel is open; what was
 * published on the old one and not confirmed is the caller's to send again (at least once).
 */
export class EventsChannel {
  private conn: ChannelModel | undefined;
  private ch: ConfirmChannel | undefined;
  private generation = 0;
  private closed = false;
  private reconnecting = false;
  private ready: Promise<void> = Promise.resolve();
  private signalReady: (() => void) | undefined;
  private readonly droppedWarned = new Set<bigint>();
  /** Reconnects since start. */
  reconnects = 0;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    /** Called after a reconnect, once the new channel is open. */
    private readonly onReset: (gen: number) => void,
  ) {}

  /** Connects once; rejects when RabbitMQ cannot be reached (the caller reports it). */
  async start(): Promise<void> {
    await this.open();
  }

  /** Bumped on every new channel: a confirm from an older generation no longer counts. */
  gen(): number {
    return this.generation;
  }

  isConnected(): boolean {
    return this.ch !== undefined;
  }

  /** Resolves once a channel is open (at once when it is). */
  whenConnected(): Promise<void> {
    return this.ready;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.signalReady?.();
    const { ch, conn } = this;
    this.ch = undefined;
    this.conn = undefined;
    await ch?.close().catch(() => undefined);
    await conn?.close().catch(() => undefined);
  }

  /**
   * Drops the channel and reconnects (a nack leaves a channel whose publishes cannot be trusted to
   * have gone out in order).
   */
  reset(why: string): void {
    this.lost(this.generation, why);
  }

  /**
   * Hands the events to the channel now, in order, each with x-herald-offset (and x-herald-replay
   * when `replay` is given), and resolves once RabbitMQ confirmed all of them (one callback shared
   * by the run). Rejects on a nack or when the channel is gone. An event whose headers cannot be
   * published (a log written before the limits were checked at ingest) goes without them, marked
   * `x-herald-headers-dropped`, with one warning, so it never fails the forward; should even that
   * form not encode, it is left out of the flow (it stays in the log).
   */
  publish(events: readonly StoredEvent[], replay?: string): Promise<void> {
    const ch = this.ch;
    if (ch === undefined) return Promise.reject(new Error('RabbitMQ is not connected'));
    if (events.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let left = events.length;
      let failed = false;
      const confirm = (err: unknown) => {
        if (failed) return;
        if (err) {
          failed = true;
          reject(err instanceof Error ? err : new Error(String(err)));
        } else if (--left === 0) resolve();
      };
      try {
        for (const event of events) this.publishOne(ch, event, replay, confirm);
      } catch (err) {
        confirm(err ?? new Error('channel closed'));
      }
    });
  }

  private publishOne(ch: ConfirmChannel, event: StoredEvent, replay: string | undefined, confirm: (err: unknown) => void): void {
    let message: ForwardMessage = forwardMessage(event, replay);
    for (;;) {
      try {
        ch.publish(EVENTS_EXCHANGE, message.routingKey, message.content, message.properties, confirm);
        break;
      } catch (err) {
        if (!isEncodingError(err)) throw err;
        if (message.dropped === undefined) {
          message = reducedForwardMessage(event, replay, `amqplib could not encode it: ${errText(err)}`);
          continue;
        }
        this.log.error(
          { offset: event.offset.toString(), id: event.id, err: errText(err) },
          `an event cannot be published to ${EVENTS_EXCHANGE} even without its headers: left out of the flow, it stays in the log`,
        );
        confirm(undefined);
        return;
      }
    }
    if (message.dropped !== undefined) this.warnDropped(event, message.dropped);
  }

  /** Logs once per event (for the last DROPPED_WARNINGS_KEPT of them) that it went out without its headers. */
  private warnDropped(event: StoredEvent, why: string): void {
    if (this.droppedWarned.has(event.offset)) return;
    if (this.droppedWarned.size >= DROPPED_WARNINGS_KEPT) this.droppedWarned.clear();
    this.droppedWarned.add(event.offset);
    this.log.warn(
      { offset: event.offset.toString(), id: event.id, why },
      `forwarded without its headers, marked ${HEADERS_DROPPED_HEADER}: the event stays whole in the log`,
    );
  }

  private async open(): Promise<void> {
    const conn = await connect(this.url, { noDelay: true, clientProperties: { connection_name: 'herald-hub dispatcher' } });
    conn.on('error', (err) => this.log.warn({ err: errText(err) }, 'RabbitMQ connection error'));
    try {
      const ch = await conn.createConfirmChannel();
      ch.on('error', (err) => this.log.warn({ err: errText(err) }, 'RabbitMQ channel error'));
      await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
      const gen = ++this.generation;
      this.conn = conn;
      this.ch = ch;
      conn.on('close', () => this.lost(gen, 'connection closed'));
      ch.on('close', () => this.lost(gen, 'channel closed'));
    } catch (err) {
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  private lost(gen: number, why: string): void {
    if (this.closed || gen !== this.generation || this.ch === undefined) return;
    const conn = this.conn;
    this.ch = undefined;
    this.conn = undefined;
    this.generation++;
    conn?.close().catch(() => undefined);
    this.ready = new Promise<void>((r) => {
      this.signalReady = r;
    });
    this.log.warn({ why }, `lost RabbitMQ on the ${EVENTS_EXCHANGE} channel; reconnecting (unconfirmed forwards go again)`);
    if (this.reconnecting) return;
    this.reconnecting = true;
    void this.reconnect().finally(() => {
      this.reconnecting = false;
    });
  }

  private async reconnect(): Promise<void> {
    let delay = 100;
    let attempt = 0;
    while (!this.closed) {
      await sleep(delay);
      if (this.closed) return;
      attempt++;
      try {
        await this.open();
        if (this.closed) {
          await this.close();
          return;
        }
        this.reconnects++;
        this.log.info({ attempt }, `reconnected the ${EVENTS_EXCHANGE} channel`);
        this.onReset(this.generation);
        this.signalReady?.();
        return;
      } catch (err) {
        const level = attempt === 1 || attempt % 10 === 0 ? 'warn' : 'debug';
        this.log[level]({ attempt, err: errText(err) }, `reconnect of the ${EVENTS_EXCHANGE} channel failed; retrying`);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }
}
