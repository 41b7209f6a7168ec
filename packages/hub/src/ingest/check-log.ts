import type { Store } from '../store/types.ts';

/** What a log holds, read page by page: for tests and the bench. */
export interface LogCheck {
  /** Rows read. */
  count: number;
  /** Distinct ids. */
  ids: Set<string>;
  /** Offsets that are not the previous one plus one (a gap, a repeat or a start other than 1). */
  offsetBreaks: number;
  head: bigint;
}

/** Reads the whole log in offset order and checks that offsets run 1, 2, 3… with no gap. */
export async function checkLog(store: Store, pageSize = 10_000): Promise<LogCheck> {
  const ids = new Set<string>();
  let count = 0;
  let breaks = 0;
  let after = 0n;
  for (;;) {
    const page = await store.query({ after, limit: pageSize });
    if (page.length === 0) break;
    for (const e of page) {
      if (e.offset !== after + 1n) breaks++;
      after = e.offset;
      ids.add(e.id);
      count++;
    }
  }
  return { count, ids, offsetBreaks: breaks, head: await store.headOffset() };
}
