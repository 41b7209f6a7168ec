import { setTimeout as sleep } from 'node:timers/promises';
import { compileMatcher, ErrorCodes, HeraldError, isUuid, uuidv7 } from '@herald/core';
import { type Logger, pino } from 'pino';
import { CAPS, capReached } from '../caps/index.ts';
import {
  DEFAULT_MAX_PAUSE_TTL_MS,
  type HoldRule,
  normalizePauseInput,
  type Pause,
  type PauseInput,
  type PauseLimits,
  partitionHeld,
} from '../pauses/index.ts';
import { normalizeReplayInput, type Replay, type ReplayInput, resolveReplayRange } from '../replays/index.ts';
import { type HeldStore, type PauseStore, queryMayHaveMore, READ_MAX_BYTES, type ReplayStore, type StoredEvent } from '../store/index.ts';
import { loadEvents } from './load-events.ts';
import type { Dispatcher, DispatcherOptions, DispatcherStats, Forward, PauseView } from './types.ts';

export type { Dispatcher, DispatcherOptions, DispatcherStats, Forward, PauseView } from './types.ts';

/** Creates a dispatcher. Nothing happens before start() or the first dispatch(). */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  return new SerialDispatcher(options);
}

/** setTimeout's limit is about 24.8 days; a far expiry is re-armed. */
const MAX_TIMER_MS = 3600_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface ReplayState {
  replay: Replay;
  position: bigint;
  count: number;
}

class SerialDispatcher implements Dispatcher {
  private readonly pauses: PauseStore;
  private readonly heldStore: HeldStore;
  private readonly replayStore: ReplayStore;
  private readonly store: DispatcherOptions['store'];
  private readonly forward: Forward;
  private readonly log: Logger;
  private readonly limits: PauseLimits;
  private readonly chunk: number;

  private chain: Promise<unknown> = Promise.resolve();
  private starting: Promise<void> | undefined;
  private stopped = false;
  /** Pauses whose release is not finished: active ones, and ended ones still releasing. */
  private holding: Pause[] = [];
  private rules: HoldRule[] = [];
  private releasePending = false;
  /** The release pass has released every releasable held event up to here. */
  private releaseCursor = 0n;
  private replays: ReplayState[] = [];
  private bgScheduled = false;
  private bgTimer: NodeJS.Timeout | undefined;
  private bgDelay = 100;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** The highest offset given to dispatch() by this process. */
  private highWater: bigint | undefined;
  private readonly counters = { dispatched: 0, forwarded: 0, held: 0, released: 0, replayed: 0 };

  constructor(o: DispatcherOptions) {
    this.pauses = o.store.pauses;
    this.heldStore = o.store.held;
    this.replayStore = o.store.replays;
    this.store = o.store;
    this.forward = o.forward;
    this.log = (o.logger ?? pino({ level: 'silent' })).child({ part: 'dispatcher' });
    this.limits = o.limits ?? {};
    this.chunk = o.chunkSize ?? 2000;
  }

  stats(): DispatcherStats {
    return { ...this.counters, holding: this.holding.length, replays: this.replays.length };
  }

  /** Runs `fn` after everything queued before it: the one serialization point. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.stopped) return Promise.reject(new HeraldError(ErrorCodes.CLOSED, 'the dispatcher is stopped'));
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  start(): Promise<void> {
    this.starting ??= this.serial(async () => {
      const now = Date.now();
      const expired = await this.pauses.endExpired(now);
      const orphans = await this.pauses.endForFinishedReplays(now);
      this.holding = await this.pauses.loadHolding();
      this.replays = (await this.replayStore.listUnfinished()).map((replay) => ({
        replay,
        position: replay.position,
        count: replay.count,
      }));
      this.rebuildRules();
      // Held events whose pauses ended while the hub was down (or a release cut short) go out now.
      this.releasePending = true;
      this.releaseCursor = 0n;
      this.armExpiry();
      this.log.info(
        { holding: this.holding.length, expired: expired.length + orphans.length, replays: this.replays.length },
        'dispatcher started',
      );
    }).then(() => this.kick());
    this.starting.catch(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  async dispatch(events: readonly StoredEvent[]): Promise<void> {
    const { confirmed } = await this.publish(events);
    await confirmed;
  }

  async publish(events: readonly StoredEvent[]): Promise<{ confirmed: Promise<void> }> {
    if (events.length === 0) return { confirmed: Promise.resolve() };
    if (!this.starting) await this.start();
    return this.serial(async () => {
      const { forward, hold } = partitionHeld(events, this.rules);
      // Held rows first: a failure writing them forwards nothing, and the retry does it all again.
      if (hold.length > 0) await this.heldStore.add(hold);
      const confirmed = forward.length > 0 ? this.forward(forward) : Promise.resolve();
      this.counters.dispatched += events.length;
      this.counters.forwarded += forward.length;
      this.counters.held += hold.length;
      const last = (events[events.length - 1] as StoredEvent).offset;
      if (this.highWater === undefined || last > this.highWater) this.highWater = last;
      // A re-dispatched (older) event held behind the release pass must not be skipped by it.
      const firstHeld = hold[0];
      if (firstHeld && this.releasePending && firstHeld.offset <= this.releaseCursor) this.releaseCursor = firstHeld.offset - 1n;
      return { confirmed };
    });
  }

  // ---- pauses -----------------------------------------------------------------------------

  private rebuildRules(): void {
    this.rules = this.holding.map((p) => ({ id: p.id, matches: compileMatcher(p.selector) }));
  }

  private async view(p: Pause): Promise<PauseView> {
    const held = p.releasedAt === undefined ? await this.heldStore.count(p.selector) : 0;
    return { ...p, held };
  }

  async createPause(input: PauseInput): Promise<PauseView> {
    const { selector, ttlMs, reason } = normalizePauseInput(input, this.limits);
    if (!this.starting) await this.start();
    return this.serial(async () => {
      const maxActive = this.limits.maxActive ?? CAPS.pauses.default;
      let active = 0;
      for (const p of this.holding) if (p.replayId === undefined && p.endedAt === undefined) active++;
      if (active >= maxActive) throw capReached('pauses', maxActive);
      const now = Date.now();
      const pause: Pause = {
        id: uuidv7(),
        selector,
        reason,
        replayId: undefined,
        createdAt: now,
        expiresAt: now + ttlMs,
        endedAt: undefined,
        releasedAt: undefined,
      };
      await this.pauses.insert(pause);
      this.holding.push(pause);
      this.rebuildRules();
      this.armExpiry();
      this.log.info({ pause: pause.id, selector: selector.canonical, ttlMs, reason }, 'pause created');
      return { ...pause, held: 0 };
    });
  }

  async listPauses(): Promise<PauseView[]> {
    const list = await this.pauses.listUnreleased();
    return Promise.all(list.map((p) => this.view(p)));
  }

  async getPause(id: string): Promise<PauseView | undefined> {
    if (!isUuid(id)) return undefined;
    const p = await this.pauses.get(id);
    return p && p.replayId === undefined ? this.view(p) : undefined;
  }

  async resume(id: string): Promise<PauseView> {
    if (!isUuid(id)) throw new HeraldError(ErrorCodes.NOT_FOUND, `no pause ${id}`, { details: { id } });
    if (!this.starting) await this.start();
    return this.serial(async () => {
      const ended = await this.pauses.end(id, Date.now());
      if (!ended) {
        const existing = await this.pauses.get(id);
        if (!existing || existing.replayId !== undefined)
          throw new HeraldError(ErrorCodes.NOT_FOUND, `no pause ${id}`, { details: { id } });
        return this.view(existing);
      }
      this.markEnded([ended.id], ended.endedAt as number);
      this.log.info({ pause: id }, 'pause ended (resume): releasing its held events');
      return this.view(ended);
    }).finally(() => this.kick());
  }

  /** Pauses that ended keep holding until their release pass finishes. */
  private markEnded(ids: readonly string[], at: number): void {
    if (ids.length === 0) return;
    const set = new Set(ids);
    this.holding = this.holding.map((p) => (set.has(p.id) && p.endedAt === undefined ? { ...p, endedAt: at } : p));
    this.releasePending = true;
    this.releaseCursor = 0n;
    this.armExpiry();
  }

  private armExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.stopped) return;
    let next: number | undefined;
    for (const p of this.holding) if (p.endedAt === undefined && (next === undefined || p.expiresAt < next)) next = p.expiresAt;
    if (next === undefined) return;
    const delay = Math.min(Math.max(0, next - Date.now()), MAX_TIMER_MS);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.serial(() => this.expire())
        .catch((err) => {
          this.log.error({ err: errText(err) }, 'could not end expired pauses; retrying in 1 s');
          if (!this.stopped) this.expiryTimer = setTimeout(() => this.armExpiry(), 1000);
        })
        .finally(() => this.kick());
    }, delay);
    this.expiryTimer.unref();
  }

  private async expire(): Promise<void> {
    const now = Date.now();
    const ids = await this.pauses.endExpired(now);
    const set = new Set(ids);
    for (const p of this.holding) {
      if (!set.has(p.id)) continue;
      if (p.replayId !== undefined) {
        const r = this.replays.find((s) => s.replay.id === p.replayId);
        if (r) {
          await this.replayStore.finish(r.replay.id, 'failed', now, 'the replay did not finish before its pause expired');
          this.replays = this.replays.filter((s) => s !== r);
          this.log.error({ replay: r.replay.id }, 'replay stopped: it did not finish before its pause expired');
        }
      } else this.log.info({ pause: p.id, selector: p.selector.canonical }, 'pause expired: releasing its held events');
    }
    this.markEnded(ids, now);
    this.armExpiry();
  }

  // ---- replays ----------------------------------------------------------------------------

  async createReplay(input: ReplayInput): Promise<Replay> {
    const req = normalizeReplayInput(input);
    if (!this.starting) await this.start();
    return this.serial(async () => {
      const now = Date.now();
      const head = this.highWater ?? (await this.store.headOffset());
      const { after, upTo, since, until } = await resolveReplayRange(this.store, req, head);
      const replay: Replay = {
        id: uuidv7(),
        selector: req.selector,
        from: req.from,
        to: req.to,
        target: req.target,
        status: 'pending',
        count: 0,
        after,
        upTo,
        since,
        until,
        position: after,
        createdAt: now,
        finishedAt: undefined,
        error: undefined,
      };
      const pause: Pause = {
        id: uuidv7(),
        selector: req.selector,
        reason: `replay ${replay.id}`,
        replayId: replay.id,
        createdAt: now,
        expiresAt: now + (this.limits.maxTtlMs ?? DEFAULT_MAX_PAUSE_TTL_MS),
        endedAt: undefined,
        releasedAt: undefined,
      };
      await this.replayStore.insert(replay, pause);
      this.holding.push(pause);
      this.rebuildRules();
      this.armExpiry();
      this.replays.push({ replay, position: after, count: 0 });
      this.log.info({ replay: replay.id, selector: req.selector.canonical, after: String(after), upTo: String(upTo) }, 'replay created');
      return replay;
    }).finally(() => this.kick());
  }

  async getReplay(id: string): Promise<Replay | undefined> {
    if (!isUuid(id)) return undefined;
    return this.replayStore.get(id);
  }

  async cancelReplay(id: string): Promise<Replay | undefined> {
    if (!isUuid(id)) return undefined;
    if (!this.starting) await this.start();
    // On the serial queue: the chunk in progress is confirmed before this runs, and no step follows.
    return this.serial(async () => {
      const s = this.replays.find((x) => x.replay.id === id);
      if (s) {
        const now = Date.now();
        await this.replayStore.finish(id, 'cancelled', now);
        this.replays = this.replays.filter((x) => x !== s);
        this.markEnded(
          this.holding.filter((p) => p.replayId === id).map((p) => p.id),
          now,
        );
        this.log.info({ replay: id, count: s.count }, 'replay cancelled');
      }
      return this.replayStore.get(id);
    }).finally(() => this.kick());
  }

  // ---- background: releases and replays, one chunk per step --------------------------------

  private kick(): void {
    if (this.bgScheduled || this.bgTimer || this.stopped) return;
    if (!this.releasePending && this.replays.length === 0) return;
    this.bgScheduled = true;
    this.serial(() => this.step()).then(
      () => {
        this.bgScheduled = false;
        this.bgDelay = 100;
        this.kick();
      },
      (err) => {
        this.bgScheduled = false;
        if (this.stopped) return;
        this.log.error({ err: errText(err), retryInMs: this.bgDelay }, 'release or replay step failed; retrying');
        this.bgTimer = setTimeout(() => {
          this.bgTimer = undefined;
          this.kick();
        }, this.bgDelay);
        this.bgTimer.unref();
        this.bgDelay = Math.min(this.bgDelay * 2, 5000);
      },
    );
  }

  private async step(): Promise<void> {
    if (this.releasePending) return this.releaseStep();
    const r = this.replays[0];
    if (r) return this.replayStep(r);
  }

  private async releaseStep(): Promise<void> {
    const active = this.holding.filter((p) => p.endedAt === undefined).map((p) => p.selector);
    const rows = await this.heldStore.releasable(active, this.releaseCursor, this.chunk);
    if (rows.length > 0) {
      const offsets = rows.map((r) => r.offset);
      const events = await loadEvents(this.store, offsets, rows);
      await this.forward(events);
      // Deleted only once confirmed: a crash in between releases them again (at least once).
      await this.heldStore.remove(offsets);
      this.releaseCursor = offsets[offsets.length - 1] as bigint;
      this.counters.released += rows.length;
    }
    if (rows.length < this.chunk) {
      const done = this.holding.filter((p) => p.endedAt !== undefined);
      await this.pauses.markReleased(
        done.map((p) => p.id),
        Date.now(),
      );
      this.holding = this.holding.filter((p) => p.endedAt === undefined);
      this.rebuildRules();
      this.releasePending = false;
      this.releaseCursor = 0n;
      if (done.length > 0) this.log.info({ pauses: done.map((p) => p.id), released: this.counters.released }, 'release finished');
    }
  }

  /**
   * One chunk of a replay into the flow. It re-sends only what the flow already released: an event
   * of its range still held by a pause (held_events) is left out, since it has not gone out once
   * yet; it goes out once, live and unmarked, when its pauses end (the replay's own pause holds it
   * until the replay is done, so the set of held events in the range does not change meanwhile).
   */
  private async replayStep(s: ReplayState): Promise<void> {
    const r = s.replay;
    // Bounded in bytes too: a chunk of 1,000 events of 1 MiB would be a gigabyte.
    const query = {
      selector: r.selector,
      after: s.position,
      upTo: r.upTo,
      since: r.since,
      until: r.until,
      limit: this.chunk,
      maxBytes: READ_MAX_BYTES,
    };
    const rows = await this.store.query(query);
    if (rows.length > 0) {
      const held = await this.heldStore.heldAmong(rows.map((e) => e.offset));
      const events = held.size === 0 ? rows : rows.filter((e) => !held.has(e.offset));
      if (events.length > 0) await this.forward(events, { replay: r.id });
      s.position = (rows[rows.length - 1] as StoredEvent).offset;
      s.count += events.length;
      this.counters.replayed += events.length;
      await this.replayStore.progress(r.id, s.position, s.count);
    }
    if (!queryMayHaveMore(query, rows)) {
      const now = Date.now();
      await this.replayStore.finish(r.id, 'done', now);
      this.replays = this.replays.filter((x) => x !== s);
      const own = this.holding.filter((p) => p.replayId === r.id).map((p) => p.id);
      this.markEnded(own, now);
      this.log.info({ replay: r.id, count: s.count }, 'replay done');
    }
  }

  async idle(): Promise<void> {
    for (;;) {
      await this.chain;
      if (!this.releasePending && this.replays.length === 0 && !this.bgScheduled) return;
      await sleep(10);
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.bgTimer) clearTimeout(this.bgTimer);
    this.expiryTimer = undefined;
    this.bgTimer = undefined;
    await this.chain;
  }
}
