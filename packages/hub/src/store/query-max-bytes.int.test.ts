// Store.query with maxBytes, on both drivers: a result bounded in bytes is the prefix (in the
// query's order) of the result without the bound, stopped once the bodies reached it, never empty
// when something matches; queryMayHaveMore tells a caller reading chunks when to read again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createEvent } from '@herald/core';
import { createTestDatabase, type TestDatabase } from '@herald/testing';
import { openStore } from './open.ts';
import { eventQuerySql, queryMayHaveMore, type SqlStore } from './sql-store.ts';
import type { EventQuery, StoredEvent } from './types.ts';

/** Body sizes of the events stored, in order; two senders alternate. */
const SIZES = [10, 20, 30, 40, 50, 1, 1, 1, 300, 5, 70_000, 2, 3];

/** What a query bounded by `maxBytes` must return: the shortest prefix, in `order`, whose bodies reach it. */
function reference(rows: readonly StoredEvent[], maxBytes: number, order: 'asc' | 'desc'): bigint[] {
  const walk = order === 'asc' ? rows : [...rows].reverse();
  const out: StoredEvent[] = [];
  let before = 0;
  for (const e of walk) {
    if (before >= maxBytes) break;
    out.push(e);
    before += e.data.length;
  }
  return out.map((e) => e.offset).sort((a, b) => (a < b ? -1 : 1));
}

for (const kind of ['postgres', 'embedded'] as const) {
  describe(`Store.query with maxBytes (${kind})`, { timeout: 120_000 }, () => {
    let store: SqlStore;
    let db: TestDatabase | undefined;
    let dir: string | undefined;

    before(async () => {
      if (kind === 'postgres') {
        db = await createTestDatabase('maxbytes');
        store = await openStore({ url: db.url });
      } else {
        dir = mkdtempSync(join(tmpdir(), 'herald-maxbytes-'));
        store = await openStore({ dataDir: dir });
      }
      await store.migrate();
      assert.equal(await store.acquireWriterLease(), true);
      await store.append(
        SIZES.map((n, i) =>
          createEvent({ sender: i % 2 === 0 ? 'even' : 'odd', type: 'sized', data: Buffer.alloc(n, 97), contentType: 'text/plain' }),
        ),
      );
    });
    after(async () => {
      await store?.close();
      await db?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('the result is the prefix whose bodies reach maxBytes, at least one event, in every query shape', async () => {
      const shapes: Omit<EventQuery, 'maxBytes'>[] = [
        { limit: 100 },
        { limit: 5 },
        { selector: 'even:*', limit: 100 },
        // Two patterns: the UNION branch of the SQL.
        { selector: 'even:sized, odd:*', after: 2n, upTo: 12n, limit: 100 },
        { last: 4, limit: 4 },
        { selector: 'odd:*', last: 3, limit: 100 },
      ];
      for (const shape of shapes) {
        const all = await store.query(shape);
        assert.ok(all.length > 0);
        for (const maxBytes of [1, 10, 11, 30, 31, 60, 100, 101, 400, 70_000, 1_000_000]) {
          const q = { ...shape, maxBytes };
          const got = (await store.query(q)).map((e) => e.offset);
          const want = reference(all, maxBytes, shape.last === undefined ? 'asc' : 'desc');
          assert.deepEqual(
            got,
            want,
            `${JSON.stringify({ ...shape, after: String(shape.after), upTo: String(shape.upTo) })} maxBytes ${maxBytes}`,
          );
          assert.ok(got.length >= 1, 'never empty when events match');
        }
      }
      // Nothing matches: nothing, bound or not.
      assert.deepEqual(await store.query({ selector: 'none:*', limit: 10, maxBytes: 1 }), []);
      assert.deepEqual(await store.query({ after: 13n, limit: 10, maxBytes: 1 }), []);
    });

    test('reading in chunks bounded by bytes, until queryMayHaveMore says no, returns the whole log once, in order', async () => {
      for (const [limit, maxBytes] of [
        [4, 50],
        [100, 1],
        [3, 100_000],
        [100, 70_001],
      ] as const) {
        const seen: bigint[] = [];
        let after = 0n;
        let reads = 0;
        for (;;) {
          const q = { after, limit, maxBytes };
          const rows = await store.query(q);
          reads++;
          seen.push(...rows.map((e) => e.offset));
          if (!queryMayHaveMore(q, rows)) break;
          if (rows.length === 0) break;
          after = (rows[rows.length - 1] as StoredEvent).offset;
        }
        assert.deepEqual(
          seen,
          SIZES.map((_, i) => BigInt(i + 1)),
          `limit ${limit}, maxBytes ${maxBytes}`,
        );
        assert.ok(reads <= SIZES.length + 1);
      }
      // A short result whose bodies stayed under the bound is the end.
      assert.equal(queryMayHaveMore({ limit: 10, maxBytes: 1000 }, [{ data: Buffer.alloc(999) }]), false);
      assert.equal(queryMayHaveMore({ limit: 10, maxBytes: 1000 }, [{ data: Buffer.alloc(1000) }]), true);
      assert.equal(queryMayHaveMore({ limit: 1 }, [{ data: Buffer.alloc(1) }]), true);
      assert.equal(queryMayHaveMore({ limit: 2 }, [{ data: Buffer.alloc(1) }]), false);
    });

    test('without maxBytes the SQL is the plain one', () => {
      const plain = eventQuerySql({ selector: 'a:b, c:*', after: 1n, limit: 10 });
      const bounded = eventQuerySql({ selector: 'a:b, c:*', after: 1n, limit: 10, maxBytes: 100 });
      assert.ok(plain && bounded);
      assert.doesNotMatch(plain.sql, /octet_length|OVER/);
      assert.match(bounded.sql, /octet_length/);
    });
  });
}
