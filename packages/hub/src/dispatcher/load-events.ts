import { parseSelector, type Selector } from '@herald/core';
import type { Store, StoredEvent } from '../store/types.ts';

/** Above this many distinct senders or sender×type pairs, a wider selector reads the range. */
const MAX_PATTERNS = 32;
const PAGE = 2000;

/** The narrowest cheap selector that covers every event given. */
function coveringSelector(events: readonly { sender: string; type: string }[]): Selector {
  const pairs = new Set<string>();
  const senders = new Set<string>();
  for (const e of events) {
    pairs.add(`${e.sender}:${e.type}`);
    senders.add(`${e.sender}:*`);
  }
  if (pairs.size <= MAX_PATTERNS) return parseSelector([...pairs]);
  if (senders.size <= MAX_PATTERNS) return parseSelector([...senders]);
  return parseSelector('*:*');
}

/**
 * Reads the events at `offsets` (ascending, each in the log) from the log, in offset order, through
 * the Store interface only: range queries over [first, last] narrowed to the senders and types of
 * the wanted events, page by page, keeping only the wanted offsets. Dense held ranges (the common
 * case: a paused busy flow) take one query per chunk; sparse ones read more rows but never hold
 * more than one page. Rejects when the store fails or an offset is missing from the log.
 */
export async function loadEvents(
  store: Pick<Store, 'query'>,
  offsets: readonly bigint[],
  pairs: readonly { sender: string; type: string }[],
): Promise<StoredEvent[]> {
  if (offsets.length === 0) return [];
  const wanted = new Set(offsets);
  const first = offsets[0] as bigint;
  const last = offsets[offsets.length - 1] as bigint;
  const selector = coveringSelector(pairs);
  const out: StoredEvent[] = [];
  let after = first - 1n;
  while (after < last) {
    const page = await store.query({ selector, after, upTo: last, limit: PAGE });
    if (page.length === 0) break;
    for (const e of page) if (wanted.has(e.offset)) out.push(e);
    after = (page[page.length - 1] as StoredEvent).offset;
  }
  if (out.length !== offsets.length)
    throw new Error(`the log lacks ${offsets.length - out.length} held event(s) between ${first} and ${last}`);
  return out;
}
