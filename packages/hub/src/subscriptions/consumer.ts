import { ErrorCodes, HeraldError, ValidationError } from '@herald/core';
import type { SubscriptionStore } from '../store/index.ts';
import { queryMayHaveMore } from '../store/index.ts';
import { READ_MAX_BYTES, type Store, type StoredEvent } from '../store/types.ts';
import type { Sub } from './subscription.ts';
import type { Consumer, DeliveredEvent, SubscriptionMetrics } from './types.ts';

/**
 * An attached consumer's catch-up/live state machine (AttachedConsumer) over one subscription in
 * memory (Sub, subscription.ts). The manager (manager.ts) owns the set of subscriptions and gives
 * each consumer what it reads through ConsumerCore.
 */

export { type AwakeListener, type ReplayJob, Sub } from './subscription.ts';

/** An idle live consumer looks at the log this often (a safety net: a live message may never come). */
export const IDLE_CHECK_MS = 2000;
/** Bytes of event bodies one consumer's live buffer holds at most; beyond, it reads the log instead. */
export const LIVE_BUFFER_MAX_BYTES = 8 * 1024 * 1024;
/** Bytes of event bodies the live buffers of all consumers hold together at most; a buffer that would pass it is dropped. */
export const LIVE_BUFFERS_MAX_BYTES = 256 * 1024 * 1024;

interface Fill {
  events: DeliveredEvent[];
  /** Something changed (mode): fill again at once. */
  again?: boolean;
  /** The log has matching events the horizon keeps back (a pause, dispatch in progress): retry with backoff. */
  stalled?: boolean;
}

/** The manager's internals a consumer uses. */
export interface ConsumerCore {
  readonly store: Pick<Store, 'query' | 'headOffset'>;
  readonly subStore: SubscriptionStore;
  readonly chunk: number;
  readonly liveBufferMax: number;
  /** Bytes of live events buffered by every consumer together, and the most they may hold (DESIGN.md §3.7). */
  readonly liveBytes: { used: number; readonly max: number };
  /** Matching events after `after`, at most `limit`, never past the log horizon (pauses, dispatch). */
  readLog(sub: Sub, after: bigint, limit: number): Promise<StoredEvent[]>;
  readReplay(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]>;
  acked(sub: Sub, offset: bigint): void;
  readonly metrics: SubscriptionMetrics | undefined;
  detach(c: AttachedConsumer): Promise<void>;
  warn(err: unknown, c: AttachedConsumer): void;
}

/**
 * An attached consumer. While active it keeps `position`, the highest offset delivered (≥ acked).
 * Catch-up reads the log after `position` in chunks until a read returns less than a chunk; then it
 * is live: events from the receiver with an offset ≤ position are skipped, and a live batch is
 * delivered from the messages only when it provably leaves no matching event out (its offsets follow
 * on from position without a hole, or one offsets-only log query over the range finds nothing the
 * batch lacks); otherwise the log is read instead.
 */
export class AttachedConsumer implements Consumer {
  readonly active: Promise<void>;
  readonly ended: Promise<string>;
  state: 'standby' | 'active' | 'closed' = 'standby';
  position = 0n;
  private resolveActive!: () => void;
  private rejectActive!: (err: Error) => void;
  private resolveEnded!: (reason: string) => void;
  private mode: 'catchup' | 'live' = 'catchup';
  private chunk: StoredEvent[] = [];
  private chunkFull = false;
  /**
   * Catch-up reads the next chunk while the consumer takes the current one, so the log read and the
   * delivery overlap. Used only when the position is still where it was read from.
   */
  private prefetched: { after: bigint; rows: Promise<StoredEvent[]> } | undefined;
  private live: StoredEvent[] = [];
  /**
   * Bytes of the bodies in `live`, counted in the core's budget too: kept as events come and go
   * (never recounted), so a fill costs no pass over the buffer for its bytes.
   */
  private liveBytes = 0;
  /** The live path saw the log ahead of the batch; if the next log read finds nothing, it is held back. */
  private gapPending = false;
  /** Live events up to here were dropped (buffer overflow): the log must be read up to here before going live. */
  private dropped = 0n;
  /** When the log was last read (an idle live consumer looks again after IDLE_CHECK_MS). */
  private lastRead = 0;
  private stallMs = 20;
  /** While held back (stalled), live events do not wake the consumer before this time: no query storm. */
  private quietUntil = 0;
  /** Delivered, not yet acknowledged offsets, in delivery order (replayed ones included). */
  private inflight: bigint[] = [];
  private replaysInFlight = 0;
  private wake: (() => void) | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly core: ConsumerCore,
    readonly sub: Sub,
    readonly label: string,
    readonly maxInFlight: number,
    /** The client's Last-Event-ID (SSE): acknowledged when this consumer becomes active. */
    private readonly resumeAfter: bigint | undefined = undefined,
  ) {
    this.active = new Promise<void>((resolve, reject) => {
      this.resolveActive = resolve;
      this.rejectActive = reject;
    });
    this.active.catch(() => undefined);
    this.ended = new Promise<string>((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  get name(): string {
    return this.sub.name;
  }

  /** Live events waiting in this consumer's buffer (what monitoring shows of its receiver). */
  get buffered(): number {
    return this.live.length;
  }

  activate(): void {
    this.state = 'active';
    // The client says it has everything up to here: that is an ack, and it resumes after it.
    if (this.resumeAfter !== undefined) this.core.acked(this.sub, this.resumeAfter);
    this.position = this.sub.acked;
    this.mode = 'catchup';
    this.setLive([], 0);
    this.chunk = [];
    this.prefetched = undefined;
    this.dropped = 0n;
    this.gapPending = false;
    this.resolveActive();
  }

  /** The hub ends this consumer (deleted, stopping). */
  end(reason: string): void {
    if (this.state === 'closed') return;
    const wasStandby = this.state === 'standby';
    this.state = 'closed';
    if (wasStandby) this.rejectActive(new HeraldError(ErrorCodes.CLOSED, `consumer ended: ${reason}`));
    this.resolveEnded(reason);
    this.setLive([], 0);
    this.chunk = [];
    this.prefetched = undefined;
    this.wake?.();
  }

  /** Replaces the live buffer with `list` of `bytes` bytes of bodies, moving the hub's budget by the difference. */
  private setLive(list: StoredEvent[], bytes: number): void {
    this.core.liveBytes.used += bytes - this.liveBytes;
    this.liveBytes = bytes;
    this.live = list;
  }

  onLive(events: readonly StoredEvent[]): void {
    if (this.state !== 'active') return;
    let added = 0;
    for (const e of events)
      if (e.offset > this.position) {
        this.live.push(e);
        added += e.data.length;
      }
    this.liveBytes += added;
    this.core.liveBytes.used += added;
    // Too many, too large, or the hub's budget for every buffer spent: the log has them all.
    const budget = this.core.liveBytes;
    if (this.live.length > this.core.liveBufferMax || this.liveBytes > LIVE_BUFFER_MAX_BYTES || budget.used > budget.max) {
      for (const e of this.live) if (e.offset > this.dropped) this.dropped = e.offset;
      this.setLive([], 0);
      this.mode = 'catchup';
    }
    if (this.quietUntil === 0 || Date.now() >= this.quietUntil) this.wake?.();
  }

  /** Drops the live events at or below `offset`, counting their bytes out. */
  private trimLive(offset: bigint): void {
    let gone = 0;
    const kept = this.live.filter((e) => {
      if (e.offset > offset) return true;
      gone += e.data.length;
      return false;
    });
    this.setLive(kept, this.liveBytes - gone);
  }

  /** The receivers reconnected: what was published meanwhile is in the log only. */
  reset(): void {
    if (this.state !== 'active') return;
    this.mode = 'catchup';
    this.wake?.();
  }

  next(max: number, signal?: AbortSignal): Promise<DeliveredEvent[]> {
    const run = this.chain.then(() => this.doNext(max, signal));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async doNext(max: number, signal?: AbortSignal): Promise<DeliveredEvent[]> {
    if (this.state === 'standby' && !signal?.aborted) {
      // A standby waits until it takes over, is ended, or the caller gives up.
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener('abort', done);
          resolve();
        };
        signal?.addEventListener('abort', done, { once: true });
        this.active.then(done, done);
      });
    }
    const want = Math.max(1, Math.trunc(max) || 1);
    for (;;) {
      if (this.state !== 'active' || signal?.aborted) return [];
      const room = Math.min(want, this.maxInFlight - (this.inflight.length - this.inflightHead));
      let waitMs = IDLE_CHECK_MS;
      if (room > 0) {
        let r: Fill;
        try {
          r = await this.fill(room);
        } catch (err) {
          if (this.state !== 'active') return [];
          // The store failed: keep the consumer, try again with backoff (its position is unchanged).
          this.core.warn(err, this);
          r = { events: [], stalled: true };
        }
        if (this.state !== 'active') return [];
        if (r.events.length > 0) {
          this.stallMs = 20;
          this.quietUntil = 0;
          this.delivered(r.events);
          return r.events;
        }
        if (r.again) continue;
        if (r.stalled) {
          waitMs = this.stallMs;
          // Held back for a while (a pause): live events stop waking it, so it asks the store at
          // most a few times a second; a short hold (dispatch in progress) still wakes at once.
          if (waitMs >= 80) this.quietUntil = Date.now() + waitMs;
          this.stallMs = Math.min(this.stallMs * 2, 500);
        }
      }
      await this.sleep(waitMs, signal);
    }
  }

  /** Resolves after `ms`, when woken (live events, acks, close) or aborted. */
  private sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      this.wake = done;
      signal?.addEventListener('abort', done, { once: true });
      timer = setTimeout(done, ms);
    });
  }

  private inflightHead = 0;

  private delivered(events: readonly DeliveredEvent[]): void {
    if (events.length > 0) this.core.metrics?.deliveredTo(this.sub.name, events.length);
    for (const e of events) {
      this.inflight.push(e.offset);
      if (e.replay !== undefined) this.replaysInFlight++;
      else if (e.offset > this.position) this.position = e.offset;
    }
  }

  private async fill(room: number): Promise<Fill> {
    const core = this.core;
    const sub = this.sub;
    if (sub.replays.length > 0) {
      const replayed = await core.readReplay(sub, room, this.position);
      if (replayed.length > 0) return { events: replayed };
    }
    if (this.mode === 'catchup') {
      if (this.chunk.length === 0) {
        const pre = this.prefetched;
        this.prefetched = undefined;
        const from = this.position;
        const rows = await (pre && pre.after === from ? pre.rows : this.readChunk(from));
        if (this.state !== 'active') return { events: [] };
        // An ack through another transport moved this consumer past what it read (skipTo).
        if (this.position !== from) return { events: [], again: true };
        this.lastRead = Date.now();
        this.chunk = rows;
        this.chunkFull = queryMayHaveMore({ limit: core.chunk, maxBytes: READ_MAX_BYTES }, rows);
        if (this.chunkFull) {
          const after = (rows[rows.length - 1] as StoredEvent).offset;
          const next = this.readChunk(after);
          next.catch(() => undefined); // a failure surfaces when the chunk is used, and is retried there
          this.prefetched = { after, rows: next };
        }
        if (rows.length === 0) {
          if (this.position < this.dropped) return { events: [], stalled: true }; // not dispatched yet: soon
          this.mode = 'live';
          if (this.gapPending) {
            this.gapPending = false;
            return { events: [], stalled: true };
          }
          return { events: [], again: this.live.length > 0 };
        }
      }
      this.gapPending = false;
      const take = this.chunk.length <= room ? this.chunk : this.chunk.slice(0, room);
      this.chunk = this.chunk.length <= room ? [] : this.chunk.slice(room);
      const last = (take[take.length - 1] as StoredEvent).offset;
      if (this.chunk.length === 0 && !this.chunkFull && last >= this.dropped) this.mode = 'live';
      return { events: take };
    }
    // live
    const position = this.position;
    let live = this.live;
    let sorted = true;
    let keep = 0;
    let gone = 0;
    for (let i = 0; i < live.length; i++) {
      const e = live[i] as StoredEvent;
      if (e.offset <= position) {
        gone += e.data.length;
        continue;
      }
      if (keep > 0 && e.offset <= (live[keep - 1] as StoredEvent).offset) sorted = false;
      live[keep++] = e;
    }
    live.length = keep;
    this.setLive(live, this.liveBytes - gone);
    if (keep === 0) {
      if (Date.now() - this.lastRead < IDLE_CHECK_MS) return { events: [] };
      // Idle: look at the log now and then, in case a live message never comes.
      this.mode = 'catchup';
      return { events: [], again: true };
    }
    if (!sorted) {
      live.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
      const all = live;
      let twice = 0;
      live = all.filter((e, i) => {
        if (i === 0 || e.offset !== (all[i - 1] as StoredEvent).offset) return true;
        twice += e.data.length;
        return false;
      });
      this.setLive(live, this.liveBytes - twice);
    }
    const batch = live.slice(0, room);
    const last = (batch[batch.length - 1] as StoredEvent).offset;
    let contiguous = (batch[0] as StoredEvent).offset === position + 1n;
    for (let i = 1; contiguous && i < batch.length; i++)
      contiguous = (batch[i] as StoredEvent).offset === (batch[i - 1] as StoredEvent).offset + 1n;
    if (!contiguous) {
      // One offsets-only query for the whole batch: does the log have a matching offset it lacks?
      const inLog = await core.subStore.offsets(sub.selector, position, last, batch.length + 1);
      if (this.state !== 'active' || this.position !== position) return { events: [], again: true };
      const have = new Set(batch.map((e) => e.offset));
      if (inLog.length > batch.length || inLog.some((o) => !have.has(o))) {
        // Overflow (drop-head), a pause, a lost connection: the log has what the queue lost.
        this.mode = 'catchup';
        this.gapPending = true;
        return { events: [], again: true };
      }
    }
    // (events may have arrived during the query: keep those above the batch)
    this.trimLive(last);
    return { events: batch };
  }

  /** One catch-up read. */
  private readChunk(after: bigint): Promise<StoredEvent[]> {
    return this.core.readLog(this.sub, after, this.core.chunk);
  }

  ack(offset: bigint): void {
    if (typeof offset !== 'bigint' || offset < 0n)
      throw new ValidationError(ErrorCodes.INVALID_REQUEST, `invalid ack offset ${String(offset)}`, { details: { parameter: 'offset' } });
    if (offset > this.position)
      throw new ValidationError(ErrorCodes.INVALID_REQUEST, `ack ${offset} is above the last delivered offset ${this.position}`, {
        details: { parameter: 'offset', offset: offset.toString(), delivered: this.position.toString() },
      });
    this.trimInflight(offset);
    this.core.acked(this.sub, offset);
    this.wake?.();
  }

  release(offset: bigint): void {
    this.trimInflight(offset);
    this.wake?.();
  }

  /**
   * An ack through another transport (HTTP) above what this consumer delivered: events another
   * consumer (an HTTP pull before this one attached) got and the client now says are done. They are
   * acknowledged, and this consumer moves past them instead of delivering them (it reads the log
   * from there on).
   */
  skipTo(offset: bigint): void {
    this.trimInflight(offset);
    this.core.acked(this.sub, offset);
    if (this.state !== 'active' || offset <= this.position) return;
    this.position = offset;
    this.mode = 'catchup';
    this.chunk = [];
    this.prefetched = undefined;
    this.trimLive(offset);
    if (this.dropped <= offset) this.dropped = 0n;
    this.wake?.();
  }

  /** Acknowledgements through another path (HTTP ack) free the window too. */
  trimInflight(offset: bigint): void {
    const f = this.inflight;
    while (this.inflightHead < f.length && (f[this.inflightHead] as bigint) <= offset) this.inflightHead++;
    if (this.replaysInFlight > 0) {
      const rest = f.slice(this.inflightHead).filter((o) => o > offset);
      this.replaysInFlight = Math.min(this.replaysInFlight, rest.length);
      this.inflight = rest;
      this.inflightHead = 0;
    } else if (this.inflightHead > 1024 && this.inflightHead * 2 > f.length) {
      this.inflight = f.slice(this.inflightHead);
      this.inflightHead = 0;
    }
    if (this.inflightHead === this.inflight.length && this.replaysInFlight > 0) this.replaysInFlight = 0;
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasStandby = this.state === 'standby';
    this.state = 'closed';
    if (wasStandby) this.rejectActive(new HeraldError(ErrorCodes.CLOSED, 'consumer closed before it became active'));
    this.resolveEnded('closed');
    this.setLive([], 0);
    this.chunk = [];
    this.prefetched = undefined;
    this.wake?.();
    await this.core.detach(this);
  }
}
