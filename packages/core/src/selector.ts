import { createHash } from 'node:crypto';
import { ErrorCodes, ValidationError } from './errors.ts';
import { assertSender } from './names.ts';

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
  throw new ValidationError(ErrorCodes.INVALID_SELECTOR, message, { details: { pattern } });
}

function normalizeType(type: string, raw: string): string {
  if (type === '') invalid(`invalid selector pattern ${JSON.stringify(raw)}: the type is empty`, raw);
  const out: string[] = [];
  for (const segment of type.split('.')) {
    if (segment === '#') {
      // `#.#` matches what `#` matches.
      if (out[out.length - 1] !== '#') out.push('#');
    } else if (segment === '*' || SEGMENT_RE.test(segment)) {
      out.push(segment);
    } else {
      invalid(
        `invalid selector pattern ${JSON.stringify(raw)}: type segment ${JSON.stringify(segment)} must be a name of A-Z a-z 0-9 _ -, or * or #`,
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
  if (colon < 0)
    invalid(`invalid selector pattern ${JSON.stringify(raw)}: expected <sender>:<type>, e.g. billing:invoice.paid or billing:*`, raw);
  const sender = text.slice(0, colon).trim();
  const type = text.slice(colon + 1).trim();
  if (sender !== ANY) {
    try {
      assertSender(sender);
    } catch (cause) {
      throw new ValidationError(
        ErrorCodes.INVALID_SELECTOR,
        `invalid selector pattern ${JSON.stringify(raw)}: sender ${JSON.stringify(sender)} must be * or 1-64 characters of A-Z a-z 0-9 _ -`,
        { cause, details: { pattern: raw } },
      );
    }
  }
  return { sender, type: normalizeType(type, raw) };
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
  const texts = new Set<string>();
  for (const part of parts) {
    if (typeof part !== 'string') invalid(`invalid selector pattern ${JSON.stringify(part)}: expected a string`, String(part));
    if (part.trim() === '' && typeof input === 'string') continue;
    texts.add(patternText(parsePattern(part)));
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
 * The AMQP topic binding keys that deliver exactly the events the selector matches, for routing
 * keys `<sender>.<type>`. Unique and sorted.
 */
export function bindingKeys(input: SelectorInput): string[] {
  const { patterns } = parseSelector(input);
  const keys = new Set<string>();
  for (const p of patterns) {
    if (p.sender === ANY && p.type === ANY) keys.add('#');
    else keys.add(`${p.sender}.${p.type === ANY ? '#' : p.type}`);
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
 * Compiles the selector to an in-memory matcher. Exact sender×type pairs are one hash lookup;
 * wildcard patterns are checked in order.
 */
export function compileMatcher(input: SelectorInput): Matcher {
  const { patterns } = parseSelector(input);
  const exact = new Set<string>();
  const anyTypeSenders = new Set<string>();
  const rest: { sender: string; test: (type: string) => boolean }[] = [];
  for (const p of patterns) {
    if (p.sender === ANY && p.type === ANY) return () => true;
    if (p.type === ANY) anyTypeSenders.add(p.sender);
    else if (isLiteralType(p.type) && p.sender !== ANY) exact.add(`${p.sender}\u0000${p.type}`);
    else if (isLiteralType(p.type)) rest.push({ sender: ANY, test: (t) => t === p.type });
    else {
      const re = new RegExp(typeRegexSource(p.type));
      rest.push({ sender: p.sender, test: (t) => re.test(`.${t}`) });
    }
  }
  return (sender, type) => {
    if (anyTypeSenders.has(sender) || exact.has(`${sender}\u0000${type}`)) return true;
    for (const r of rest) {
      if ((r.sender === ANY || r.sender === sender) && r.test(type)) return true;
    }
    return anyTypeSenders.has(ANY);
  };
}

/** True when the selector matches an event of this sender and type. Compiles on every call. */
export function matches(input: SelectorInput, sender: string, type: string): boolean {
  return compileMatcher(input)(sender, type);
}

/** The selector as a list of pattern strings, e.g. `["billing:*", "*:invoice.paid"]`. */
export function selectorPatterns(input: SelectorInput): string[] {
  return parseSelector(input).patterns.map(patternText);
}
