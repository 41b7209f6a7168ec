import type { Selector } from '@herald/core';
import type { SqlExecutor } from './driver.ts';
import { countSegmentsSql, countTerms, matchingOffsetsSql, type PatternShape, patternShape } from './selector-sql.ts';
import { epochMs, optionalMs, toBigInt } from './sql-helpers.ts';

/** How far a subscription is behind: matching events in its range (capped at LAG_CAP), and the first one's storage time. */
export interface Lag {
  readonly events: number;
  readonly oldestMs: number | undefined;
}

/** One lag to count: the matching events in (after, upTo]. */
export interface LagEntry {
  readonly selector: Selector;
  readonly after: bigint;
}

/** Lag figures are counted up to here, then capped. */
export const LAG_CAP = 1_000_000;

/**
 * Selectors read by one statement of lagManyByUnion. Each adds a branch per pattern, and planning
 * grows faster than the statement (1,000 selectors: 20 a statement listed in half the time 100 took).
 */
export const LAG_MANY_MAX_SELECTORS = 20;

const NO_LAG: Lag = { events: 0, oldestMs: undefined };
const NARROW_SQL = countSegmentsSql(false);
const CAPPED_SQL = countSegmentsSql(true);

/** A pattern's range (lo, hi] whose matching events one lateral index scan counts. */
interface Segment {
  readonly shape: PatternShape;
  readonly sender: string;
  readonly type: string;
  readonly lo: bigint;
  readonly hi: bigint;
  n: number;
  first: bigint | undefined;
}

/**
 * The lags of many entries in two statements, whatever their number, for selectors of literal
 * names and `*` (countTerms): each selector's count is a sum of per-pattern counts; the offsets
 * asked of one pattern cut its range into consecutive segments (a1, a2], (a2, a3], …, (an, upTo],
 * each counted once by countSegmentsSql, so a thousand subscriptions of one pattern read its
 * index range once, and a pattern's count after ai is the sum of the segments from ai on. A second
 * statement reads the storage time of each entry's first event (a third, on logs of more than
 * LAG_CAP events, counts the ranges wider than that with a cut). Selectors with wildcard types go
 * to lagManyByUnion. Exact up to LAG_CAP: a term that reaches the cap belongs to a pattern with at
 * least that many events, so the selector has too, and says LAG_CAP. (`cap` other than LAG_CAP: tests.)
 */
export async function lagMany(sql: SqlExecutor, entries: readonly LagEntry[], upTo: bigint, cap = LAG_CAP): Promise<Lag[]> {
  const out: (Lag | undefined)[] = entries.map((e) => (e.after >= upTo ? NO_LAG : undefined));
  const byPattern = new Map<string, { shape: PatternShape; sender: string; type: string; afters: Set<bigint> }>();
  const plans: ({ terms: { key: string; coefficient: number }[]; firsts: string[] } | undefined)[] = [];
  const fallback: number[] = [];
  for (const [i, e] of entries.entries()) {
    if (out[i] !== undefined) {
      plans.push(undefined);
      continue;
    }
    const terms = countTerms(e.selector.patterns);
    if (terms === undefined) {
      fallback.push(i);
      plans.push(undefined);
      continue;
    }
    const need = (sender: string, type: string) => {
      const key = `${sender}:${type}`;
      let p = byPattern.get(key);
      if (!p) {
        p = { shape: patternShape({ sender, type }) as PatternShape, sender, type, afters: new Set() };
        byPattern.set(key, p);
      }
      p.afters.add(e.after);
      return key;
    };
    plans.push({
      terms: terms.map((t) => ({ key: need(t.pattern.sender, t.pattern.type), coefficient: t.coefficient })),
      firsts: e.selector.patterns.map((p) => need(p.sender, p.type)),
    });
  }
  // Each pattern's offsets, ascending, and the segment that starts at each.
  const segments: Segment[] = [];
  const starts = new Map<string, { afters: bigint[]; from: number }>();
  for (const [key, p] of byPattern) {
    const afters = [...p.afters].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    starts.set(key, { afters, from: segments.length });
    for (const [j, lo] of afters.entries()) {
      segments.push({ shape: p.shape, sender: p.sender, type: p.type, lo, hi: afters[j + 1] ?? upTo, n: 0, first: undefined });
    }
  }
  // Ranges wider than the cap (logs of more than LAG_CAP events) are counted with the cut.
  const wide = segments.filter((s) => s.hi - s.lo > BigInt(cap));
  const narrow = segments.filter((s) => s.hi - s.lo <= BigInt(cap));
  if (narrow.length > 0) await countSegments(sql, narrow, cap, false);
  if (wide.length > 0) await countSegments(sql, wide, cap, true);
  // A pattern's count and first offset after a given offset: the segments from there on.
  const suffix = new Map<string, { n: number[]; first: (bigint | undefined)[] }>();
  for (const [key, s] of starts) {
    const k = s.afters.length;
    const n = new Array<number>(k);
    const first = new Array<bigint | undefined>(k);
    for (let j = k - 1; j >= 0; j--) {
      const seg = segments[s.from + j] as Segment;
      n[j] = Math.min(cap, seg.n + (n[j + 1] ?? 0));
      first[j] = seg.first ?? first[j + 1];
    }
    suffix.set(key, { n, first });
  }
  const at = (key: string, after: bigint) => {
    const s = starts.get(key) as { afters: bigint[] };
    const j = binarySearch(s.afters, after);
    const f = suffix.get(key) as { n: number[]; first: (bigint | undefined)[] };
    return { n: f.n[j] as number, first: f.first[j] };
  };
  const firsts: (bigint | undefined)[] = entries.map(() => undefined);
  for (const [i, plan] of plans.entries()) {
    if (plan === undefined) continue;
    const after = (entries[i] as LagEntry).after;
    let n = 0;
    let capped = false;
    for (const t of plan.terms) {
      const c = at(t.key, after).n;
      if (c >= cap) capped = true;
      n += t.coefficient * c;
    }
    let first: bigint | undefined;
    for (const key of plan.firsts) {
      const f = at(key, after).first;
      if (f !== undefined && (first === undefined || f < first)) first = f;
    }
    firsts[i] = first;
    out[i] = { events: capped ? cap : Math.min(cap, n), oldestMs: undefined };
  }
  const wanted = [...new Set(firsts.filter((f): f is bigint => f !== undefined))];
  if (wanted.length > 0) {
    const { rows } = await sql.query<{ off: string; ms: number }>(
      `SELECT "offset"::text AS off, ${epochMs('stored_at')} AS ms FROM events WHERE "offset" = ANY($1::bigint[])`,
      [wanted.map(String)],
      'herald_lag_stored_at',
    );
    const ms = new Map(rows.map((r) => [toBigInt(r.off), Number(r.ms)]));
    for (const [i, f] of firsts.entries()) if (f !== undefined) out[i] = { events: (out[i] as Lag).events, oldestMs: ms.get(f) };
  }
  if (fallback.length > 0) {
    const lags = await lagManyByUnion(
      sql,
      fallback.map((i) => entries[i] as LagEntry),
      upTo,
      cap,
    );
    for (const [j, i] of fallback.entries()) out[i] = lags[j];
  }
  return out as Lag[];
}

/** The index of `x` in the ascending `xs`, which holds it. */
function binarySearch(xs: readonly bigint[], x: bigint): number {
  let lo = 0;
  let hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((xs[mid] as bigint) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function countSegments(sql: SqlExecutor, segments: Segment[], cap: number, capped: boolean): Promise<void> {
  const cols = { 'sender-type': [[], [], [], [], []], sender: [[], [], [], []], type: [[], [], [], []], all: [[], [], []] } as Record<
    PatternShape,
    unknown[][]
  >;
  for (const [id, s] of segments.entries()) {
    const c = cols[s.shape];
    const values =
      s.shape === 'sender-type' ? [id, s.sender, s.type] : s.shape === 'sender' ? [id, s.sender] : s.shape === 'type' ? [id, s.type] : [id];
    values.push(s.lo.toString(), s.hi.toString());
    for (const [j, v] of values.entries()) (c[j] as unknown[]).push(v);
  }
  const params = [cap, ...cols['sender-type'], ...cols.sender, ...cols.type, ...cols.all];
  const { rows } = await sql.query<{ id: number; n: number; first: string | null }>(
    capped ? CAPPED_SQL : NARROW_SQL,
    params,
    capped ? 'herald_lag_segments_capped' : 'herald_lag_segments',
  );
  for (const r of rows) {
    const s = segments[Number(r.id)] as Segment;
    s.n = Number(r.n);
    s.first = r.first === null ? undefined : toBigInt(r.first);
  }
}

/**
 * The lags of the entries by the selectors' UNION of offsets (matchingOffsetsSql): the entries of a
 * selector share one VALUES list of offsets joined LATERAL to its query, entries of the same
 * selector and offset are counted once, and one statement reads up to LAG_MANY_MAX_SELECTORS
 * selectors. Any selector; what lagMany does for those of wildcard types.
 */
export async function lagManyByUnion(sql: SqlExecutor, entries: readonly LagEntry[], upTo: bigint, cap = LAG_CAP): Promise<Lag[]> {
  // Each distinct (selector, offset) once, as a key; entries point at their key.
  const groups = new Map<string, { selector: Selector; keys: Map<bigint, number> }>();
  const keyOf: number[] = [];
  let keys = 0;
  for (const e of entries) {
    let g = groups.get(e.selector.canonical);
    if (!g) {
      g = { selector: e.selector, keys: new Map() };
      groups.set(e.selector.canonical, g);
    }
    let k = g.keys.get(e.after);
    if (k === undefined) {
      k = keys++;
      g.keys.set(e.after, k);
    }
    keyOf.push(k);
  }
  const lags: Lag[] = new Array(keys);
  const all = [...groups.values()];
  for (let i = 0; i < all.length; i += LAG_MANY_MAX_SELECTORS) {
    const params: unknown[] = [cap, upTo.toString()];
    const parts = all.slice(i, i + LAG_MANY_MAX_SELECTORS).map((g) => {
      const values = [...g.keys].map(([after, k]) => `(${k}, $${params.push(after.toString())}::bigint)`);
      const offsets = matchingOffsetsSql(params, g.selector, {
        bounds: ['"offset" > v.acked', '"offset" <= $2::bigint'],
        limit: '$1::bigint',
      });
      // One pass gives the count and the first offset; its event gives the storage time.
      return `(SELECT v.k, l.n, ${epochMs('e.stored_at')} AS oldest_ms
         FROM (VALUES ${values.join(', ')}) v(k, acked)
         CROSS JOIN LATERAL (SELECT count(*)::int AS n, min(m."offset") AS first FROM (${offsets}) m) l
         LEFT JOIN events e ON e."offset" = l.first)`;
    });
    const { rows } = await sql.query<{ k: number; n: number; oldest_ms: number | null }>(parts.join(' UNION ALL '), params);
    for (const r of rows) lags[Number(r.k)] = { events: Number(r.n), oldestMs: optionalMs(r.oldest_ms) };
  }
  return keyOf.map((k) => lags[k] as Lag);
}
