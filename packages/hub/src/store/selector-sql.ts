import { type SelectorInput, selectorPatterns, sqlPredicate } from '@herald/core';

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
