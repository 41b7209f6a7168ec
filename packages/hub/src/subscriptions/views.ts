import { type Lag, receiverQueue, type SubscriptionStore } from '../store/index.ts';
import type { Sub } from './consumer.ts';
import type { SubscriptionView } from './types.ts';

/**
 * The lag of each subscription, in their order: its matching events in (acked, head], `head` being
 * the head offset the views report. One acknowledged at the head has nothing to read (most live
 * consumers); the others are counted by one lagMany, two statements for them all however many
 * (subscriptions of wildcard types a few more). Rejects when the store fails.
 */
export function lagsAt(subStore: SubscriptionStore, subs: readonly Sub[], head: bigint): Promise<Lag[]> {
  // lagMany answers no lag at once for a subscription acknowledged at the head.
  return subStore.lagMany(
    subs.map((s) => ({ selector: s.selector, after: s.acked })),
    head,
  );
}

/** What GET /subscriptions shows of a subscription, given the head offset and its lag. */
export function subscriptionView(sub: Sub, headOffset: bigint, lag: Lag, now = Date.now()): SubscriptionView {
  const httpActive = sub.httpUntil > now;
  return {
    name: sub.name,
    selector: sub.selector,
    state: sub.active || httpActive ? 'active' : 'sleeping',
    ackedOffset: sub.acked,
    headOffset,
    lagEvents: lag.events,
    lagSeconds: lag.oldestMs === undefined ? 0 : Math.max(0, (now - lag.oldestMs) / 1000),
    consumer: sub.active ? sub.active.label : httpActive ? 'http' : undefined,
    queue: receiverQueue(sub.selector),
    createdAt: sub.createdAt,
  };
}
