import { type Pattern, type SelectorInput, selectorPatterns, sqlPredicate } from '@herald/core';

const ANY = '*';

/** How a selector query over the log reads it. */
export interface MatchingOffsets {
  /** Conditions every matching event meets besides the selector (offset and time bounds), their parameters in `params` already. */
  readonly bounds?: readonly string[] | undefined;
  /** A second selector every event must also match (a replay's selector within a subscription's). */
  readonly also?: SelectorInput | undefined;
  /** The order of the offsets, and which end `limit` keeps. Default ASC. */
  readonly order?: 'ASC' | 'DESC' | undefined;
  /** At most this many offsets (SQL: a literal or a parameter); absent, all of them, in no order. */
  readonly limit?: string | number | undefined;
}

/**
 * The offsets of the events matching `selector` (absent: every event), as a subquery whose one
 * column is "offset", with its parameters appended to `params`. Every query of the log by selector
 * is built here, for one rule: each selector pattern becomes its own branch, and the branches are
 * merged by UNION. A branch names one pattern, so it reads the index made for it ((sender, type,
 * offset), (type, offset) or (sender, offset)) and, ordered and limited, stops after `limit` rows
 * from the right end. An OR of the patterns in one WHERE cannot use those indexes that way: given
 * `ORDER BY offset LIMIT n` the planner walks the primary key and filters, which reads the whole log
 * when the matching events are rare or old.
 *
 * UNION, not UNION ALL: overlapping patterns (billing:*, *:invoice.paid) may find one event twice.
 * Counts of many selectors (lags) keep the rule without the UNION: one index range per pattern,
 * overlaps taken out by inclusion–exclusion (countTerms, countSegmentsSql).
 */
export function matchingOffsetsSql(params: unknown[], selector: SelectorInput | undefined, o: MatchingOffsets = {}): string {
  const dir = o.order ?? 'ASC';
  const patterns = selector === undefined ? ['*:*'] : selectorPatterns(selector);
  const also = o.also === undefined ? undefined : sqlPredicate(o.also, { firstParam: params.length + 1 });
  if (also !== undefined) params.push(...also.params);
  const tail = o.limit === undefined ? '' : ` ORDER BY "offset" ${dir} LIMIT ${o.limit}`;
  const branches = patterns.map((pattern) => {
    const pred = sqlPredicate(pattern, { firstParam: params.length + 1 });
    params.push(...pred.params);
    const where = [pred.sql, ...(also === undefined ? [] : [also.sql]), ...(o.bounds ?? [])].filter((c) => c !== 'TRUE');
    return `(SELECT "offset" FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''}${tail})`;
  });
  return branches.length === 1 ? (branches[0] as string) : `SELECT "offset" FROM (${branches.join(' UNION ')}) u${tail}`;
}

/**
 * Which index counts the events of a pattern: (sender, type, offset), (sender, offset),
 * (type, offset), or the primary key for `*:*`. Undefined for a type with wildcards (`a.*`, `#.b`),
 * which no index reads by range.
 */
export type PatternShape = 'sender-type' | 'sender' | 'type' | 'all';

export function patternShape(p: Pattern): PatternShape | undefined {
  if (p.type !== ANY && p.type.split('.').some((s) => s === '*' || s === '#')) return undefined;
  if (p.sender === ANY) return p.type === ANY ? 'all' : 'type';
  return p.type === ANY ? 'sender' : 'sender-type';
}

/** The events two patterns of literal names or `*` both match, as one such pattern; undefined when none. */
function intersect(a: Pattern, b: Pattern): Pattern | undefined {
  const one = (x: string, y: string) => (x === ANY ? y : y === ANY || x === y ? x : undefined);
  const sender = one(a.sender, b.sender);
  const type = one(a.type, b.type);
  return sender === undefined || type === undefined ? undefined : { sender, type };
}

/**
 * The count of a selector's events as a sum of per-pattern counts, for patterns of literal names
 * or `*` (patternShape defined): |P1 ∪ … ∪ Pn| by inclusion–exclusion, each intersection being
 * such a pattern again. Terms of one pattern are merged and zero coefficients dropped, so there are
 * at most (senders + 1) × (types + 1) of them however many patterns overlap. Undefined when a
 * pattern has a wildcard type. This is how counts stay exact without a UNION: each term is one
 * range of one index.
 */
export function countTerms(patterns: readonly Pattern[]): { pattern: Pattern; coefficient: number }[] | undefined {
  if (patterns.some((p) => patternShape(p) === undefined)) return undefined;
  const terms = new Map<string, { pattern: Pattern; coefficient: number }>();
  const add = (pattern: Pattern, c: number, into: Map<string, { pattern: Pattern; coefficient: number }>) => {
    const key = `${pattern.sender}:${pattern.type}`;
    const t = into.get(key);
    if (t) t.coefficient += c;
    else into.set(key, { pattern, coefficient: c });
  };
  for (const p of patterns) {
    const next = new Map<string, { pattern: Pattern; coefficient: number }>();
    for (const [k, t] of terms) next.set(k, { ...t });
    add(p, 1, next);
    for (const t of terms.values()) {
      const both = intersect(t.pattern, p);
      if (both !== undefined) add(both, -t.coefficient, next);
    }
    terms.clear();
    for (const [k, t] of next) if (t.coefficient !== 0) terms.set(k, t);
  }
  return [...terms.values()];
}

/**
 * One statement counting the matching events of many (pattern, range) segments at once, one
 * prepared text for any number of them: per shape, arrays unnested and joined LATERAL to one index
 * range scan each (`sender = s AND type = t AND "offset" > lo AND "offset" <= hi`), which reads
 * the index only. `capped`: each scan ordered by "offset" and cut at $1 rows (the first row still
 * the smallest offset), for ranges wider than $1 offsets; a narrower range holds fewer events than
 * that anyway (offsets are dense), and is counted without the cut, a quarter to a third faster.
 * `*:*` is arithmetic over the dense offsets, clamped to the log's ends. Parameters: $1 cap;
 * sender-type $2 ids int[], $3 senders, $4 types, $5 lo, $6 hi; sender $7 ids, $8 senders, $9 lo,
 * $10 hi; type $11 ids, $12 types, $13 lo, $14 hi; all $15 ids, $16 lo, $17 hi. Rows: id, n (int),
 * first (text, null when n = 0).
 */
export function countSegmentsSql(capped: boolean): string {
  const scan = (where: string) => {
    const range = `${where} AND "offset" > v.lo AND "offset" <= v.hi`;
    return capped
      ? `CROSS JOIN LATERAL (SELECT count(*)::int AS n, min(o."offset")::text AS first FROM (
           SELECT "offset" FROM events WHERE ${range} ORDER BY "offset" LIMIT $1::bigint) o) l`
      : `CROSS JOIN LATERAL (SELECT count(*)::int AS n, min("offset")::text AS first FROM events WHERE ${range}) l`;
  };
  return `SELECT v.id, l.n, l.first FROM unnest($2::int[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) v(id, s, t, lo, hi)
     ${scan('sender = v.s AND type = v.t')}
   UNION ALL SELECT v.id, l.n, l.first FROM unnest($7::int[], $8::text[], $9::bigint[], $10::bigint[]) v(id, s, lo, hi)
     ${scan('sender = v.s')}
   UNION ALL SELECT v.id, l.n, l.first FROM unnest($11::int[], $12::text[], $13::bigint[], $14::bigint[]) v(id, t, lo, hi)
     ${scan('type = v.t')}
   UNION ALL SELECT v.id, c.n, CASE WHEN c.n > 0 THEN (c.lo + 1)::text END AS first
     FROM unnest($15::int[], $16::bigint[], $17::bigint[]) v(id, lo, hi),
     LATERAL (SELECT GREATEST(v.lo, b.lo) AS lo, LEAST(v.hi, b.hi) AS hi FROM
       (SELECT COALESCE(min("offset") - 1, 0) AS lo, COALESCE(max("offset"), 0) AS hi FROM events) b) r,
     LATERAL (SELECT LEAST($1::bigint, GREATEST(0, r.hi - r.lo))::int AS n, r.lo) c`;
}
