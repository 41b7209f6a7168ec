// The catalog service's bounds and pages over a store in memory, and the AsyncAPI cache on a
// clock of its own: what the service decides, not what the database does (catalog-store.suite.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, hasCode } from '@herald/core';
import type { CatalogEntry, CatalogKey, CatalogStore, CatalogType } from '../store/index.ts';
import { AsyncApiCache } from './asyncapi-cache.ts';
import { Catalog } from './catalog.ts';
import { CATALOG_LIMITS } from './schemas.ts';

/** A store of `names` (sorted), with entries as `entries` says and counts as given. */
function memoryStore(o: {
  names?: CatalogKey[];
  entry?: Partial<CatalogEntry>;
  counts?: { entries: number; validated: number };
  reads?: number[];
}): CatalogStore {
  const names = [...(o.names ?? [])].sort((a, b) => (a.sender === b.sender ? (a.type < b.type ? -1 : 1) : a.sender < b.sender ? -1 : 1));
  const after = (k: CatalogKey, x: CatalogKey | undefined) =>
    x === undefined || k.sender > x.sender || (k.sender === x.sender && k.type > x.type);
  const typeOf = (k: CatalogKey): CatalogType => ({ ...k, entry: undefined, producers: [], consumers: [] });
  return {
    entry: async (sender: string, type: string) =>
      o.entry === undefined
        ? undefined
        : ({
            sender,
            type,
            description: undefined,
            example: undefined,
            validate: false,
            updatedAt: 0,
            latest: undefined,
            versionCount: 0,
            ...o.entry,
          } as CatalogEntry),
    counts: async () => o.counts ?? { entries: 0, validated: 0 },
    put: async () => {},
    get: async (sender: string, type: string) => typeOf({ sender, type }),
    versions: async () => [],
    keys: async (q: { limit: number; after?: CatalogKey }) => {
      const page = names.filter((k) => after(k, q.after)).slice(0, q.limit);
      o.reads?.push(page.length);
      return page;
    },
    load: async (keys: readonly CatalogKey[]) => keys.map(typeOf),
  } as unknown as CatalogStore;
}

const limited = (limit: string) => (err: unknown) => hasCode(err, ErrorCodes.LIMIT_EXCEEDED) && err.details?.limit === limit;

describe('Catalog bounds', () => {
  const schema = { type: 'object' };

  test('a new entry past maxEntries is LIMIT_EXCEEDED; an existing one can still be written', async () => {
    const full = { entries: CATALOG_LIMITS.maxEntries, validated: 0 };
    await assert.rejects(new Catalog(memoryStore({ counts: full })).put('billing', 'new.type', { schema }), limited('maxEntries'));
    await new Catalog(memoryStore({ counts: full, entry: {} })).put('billing', 'old.type', { schema, description: 'x' });
  });

  test('turning validate on past maxValidated is LIMIT_EXCEEDED; a type that validates already may be written', async () => {
    const full = { entries: 1, validated: CATALOG_LIMITS.maxValidated };
    await assert.rejects(
      new Catalog(memoryStore({ counts: full, entry: {} })).put('billing', 'a', { schema, validate: true }),
      limited('maxValidated'),
    );
    await new Catalog(memoryStore({ counts: full, entry: { validate: true } })).put('billing', 'a', { schema, validate: true });
    await new Catalog(memoryStore({ counts: full, entry: {} })).put('billing', 'a', { schema, validate: false });
  });

  test('a new schema version past maxVersions is LIMIT_EXCEEDED; the same schema again is not a new version', async () => {
    const latest = { version: CATALOG_LIMITS.maxVersions, schema, createdAt: 0 };
    const store = memoryStore({ entry: { latest, versionCount: CATALOG_LIMITS.maxVersions } });
    await assert.rejects(new Catalog(store).put('billing', 'a', { schema: { type: 'string' } }), (err: unknown) => {
      assert.ok(limited('maxVersions')(err));
      assert.match((err as Error).message, /has 100 schema versions, the most a type keeps: delete the type/);
      return true;
    });
    await new Catalog(store).put('billing', 'a', { schema, description: 'same schema' });
  });
});

describe('Catalog pages for a caller who sees some types', () => {
  const names = [
    { sender: 'alpha', type: 'secret' },
    ...Array.from({ length: 5 }, (_, i) => ({ sender: 'billing', type: `t${i}` })),
    { sender: 'zulu', type: 'secret' },
  ];
  const visible = (k: CatalogKey) => k.sender === 'billing';

  test('next is always the last type returned, never a hidden one; pages go on past hidden types to the end', async () => {
    const catalog = new Catalog(memoryStore({ names }));
    const seen: string[] = [];
    const nexts: string[] = [];
    let after: CatalogKey | undefined;
    for (let i = 0; i < 10; i++) {
      const page = await catalog.list({ after, limit: 2 }, visible);
      seen.push(...page.types.map((t) => `${t.sender}:${t.type}`));
      if (page.next === undefined) break;
      nexts.push(`${page.next.sender}:${page.next.type}`);
      assert.deepEqual(page.next, page.types.at(-1) && { sender: page.types.at(-1)?.sender, type: page.types.at(-1)?.type });
      after = page.next;
    }
    assert.deepEqual(seen, ['billing:t0', 'billing:t1', 'billing:t2', 'billing:t3', 'billing:t4']);
    assert.deepEqual(nexts, ['billing:t1', 'billing:t3'], 'the last page ends without a next: only hidden types follow');
  });

  test('no visible type at all: an empty page without next', async () => {
    const page = await new Catalog(memoryStore({ names })).list({ limit: 2 }, () => false);
    assert.deepEqual(page, { types: [], next: undefined });
  });

  test('an admin (every type visible) reads one batch of limit + 1 names', async () => {
    const reads: number[] = [];
    const page = await new Catalog(memoryStore({ names, reads })).list({ limit: 3 });
    assert.deepEqual(reads, [4]);
    assert.equal(page.types.length, 3);
    assert.deepEqual(page.next, { sender: 'billing', type: 't1' });
  });

  test('all(): the document of a caller holds its types only', async () => {
    const { types, cut } = await new Catalog(memoryStore({ names })).all(visible);
    assert.equal(cut, false);
    assert.deepEqual(
      types.map((t) => t.type),
      ['t0', 't1', 't2', 't3', 't4'],
    );
  });
});

describe('AsyncApiCache', () => {
  test('a flood of requests builds once; a change builds again on the next request, at most once per asyncApiMinAgeMs', async () => {
    let now = 1_000_000;
    const cache = new AsyncApiCache(() => now);
    let builds = 0;
    const build = async () => `doc ${++builds}`;
    const texts = await Promise.all(Array.from({ length: 1000 }, () => cache.get('admin', build)));
    assert.equal(builds, 1);
    assert.ok(texts.every((t) => t === 'doc 1'));
    cache.changed();
    assert.equal(await cache.get('admin', build), 'doc 1', 'changed within asyncApiMinAgeMs: kept');
    now += CATALOG_LIMITS.asyncApiMinAgeMs;
    assert.equal(await cache.get('admin', build), 'doc 2', 'changed: built again');
    now += CATALOG_LIMITS.asyncApiMaxAgeMs - 1;
    assert.equal(await cache.get('admin', build), 'doc 2', 'unchanged: kept until asyncApiMaxAgeMs');
    now += 1;
    assert.equal(await cache.get('admin', build), 'doc 3', 'older than asyncApiMaxAgeMs: built again (a change through another hub)');
  });

  test('one document per key; a failed build is not kept; at most asyncApiCached documents', async () => {
    const cache = new AsyncApiCache(() => 0);
    await assert.rejects(
      cache.get('a', async () => {
        throw new Error('store down');
      }),
      /store down/,
    );
    assert.equal(await cache.get('a', async () => 'a'), 'a');
    assert.equal(await cache.get('b', async () => 'b'), 'b');
    for (let i = 0; i < CATALOG_LIMITS.asyncApiCached; i++) await cache.get(`k${i}`, async () => 'x');
    let rebuilt = false;
    await cache.get('a', async () => {
      rebuilt = true;
      return 'a2';
    });
    assert.ok(rebuilt, 'the oldest documents went first');
  });
});
