import { createHash } from 'node:crypto';
import { ErrorCodes, ValidationError } from './errors.ts';
import { LIMITS, preview } from './limits.ts';
import { assertSender, MAX_ROUTING_KEY_BYTES } from './names.ts';

/**
 * One `sender:type` pattern. `sender` is a sender name or `*` (any). `type` is `*` (any type) or a
 * dotted pattern whose segments are names, `*` (exactly one segment) or `#` (zero or more).
 */
export interface Pattern {
  readonly sender: string;
  readonly type: string;
}

/** Which events a receiver wants: patterns OR-ed, in canonical form (normalized, sorted, unique). */
export interface Selector {
  readonly patterns: readonly Pattern[];
  /** The canonical text, `p1,p2,…`: equal selectors have equal text. */
  readonly canonical: string;
  /** A stable 16-hex-digit hash of the canonical text; names queues that depend on the selector. */
  readonly hash: string;
}

/** The input a selector can be written as: `"billing:*, *:invoice.paid"` or `["billing:*", …]`. */
export type SelectorInput = string | readonly string[] | Selector;

const SEGMENT_RE = /^[A-Za-z0-9_-]+$/;
const ANY = '*';

function invalid(message: string, pattern: string): never {
  throw new ValidationError(ErrorCodes.INVALID_SELECTOR, message, { details: { pattern: preview(pattern) } });
}

function normalizeType(type: string, raw: string): string {
  if (type === '') invalid(`invalid selector pattern ${preview(raw)}: the type is empty`, raw);
  // A routing key holds at most 255 bytes: a longer type pattern could never match, and bounding it
  // bounds the work of every matcher and query built from it.
  if (type.length > MAX_ROUTING_KEY_BYTES)
    invalid(`invalid selector pattern ${preview(raw)}: the type is longer than a routing key (${MAX_ROUTING_KEY_BYTES} bytes)`, raw);
  const segments = type.split('.');
  if (segments.length > LIMITS.patternSegments.value)
    invalid(`invalid selector pattern ${preview(raw)}: more than ${LIMITS.patternSegments.value} type segments`, raw);
  const out: string[] = [];
  for (const segment of segments) {
    if (segment === '#') {
      // `#.#` matches what `#` matches.
      if (out[out.length - 1] !== '#') out.push('#');
    } else if (segment === '*' || SEGMENT_RE.test(segment)) {
      out.push(segment);
    } else {
      invalid(
        `invalid selector pattern ${preview(raw)}: type segment ${preview(segment)} must be a name of A-Z a-z 0-9 _ -, or * or #`,
        raw,
      );
    }
  }
  // A whole type of `#` matches every type, as `*` does; one spelling keeps the canonical form unique.
  if (out.length === 1 && out[0] === '#') return ANY;
  return out.join('.');
}

/** Parses one `sender:type` pattern, throwing a ValidationError that names the bad part. */
export function parsePattern(raw: string): Pattern {
  const text = raw.trim();
  const colon = text.indexOf(':');
  if (colon < 0) invalid(`invalid selector pattern ${preview(raw)}: expected <sender>:<type>, e.g. billing:invoice.paid or billing:*`, raw);
  const sender = text.slice(0, colon).trim();
  const type = text.slice(colon + 1).trim();
  if (sender !== ANY) {
    try {
      assertSender(sender);
    } catch (cause) {
      throw new ValidationError(
        ErrorCodes.INVALID_SELECTOR,
        `invalid selector pattern ${preview(raw)}: sender ${preview(sender)} must be * or 1-64 characters of A-Z a-z 0-9 _ -`,
        { cause, details: { pattern: preview(raw) } },
      );
    }
  }
  const pattern = { sender, type: normalizeType(type, raw) };
  // The pattern is bound to herald.events as `<sender>.<type>`, an AMQP short string: a longer key
  // cannot be bound (amqplib throws, and once left the receivers' channel waiting forever), and
  // could match no routing key but the few a `#` shortens by its dot. Sender and type are ASCII.
  const bytes = pattern.sender.length + 1 + pattern.type.length;
  if (bytes > MAX_ROUTING_KEY_BYTES)
    invalid(
      `invalid selector pattern ${preview(raw)}: <sender>.<type> is ${bytes} bytes, longer than a routing key (${MAX_ROUTING_KEY_BYTES} bytes)`,
      raw,
    );
  return pattern;
}

/** Segments a type may have after its one `#` and still be bound exactly (see bindingKeyOf). */
const EXACT_AFTER_HASH = 4;

/**
 * The AMQP binding key of one pattern on herald.events: `<sender>.<type>`, exact when the type has
 * no `#`, or one `#` followed by at most EXACT_AFTER_HASH segments. RabbitMQ's topic exchange
 * matches a `#` by trying every split of the routing key, so its work grows with the segments
 * after a `#` and exponentially with the number of `#` (one pattern of ten `#` and an event of 40
 * segments kept a broker at 100% CPU for minutes, every publish on that channel waiting; three `#`
 * cost ~0.5 s per 80-segment event, one `#` and 60 `*` ~20 ms). Any other type is bound up to its
 * first `#` (`a.#.b.#.c` as `a.#`), which RabbitMQ matches in linear time and which routes a
 * superset: whoever consumes the queue keeps what the selector's matcher accepts.
 */
function bindingKeyOf(p: Pattern): string {
  if (p.sender === ANY && p.type === ANY) return '#';
  if (p.type === ANY) return `${p.sender}.#`;
  const segments = p.type.split('.');
  const first = segments.indexOf('#');
  if (first < 0) return `${p.sender}.${p.type}`;
  const after = segments.slice(first + 1);
  if (after.length <= EXACT_AFTER_HASH && !after.includes('#')) return `${p.sender}.${p.type}`;
  return `${p.sender}.${segments.slice(0, first + 1).join('.')}`;
}

function patternText(p: Pattern): string {
  return `${p.sender}:${p.type}`;
}

/**
 * Parses a selector into canonical form. Accepts a comma-separated string, an array of patterns,
 * or a Selector (returned as is). Throws a ValidationError (INVALID_SELECTOR) naming the bad pattern.
 */
export function parseSelector(input: SelectorInput): Selector {
  if (typeof input === 'object' && input !== null && 'canonical' in input) return input;
  const parts = typeof input === 'string' ? input.split(',') : Array.isArray(input) ? input : null;
  if (parts === null) {
    throw new ValidationError(ErrorCodes.INVALID_SELECTOR, 'invalid selector: expected a string or an array of sender:type patterns');
  }
  const max = LIMITS.selectorPatterns.value;
  // Counted before anything is parsed, so a selector of a million patterns costs nothing.
  if (parts.length > max && parts.filter((p) => typeof p !== 'string' || p.trim() !== '').length > max) {
    throw new ValidationError(ErrorCodes.INVALID_SELECTOR, `invalid selector: more than ${max} patterns`, {
      details: { patterns: parts.length },
    });
  }
  const texts = new Set<string>();
  let wildcardSegments = 0;
  for (const part of parts) {
    if (typeof part !== 'string') invalid(`invalid selector pattern ${preview(part)}: expected a string`, String(part));
    if (part.trim() === '' && typeof input === 'string') continue;
    const pattern = parsePattern(part);
    const text = patternText(pattern);
    if (!texts.has(text) && !isLiteralType(pattern.type) && pattern.type !== ANY) wildcardSegments += pattern.type.split('.').length;
    texts.add(text);
  }
  if (wildcardSegments > LIMITS.selectorWildcardSegments.value) {
    throw new ValidationError(
      ErrorCodes.INVALID_SELECTOR,
      `invalid selector: its patterns with * or # have ${wildcardSegments} type segments in all, more than ${LIMITS.selectorWildcardSegments.value}`,
      { details: { segments: wildcardSegments } },
    );
  }
  if (texts.size === 0) {
    throw new ValidationError(ErrorCodes.INVALID_SELECTOR, 'invalid selector: it has no pattern; use *:* for every event');
  }
  const sorted = [...texts].sort();
  const patterns = sorted.map((t) => {
    const colon = t.indexOf(':');
    return Object.freeze({ sender: t.slice(0, colon), type: t.slice(colon + 1) });
  });
  const canonical = sorted.join(',');
  const hash = createHash('sha256').update(canonical).digest('hex').slice(0, 16);
  return Object.freeze({ patterns: Object.freeze(patterns), canonical, hash });
}

/**
 * The AMQP topic binding keys for routing keys `<sender>.<type>`, unique and sorted. They deliver
 * exactly the events the selector matches, but for patterns whose type has two `#`, or more than
 * four segments after its `#`: their keys deliver a superset (see bindingKeyOf), so a consumer of
 * a queue bound with them filters with compileMatcher.
 */
export function bindingKeys(input: SelectorInput): string[] {
  const { patterns } = parseSelector(input);
  const keys = new Set<string>();
  for (const p of patterns) keys.add(bindingKeyOf(p));
  return [...keys].sort();
}

/**
 * The binding keys that match exactly what the selector matches, unique and sorted: `#` for `*:*`,
 * `<sender>.#` for any type, else `<sender>.<type>` (a type's `*` and `#` are AMQP's). Unlike
 * bindingKeys they are never shortened, so they are for checking keys (a permission's regex, a
 * selector an exchange can deliver exactly), not for binding: see bindingKeyOf for what RabbitMQ
 * pays for a key of several `#`.
 */
export function exactBindingKeys(input: SelectorInput): string[] {
  const keys = new Set<string>();
  for (const p of parseSelector(input).patterns) {
    if (p.sender === ANY && p.type === ANY) keys.add('#');
    else keys.add(p.type === ANY ? `${p.sender}.#` : `${p.sender}.${p.type}`);
  }
  return [...keys].sort();
}

/**
 * A regular expression over `'.' + type` for a type pattern with wildcards. Prefixing every
 * segment with its dot lets `#` (zero or more segments) be written as `(\.[^.]+)*`.
 */
function typeRegexSource(type: string): string {
  let src = '^';
  for (const segment of type.split('.')) {
    if (segment === '#') src += '(\\.[^.]+)*';
    else if (segment === '*') src += '\\.[^.]+';
    else src += `\\.${segment}`;
  }
  return `${src}$`;
}

function isLiteralType(type: string): boolean {
  return type !== ANY && !type.split('.').some((s) => s === '*' || s === '#');
}

/** A parameterized SQL predicate: `sql` refers to `params` as `$first`, `$first+1`, …. */
export interface SqlPredicate {
  readonly sql: string;
  readonly params: string[];
}

/**
 * An SQL predicate (PostgreSQL) over the columns `sender` and `type` that holds exactly for the
 * events the selector matches. Parameters are numbered from `firstParam`. Exact names compare with
 * `=` (index-friendly); wildcard types use a regular expression over `'.' || type`.
 */
export function sqlPredicate(
  input: SelectorInput,
  options: { firstParam?: number; senderColumn?: string; typeColumn?: string } = {},
): SqlPredicate {
  const { patterns } = parseSelector(input);
  const senderCol = options.senderColumn ?? 'sender';
  const typeCol = options.typeColumn ?? 'type';
  const params: string[] = [];
  const next = (value: string) => {
    params.push(value);
    return `$${(options.firstParam ?? 1) + params.length - 1}`;
  };
  const clauses: string[] = [];
  for (const p of patterns) {
    const conds: string[] = [];
    if (p.sender !== ANY) conds.push(`${senderCol} = ${next(p.sender)}`);
    if (p.type !== ANY) {
      if (isLiteralType(p.type)) conds.push(`${typeCol} = ${next(p.type)}`);
      else conds.push(`('.' || ${typeCol}) ~ ${next(typeRegexSource(p.type))}`);
    }
    if (conds.length === 0) return { sql: 'TRUE', params: [] };
    clauses.push(conds.length === 1 ? (conds[0] as string) : `(${conds.join(' AND ')})`);
  }
  return { sql: clauses.length === 1 ? (clauses[0] as string) : `(${clauses.join(' OR ')})`, params };
}

/** A compiled in-memory test: does an event of this sender and type match the selector? */
export type Matcher = (sender: string, type: string) => boolean;

/**
 * The wildcard patterns of a selector as one nondeterministic automaton over type segments, run
 * bit-parallel: a pattern of k segments owns k + 1 consecutive states (j = "j segments matched").
 * Each segment of a type advances every live state at once, so a match costs (segments of the type)
 * × (words of state), whatever the pattern: no backtracking, no regular expression. The selector's
 * limits bound the words (LIMITS.selectorWildcardSegments).
 */
class WildcardAutomaton {
  private readonly words: number;
  /** Start states by sender, and of the patterns whose sender is `*`. */
  private readonly startBySender = new Map<string, Uint32Array>();
  private readonly startAny: Uint32Array;
  /** States whose next pattern segment is this name. */
  private readonly byName = new Map<string, Uint32Array>();
  /** States whose next pattern segment is `*` (any one segment) … */
  private readonly star: Uint32Array;
  /** … or `#` (any number of segments, none included). */
  private readonly hash: Uint32Array;
  private readonly accept: Uint32Array;
  private cur: Uint32Array;
  private next: Uint32Array;

  constructor(patterns: readonly Pattern[]) {
    let states = 0;
    for (const p of patterns) states += p.type.split('.').length + 1;
    this.words = Math.max(1, Math.ceil(states / 32));
    const bits = () => new Uint32Array(this.words);
    const set = (b: Uint32Array, i: number) => {
      b[i >>> 5] = (b[i >>> 5] as number) | (1 << (i & 31));
    };
    this.startAny = bits();
    this.star = bits();
    this.hash = bits();
    this.accept = bits();
    this.cur = bits();
    this.next = bits();
    let base = 0;
    for (const p of patterns) {
      const segments = p.type.split('.');
      let start = this.startAny;
      if (p.sender !== ANY) {
        start = this.startBySender.get(p.sender) ?? bits();
        this.startBySender.set(p.sender, start);
      }
      set(start, base);
      segments.forEach((segment, j) => {
        if (segment === '*') set(this.star, base + j);
        else if (segment === '#') set(this.hash, base + j);
        else {
          let b = this.byName.get(segment);
          if (b === undefined) {
            b = bits();
            this.byName.set(segment, b);
          }
          set(b, base + j);
        }
      });
      set(this.accept, base + segments.length);
      base += segments.length + 1;
    }
  }

  /** `#` matches zero segments too: a state before a `#` is also the state after it (never two `#` in a row). */
  private close(d: Uint32Array): void {
    let carry = 0;
    for (let w = 0; w < this.words; w++) {
      const x = (d[w] as number) & (this.hash[w] as number);
      const shifted = (x << 1) | carry;
      carry = x >>> 31;
      d[w] = (d[w] as number) | shifted;
    }
  }

  matches(sender: string, type: string): boolean {
    const words = this.words;
    let d = this.cur;
    const own = this.startBySender.get(sender);
    let live = 0;
    for (let w = 0; w < words; w++) {
      d[w] = (this.startAny[w] as number) | (own === undefined ? 0 : (own[w] as number));
      live |= d[w] as number;
    }
    if (live === 0) return false;
    this.close(d);
    let from = 0;
    for (;;) {
      const dot = type.indexOf('.', from);
      const segment = dot < 0 ? type.slice(from) : type.slice(from, dot);
      const named = this.byName.get(segment);
      const n = this.next;
      let carry = 0;
      live = 0;
      for (let w = 0; w < words; w++) {
        const dw = d[w] as number;
        const step = dw & ((this.star[w] as number) | (named === undefined ? 0 : (named[w] as number)));
        n[w] = ((step << 1) | carry | (dw & (this.hash[w] as number))) >>> 0;
        carry = step >>> 31;
        live |= n[w] as number;
      }
      this.next = d;
      d = n;
      this.cur = d;
      if (live === 0) return false;
      this.close(d);
      if (dot < 0) break;
      from = dot + 1;
    }
    for (let w = 0; w < words; w++) if (((d[w] as number) & (this.accept[w] as number)) !== 0) return true;
    return false;
  }
}

/**
 * Compiles the selector to an in-memory matcher. Exact sender×type pairs, whole senders and exact
 * types of any sender are one hash lookup each; wildcard types run through one automaton for the
 * whole selector, in time linear in the type's segments. The matcher is synchronous and keeps its
 * working state between calls: one matcher serves one caller at a time (JavaScript's one thread).
 */
export function compileMatcher(input: SelectorInput): Matcher {
  const { patterns } = parseSelector(input);
  const exact = new Set<string>();
  const anyTypeSenders = new Set<string>();
  const anySenderTypes = new Set<string>();
  const wildcard: Pattern[] = [];
  for (const p of patterns) {
    if (p.sender === ANY && p.type === ANY) return () => true;
    if (p.type === ANY) anyTypeSenders.add(p.sender);
    else if (isLiteralType(p.type) && p.sender !== ANY) exact.add(`${p.sender}\u0000${p.type}`);
    else if (isLiteralType(p.type)) anySenderTypes.add(p.type);
    else wildcard.push(p);
  }
  const automaton = wildcard.length > 0 ? new WildcardAutomaton(wildcard) : undefined;
  return (sender, type) =>
    anyTypeSenders.has(sender) ||
    anySenderTypes.has(type) ||
    exact.has(`${sender}\u0000${type}`) ||
    automaton?.matches(sender, type) === true;
}

/** True when the selector matches an event of this sender and type. Compiles on every call. */
export function matches(input: SelectorInput, sender: string, type: string): boolean {
  return compileMatcher(input)(sender, type);
}

/** The selector as a list of pattern strings, e.g. `["billing:*", "*:invoice.paid"]`. */
export function selectorPatterns(input: SelectorInput): string[] {
  return parseSelector(input).patterns.map(patternText);
}
