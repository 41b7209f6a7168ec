import { ErrorCodes, HeraldError, ValidationError } from '@herald/core';
import type { Store, StoredEvent } from '../store/types.ts';
import type { Sub } from './consumer.ts';
import type { DeliveredEvent } from './types.ts';

/** A subscription counts as active this long after an HTTP pull or ack. */
export const HTTP_ACTIVE_MS = 30_000;
/** Events one pull returns at most. */
const MAX_PULL = 10_000;

/** What an HTTP pull and ack need of the manager. */
export interface PullCore {
  readonly store: Pick<Store, 'headOffset'>;
  /** The subscription of that name now, if any. */
  current(name: string): Sub | undefined;
  stopped(): boolean;
  readLog(sub: Sub, after: bigint, limit: number): Promise<StoredEvent[]>;
  readReplay(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]>;
  acked(sub: Sub, offset: bigint): void;
}

/** An attached consumer owns the subscription's position: no pull meanwhile. */
export function conflictIfAttached(sub: Sub): void {
  if (sub.active)
    throw new HeraldError(ErrorCodes.CONFLICT, `subscription ${sub.name} has an active consumer (${sub.active.label})`, {
      details: { name: sub.name, consumer: sub.active.label },
    });
}

/**
 * One HTTP pull (DESIGN.md §3.5): the events after the acknowledged offset, replays first, waiting
 * up to `waitMs` for one. Pulls of a subscription run one after the other; a pull delivers what it
 * reads, and the next pull reads again from the acknowledged offset (at least once).
 */
export function pull(core: PullCore, sub: Sub, opts: { max: number; waitMs: number; signal?: AbortSignal }): Promise<DeliveredEvent[]> {
  conflictIfAttached(sub);
  const max = Math.max(1, Math.min(Math.trunc(opts.max) || 1, MAX_PULL));
  const deadline = Date.now() + Math.max(0, opts.waitMs);
  const run = sub.pulling.then(async () => {
    for (;;) {
      conflictIfAttached(sub);
      if (core.current(sub.name) !== sub) throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${sub.name}`);
      sub.httpUntil = Date.now() + HTTP_ACTIVE_MS;
      if (sub.replays.length > 0) {
        const replayed = await core.readReplay(sub, max, sub.acked);
        if (replayed.length > 0) return replayed;
      }
      const rows = await core.readLog(sub, sub.acked, max);
      if (rows.length > 0) return rows as DeliveredEvent[];
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted || core.stopped()) return [];
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          sub.waiters.delete(done);
          opts.signal?.removeEventListener('abort', done);
          resolve();
        };
        // Woken by a live event of the selector; the log is looked at again at least every second.
        const timer = setTimeout(done, Math.min(left, 1000));
        sub.waiters.add(done);
        opts.signal?.addEventListener('abort', done, { once: true });
      });
    }
  });
  sub.pulling = run.catch(() => undefined);
  return run;
}

/**
 * An acknowledgement through HTTP. It is the subscription's, whichever transport delivered: one
 * above what the attached consumer delivered (an HTTP pull got those before it attached) moves
 * that consumer past them. Never above the head of the log.
 */
export async function ack(core: PullCore, sub: Sub, offset: bigint): Promise<void> {
  if (typeof offset !== 'bigint' || offset < 0n)
    throw new ValidationError(ErrorCodes.INVALID_REQUEST, `invalid ack offset ${String(offset)}`, { details: { parameter: 'offset' } });
  if (offset > sub.acked) {
    const head = await core.store.headOffset();
    if (offset > head)
      throw new ValidationError(ErrorCodes.INVALID_REQUEST, `ack ${offset} is above the head of the log (${head})`, {
        details: { parameter: 'offset', offset: offset.toString(), head: head.toString() },
      });
  }
  if (sub.active) {
    if (offset > sub.active.position) sub.active.skipTo(offset);
    else sub.active.ack(offset);
    return;
  }
  sub.httpUntil = Date.now() + HTTP_ACTIVE_MS;
  core.acked(sub, offset);
}
