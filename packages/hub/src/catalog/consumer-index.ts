import { compileMatcher, type Matcher, type Pattern } from '@herald/core';
import type { ConsumerSource } from './observer.ts';

/** A pattern whose type holds `*` or `#` segments: tested with its own matcher. */
interface Wild {
  readonly consumer: number;
  readonly matcher: Matcher;
}

const ANY = '*';

/** Candidates looked at between two pause points of consumersOf(). */
export const PAUSE_EVERY = 256;

const isWildType = (type: string) => type.split('.').some((s) => s === '*' || s === '#');

function push<T>(map: Map<string, T[]>, key: string, v: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [v]);
  else list.push(v);
}

/**
 * The consumers of a flush indexed by their selectors' patterns, so that finding who consumes one
 * type looks only at the patterns that can match it: `*:*` and `<sender>:*` by lookup, literal
 * types by (sender, type) or type; only the patterns with wildcard segments under the type's
 * sender (or any) and its first segment (or a wildcard one) are tested. Built once per flush from
 * the consumer list (add() each); matchers of wildcard patterns are kept by pattern text across
 * flushes.
 */
export class ConsumerIndex {
  private readonly everything: number[] = [];
  private readonly anyTypeOf = new Map<string, number[]>();
  private readonly exact = new Map<string, number[]>();
  private readonly anySenderOf = new Map<string, number[]>();
  /** Wildcard patterns by `<sender or *>\0<first type segment or *>`. */
  private readonly wild = new Map<string, Wild[]>();
  /** Per consumer, the number of the last type it was found for: a consumer with two matching patterns is found once. */
  private readonly stamp: Uint32Array;
  private types = 0;

  /** The matchers of wildcard patterns by pattern text: pass them to the next flush's index. */
  readonly matchers = new Map<string, Matcher>();

  constructor(
    private readonly sources: readonly ConsumerSource[],
    private readonly previous: ReadonlyMap<string, Matcher> = new Map(),
  ) {
    this.stamp = new Uint32Array(sources.length);
  }

  /** Indexes consumer `i` of the sources (each once; the caller spreads the work over the event loop). */
  add(i: number): void {
    const c = this.sources[i] as ConsumerSource;
    for (const p of c.selector.patterns as readonly Pattern[]) {
      if (p.type === ANY) {
        if (p.sender === ANY) this.everything.push(i);
        else push(this.anyTypeOf, p.sender, i);
      } else if (!isWildType(p.type)) {
        if (p.sender === ANY) push(this.anySenderOf, p.type, i);
        else push(this.exact, `${p.sender}\u0000${p.type}`, i);
      } else {
        const text = `${p.sender}:${p.type}`;
        let matcher = this.matchers.get(text) ?? this.previous.get(text);
        if (matcher === undefined) matcher = compileMatcher(text);
        this.matchers.set(text, matcher);
        // Under the sender (or *) and the first type segment when it is a name (else *).
        const first = p.type.slice(0, p.type.indexOf('.') < 0 ? p.type.length : p.type.indexOf('.'));
        push(this.wild, `${p.sender}\u0000${first === '#' ? ANY : first}`, { consumer: i, matcher });
      }
    }
  }

  /**
   * The consumers whose selector matches the type, each once, in no particular order. Every
   * PAUSE_EVERY candidates looked at it yields undefined instead: a point where the caller may turn
   * the event loop and count the work.
   */
  *consumersOf(sender: string, type: string): Generator<ConsumerSource | undefined, void, void> {
    const mark = ++this.types;
    let work = 0;
    const direct = [this.everything, this.anyTypeOf.get(sender), this.exact.get(`${sender}\u0000${type}`), this.anySenderOf.get(type)];
    for (const list of direct) {
      for (const i of list ?? []) {
        if (++work % PAUSE_EVERY === 0) yield undefined;
        if (this.stamp[i] === mark) continue;
        this.stamp[i] = mark;
        yield this.sources[i] as ConsumerSource;
      }
    }
    const dot = type.indexOf('.');
    const first = dot < 0 ? type : type.slice(0, dot);
    const wild = [`${sender}\u0000${first}`, `${sender}\u0000${ANY}`, `${ANY}\u0000${first}`, `${ANY}\u0000${ANY}`];
    for (const key of wild) {
      for (const w of this.wild.get(key) ?? []) {
        if (++work % PAUSE_EVERY === 0) yield undefined;
        if (this.stamp[w.consumer] === mark || !w.matcher(sender, type)) continue;
        this.stamp[w.consumer] = mark;
        yield this.sources[w.consumer] as ConsumerSource;
      }
    }
  }
}
