import { compileMatcher, type Matcher, type Selector } from '@herald/core';
import type { StoredEvent } from '../store/types.ts';

/** Distinct sender×type pairs whose matching selectors are remembered; beyond, the memo starts over. */
const MAX_ROUTES = 10_000;

/**
 * The hub's in-memory receivers (DESIGN.md §2, §4): one per canonical selector of the durable
 * subscriptions, fed by the dispatcher with what it forwards, in offset order. A subscription is a
 * cursor over the log: a receiver copies nothing anywhere for a selector no consumer is waiting on,
 * and costs the broker nothing, however many subscriptions exist.
 *
 * feed() takes each batch once: the selectors that are awake (an attached consumer, or an HTTP pull
 * waiting) are listed once per batch, each distinct sender×type of the batch is matched against
 * those alone (the matching selectors of a pair are remembered across batches), and every event
 * goes to its awake selectors' consumers as one array per selector. Cost per batch: the number of
 * subscriptions, plus the awake matching selectors per event.
 */
export class MemoryReceivers {
  private readonly matchers = new Map<string, Matcher>();
  /** sender \0 type → the hashes of the selectors that match it. */
  private routes = new Map<string, Set<string>>();

  constructor(
    /** The selectors (by hash) that have a consumer or a waiting pull now. */
    private readonly awake: () => Iterable<string>,
    /** Hands one selector's share of a batch to its subscriptions' consumers (synchronously). */
    private readonly deliver: (hash: string, events: StoredEvent[]) => void,
  ) {}

  add(selector: Selector): void {
    if (this.matchers.has(selector.hash)) return;
    this.matchers.set(selector.hash, compileMatcher(selector));
    this.routes = new Map();
  }

  remove(hash: string): void {
    if (this.matchers.delete(hash)) this.routes = new Map();
  }

  has(hash: string): boolean {
    return this.matchers.has(hash);
  }

  get size(): number {
    return this.matchers.size;
  }

  /** Live events from the dispatcher (in the log, released by every pause), in offset order. */
  feed(events: readonly StoredEvent[]): void {
    if (events.length === 0) return;
    const awake: string[] = [];
    for (const h of this.awake()) if (this.matchers.has(h)) awake.push(h);
    if (awake.length === 0) return;
    const byPair = new Map<string, string[]>();
    const out = new Map<string, StoredEvent[]>();
    for (const e of events) {
      const key = `${e.sender}\u0000${e.type}`;
      let targets = byPair.get(key);
      if (targets === undefined) {
        const route = this.route(key, e.sender, e.type);
        targets = awake.filter((h) => route.has(h));
        byPair.set(key, targets);
      }
      for (const h of targets) {
        const list = out.get(h);
        if (list) list.push(e);
        else out.set(h, [e]);
      }
    }
    for (const [h, list] of out) this.deliver(h, list);
  }

  private route(key: string, sender: string, type: string): Set<string> {
    let route = this.routes.get(key);
    if (route === undefined) {
      route = new Set();
      for (const [h, matches] of this.matchers) if (matches(sender, type)) route.add(h);
      if (this.routes.size >= MAX_ROUTES) this.routes = new Map();
      this.routes.set(key, route);
    }
    return route;
  }
}
