import { compileMatcher, type Matcher, type Selector } from '@herald/core';
import type { StoredEvent } from '../store/types.ts';

/** Remembered (sender×type, selector) match results; beyond, the memo starts over. */
const MAX_ROUTE_ENTRIES = 1_000_000;

/**
 * The hub's in-memory receivers (DESIGN.md §2, §4): one per canonical selector of the durable
 * subscriptions, fed by the flow (dispatcher/flow.ts) with what it forwards live, each run as it is
 * handed to RabbitMQ (in the log already; a forward that fails is fed again, and a consumer skips
 * by offset what it has), in dispatch order. A subscription is a
 * cursor over the log: a receiver copies nothing anywhere for a selector no consumer is waiting on,
 * and costs the broker nothing, however many subscriptions exist.
 *
 * feed() takes each batch once: the selectors that are awake (an attached consumer, or an HTTP pull
 * waiting) are kept as they wake and sleep (setAwake), each distinct sender×type of the batch is
 * matched against those alone (a result is remembered: a hash names one canonical selector, so it
 * never goes stale), and every event goes to its awake selectors' consumers as one array per
 * selector. Cost per batch: the awake selectors, plus the awake matching selectors per event;
 * sleeping subscriptions cost nothing, however many there are.
 */
export class MemoryReceivers {
  private readonly matchers = new Map<string, Matcher>();
  /** sender \0 type → selector hash → whether it matches (filled for awake selectors only). */
  private routes = new Map<string, Map<string, boolean>>();
  private routeEntries = 0;
  /** Selector hash → its subscriptions awake now (an active consumer or a waiting pull); none: absent. */
  private readonly awake = new Map<string, number>();
  /** Awake selectors feed() has looked at, over every batch: a cheap count of its work, for tests. */
  examined = 0;

  constructor(
    /** Hands one selector's share of a batch to its subscriptions' consumers (synchronously). */
    private readonly deliver: (hash: string, events: StoredEvent[]) => void,
  ) {}

  /**
   * A subscription of this selector woke (`true`) or went to sleep (`false`); each call for a
   * subscription alternates (Sub tells only changes). A sleep with none awake is ignored.
   */
  setAwake(hash: string, awake: boolean): void {
    const n = (this.awake.get(hash) ?? 0) + (awake ? 1 : -1);
    if (n > 0) this.awake.set(hash, n);
    else this.awake.delete(hash);
  }

  /** Selectors with a subscription awake now. */
  get awakeCount(): number {
    return this.awake.size;
  }

  add(selector: Selector): void {
    if (this.matchers.has(selector.hash)) return;
    this.matchers.set(selector.hash, compileMatcher(selector));
  }

  remove(hash: string): void {
    this.matchers.delete(hash);
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
    if (this.awake.size === 0) return;
    const awake: string[] = [];
    for (const h of this.awake.keys()) if (this.matchers.has(h)) awake.push(h);
    this.examined += this.awake.size;
    if (awake.length === 0) return;
    const byPair = new Map<string, string[]>();
    const out = new Map<string, StoredEvent[]>();
    for (const e of events) {
      const key = `${e.sender}\u0000${e.type}`;
      let targets = byPair.get(key);
      if (targets === undefined) {
        targets = this.matching(key, e.sender, e.type, awake);
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

  /** The selectors among `awake` that match sender×type. */
  private matching(key: string, sender: string, type: string, awake: readonly string[]): string[] {
    let route = this.routes.get(key);
    if (route === undefined) {
      if (this.routeEntries >= MAX_ROUTE_ENTRIES) {
        this.routes = new Map();
        this.routeEntries = 0;
      }
      route = new Map();
      this.routes.set(key, route);
    }
    const out: string[] = [];
    for (const h of awake) {
      let hit = route.get(h);
      if (hit === undefined) {
        hit = (this.matchers.get(h) as Matcher)(sender, type);
        route.set(h, hit);
        this.routeEntries++;
      }
      if (hit) out.push(h);
    }
    return out;
  }
}
