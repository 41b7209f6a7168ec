import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ErrorCodes, hasCode } from '@herald/core';
import { type CatalogStore, createCatalogStore, OBSERVED_PER_TYPE } from './catalog-store.ts';
import type { Store } from './types.ts';

/**
 * The catalog's repository (migration 009), on a fresh store of either driver: `open` gives an
 * empty store (the suite migrates it), `cleanup` runs after it is closed.
 */
export function catalogStoreSuite(name: string, open: () => Promise<Store>, cleanup: () => Promise<void> = async () => {}): void {
  describe(`catalog store: ${name}`, () => {
    let store: Store;
    let catalog: CatalogStore;
    before(async () => {
      store = await open();
      await store.migrate();
      catalog = createCatalogStore(store.sql);
    });
    after(async () => {
      await store?.close();
      await cleanup();
    });

    const BIG = 1 << 30;
    /** No bound on the types observed. */
    const ANY = 1_000_000;
    const schemaV1 = { type: 'object', properties: { amount: { type: 'integer' } }, required: ['amount'] };
    const schemaV2 = { type: 'object', properties: { amount: { type: 'integer' }, currency: { type: 'string' } }, required: ['amount'] };

    test('an entry with versions: the latest comes with the entry, every one with versions(); validate and example kept', async () => {
      assert.equal(await catalog.entry('billing', 'invoice.paid'), undefined);
      await catalog.put({
        sender: 'billing',
        type: 'invoice.paid',
        description: 'An invoice was paid',
        example: { amount: 5 },
        validate: false,
        newVersion: { version: 1, schema: schemaV1 },
      });
      await catalog.put({
        sender: 'billing',
        type: 'invoice.paid',
        description: 'Paid, with its currency',
        example: { amount: 5, currency: 'EUR' },
        validate: true,
        newVersion: { version: 2, schema: schemaV2 },
      });
      const e = await catalog.entry('billing', 'invoice.paid');
      assert.ok(e);
      assert.equal(e.description, 'Paid, with its currency');
      assert.deepEqual(e.example, { amount: 5, currency: 'EUR' });
      assert.equal(e.validate, true);
      assert.equal(e.latest?.version, 2);
      assert.deepEqual(e.latest?.schema, schemaV2);
      assert.deepEqual(
        (await catalog.versions('billing', 'invoice.paid', 100)).map((v) => [v.version, v.schema]),
        [
          [1, schemaV1],
          [2, schemaV2],
        ],
      );
      assert.deepEqual(await catalog.schema('billing', 'invoice.paid', 1), schemaV1);
      assert.equal(await catalog.schema('billing', 'invoice.paid', 3), undefined);
      assert.deepEqual(await catalog.validated(), [{ sender: 'billing', type: 'invoice.paid', version: 2 }]);
    });

    test('a version taken already: CONFLICT, and nothing of that write is kept', async () => {
      const err = await catalog
        .put({
          sender: 'billing',
          type: 'invoice.paid',
          description: 'lost',
          example: undefined,
          validate: false,
          newVersion: { version: 2, schema: {} },
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(hasCode(err, ErrorCodes.CONFLICT), String(err));
      const e = await catalog.entry('billing', 'invoice.paid');
      assert.equal(e?.description, 'Paid, with its currency', 'the entry was not changed either');
      // Without a new version only the entry changes.
      await catalog.put({ sender: 'billing', type: 'invoice.paid', description: undefined, example: undefined, validate: false });
      const again = await catalog.entry('billing', 'invoice.paid');
      assert.equal(again?.description, undefined);
      assert.equal(again?.example, undefined);
      assert.equal(again?.latest?.version, 2);
      assert.deepEqual(await catalog.validated(), []);
    });

    test('observed producers and consumers: counts add up, first and last seen widen; types only observed are listed', async () => {
      await catalog.recordProducers(
        [
          { sender: 'billing', type: 'invoice.paid', userId: '', events: 3, firstSeen: 1_000_000, lastSeen: 2_000_000 },
          { sender: 'billing', type: 'invoice.paid', userId: 'herald-billing', events: 1, firstSeen: 1_500_000, lastSeen: 1_500_000 },
          { sender: 'shipping', type: 'parcel.sent', userId: '', events: 2, firstSeen: 1_000_000, lastSeen: 1_000_000 },
        ],
        ANY,
      );
      await catalog.recordProducers(
        [{ sender: 'billing', type: 'invoice.paid', userId: '', events: 4, firstSeen: 900_000, lastSeen: 3_000_000 }],
        ANY,
      );
      await catalog.recordConsumers([
        { sender: 'billing', type: 'invoice.paid', kind: 'subscription', name: 'ledger', firstSeen: 1_000_000, lastSeen: 2_000_000 },
        { sender: 'billing', type: 'invoice.paid', kind: 'exchange', name: 'crm.feed', firstSeen: 1_000_000, lastSeen: 1_000_000 },
      ]);
      await catalog.recordConsumers([
        { sender: 'billing', type: 'invoice.paid', kind: 'subscription', name: 'ledger', firstSeen: 1_500_000, lastSeen: 4_000_000 },
      ]);
      const t = await catalog.get('billing', 'invoice.paid');
      assert.ok(t?.entry);
      assert.deepEqual(
        t.producers.map((p) => [p.userId, p.events, p.firstSeen, p.lastSeen]),
        [
          ['', 7, 900_000, 3_000_000],
          ['herald-billing', 1, 1_500_000, 1_500_000],
        ],
      );
      assert.deepEqual(
        t.consumers.map((c) => [c.kind, c.name, c.firstSeen, c.lastSeen]),
        [
          ['exchange', 'crm.feed', 1_000_000, 1_000_000],
          ['subscription', 'ledger', 1_000_000, 4_000_000],
        ],
      );
      const all = await catalog.list({ limit: 100, maxBytes: BIG });
      assert.deepEqual(
        all.types.map((x) => [x.sender, x.type, x.entry !== undefined]),
        [
          ['billing', 'invoice.paid', true],
          ['shipping', 'parcel.sent', false],
        ],
      );
      assert.equal(all.next, undefined);
      const first = await catalog.list({ limit: 1, maxBytes: BIG });
      assert.deepEqual(
        first.types.map((x) => x.type),
        ['invoice.paid'],
      );
      assert.deepEqual(first.next, { sender: 'billing', type: 'invoice.paid' });
      const second = await catalog.list({ limit: 1, after: first.next, maxBytes: BIG });
      assert.deepEqual(
        second.types.map((x) => x.type),
        ['parcel.sent'],
      );
      assert.equal(second.next, undefined);
      const observed = await catalog.get('shipping', 'parcel.sent');
      assert.equal(observed?.entry, undefined);
      assert.equal(observed?.producers[0]?.events, 2);
      assert.equal(await catalog.get('nobody', 'nothing'), undefined);
    });

    test('delete takes the entry, its versions and what was observed; false when there was nothing', async () => {
      assert.equal(await catalog.delete('billing', 'invoice.paid'), true);
      assert.equal(await catalog.get('billing', 'invoice.paid'), undefined);
      assert.deepEqual(await catalog.versions('billing', 'invoice.paid', 100), []);
      assert.equal(await catalog.delete('billing', 'invoice.paid'), false);
      assert.equal(await catalog.delete('shipping', 'parcel.sent'), true);
      assert.deepEqual(await catalog.list({ limit: 100, maxBytes: BIG }), { types: [], next: undefined });
    });

    test('pages end early once their schemas and examples reach maxBytes (at least one type each)', async () => {
      const big = { type: 'object', description: 'x'.repeat(10_000) };
      for (const t of ['a', 'b', 'c'])
        await catalog.put({
          sender: 'pages',
          type: t,
          description: undefined,
          example: undefined,
          validate: false,
          newVersion: { version: 1, schema: big },
        });
      const seen: string[] = [];
      let after: { sender: string; type: string } | undefined;
      let pages = 0;
      do {
        const page = await catalog.list({ limit: 100, after, maxBytes: 5_000 });
        seen.push(...page.types.map((t) => t.type));
        assert.equal(page.types.length, 1, 'a 10 kB schema passes a 5 kB bound alone');
        after = page.next;
        pages++;
      } while (after !== undefined && pages < 10);
      assert.deepEqual(seen, ['a', 'b', 'c']);
      assert.equal((await catalog.list({ limit: 100, maxBytes: 1 })).types.length, 1, 'one type even past the bound');
      for (const t of ['a', 'b', 'c']) await catalog.delete('pages', t);
    });

    test('observations read per type: at most OBSERVED_PER_TYPE, the most recently seen', async () => {
      const rows = Array.from({ length: OBSERVED_PER_TYPE + 20 }, (_, i) => ({
        sender: 'many',
        type: 'consumers',
        kind: 'subscription' as const,
        name: `sub-${String(i).padStart(4, '0')}`,
        firstSeen: 1_000_000,
        lastSeen: 1_000_000 + i,
      }));
      await catalog.recordProducers([{ sender: 'many', type: 'consumers', userId: '', events: 1, firstSeen: 1, lastSeen: 1 }], ANY);
      await catalog.recordConsumers(rows);
      const t = await catalog.get('many', 'consumers');
      assert.equal(t?.consumers.length, OBSERVED_PER_TYPE);
      assert.equal(t?.consumers[0]?.name, 'sub-0020', 'the 20 seen longest ago are left out');
      await catalog.delete('many', 'consumers');
    });

    test('keys and load: names a page at a time without content, then the content of the keys asked for', async () => {
      for (const t of ['k1', 'k2', 'k3'])
        await catalog.put({ sender: 'keys', type: t, description: t, example: undefined, validate: t === 'k2', newVersion: undefined });
      await catalog.recordProducers([{ sender: 'keys', type: 'k4', userId: '', events: 1, firstSeen: 1, lastSeen: 1 }], ANY);
      const first = await catalog.keys({ limit: 2, after: { sender: 'keys', type: '' } });
      assert.deepEqual(first, [
        { sender: 'keys', type: 'k1' },
        { sender: 'keys', type: 'k2' },
      ]);
      const rest = await catalog.keys({ limit: 10, after: first[1] });
      assert.deepEqual(
        rest.filter((k) => k.sender === 'keys').map((k) => k.type),
        ['k3', 'k4'],
      );
      const loaded = await catalog.load(
        [
          { sender: 'keys', type: 'k1' },
          { sender: 'keys', type: 'gone' },
          { sender: 'keys', type: 'k4' },
        ],
        BIG,
      );
      assert.deepEqual(
        loaded.map((t) => [t.type, t.entry?.description ?? null, t.producers.length]),
        [
          ['k1', 'k1', 0],
          ['k4', null, 1],
        ],
      );
      const counts = await catalog.counts();
      assert.ok(counts.entries >= 3 && counts.validated >= 1, JSON.stringify(counts));
      for (const t of ['k1', 'k2', 'k3', 'k4']) await catalog.delete('keys', t);
    });

    test('versions: the newest `limit`, oldest first; the entry counts them', async () => {
      for (let v = 1; v <= 5; v++)
        await catalog.put({
          sender: 'vers',
          type: 'many',
          description: undefined,
          example: undefined,
          validate: false,
          newVersion: { version: v, schema: { type: 'object', minProperties: v } },
        });
      assert.deepEqual(
        (await catalog.versions('vers', 'many', 3)).map((v) => v.version),
        [3, 4, 5],
      );
      assert.equal((await catalog.entry('vers', 'many'))?.versionCount, 5);
      await catalog.delete('vers', 'many');
    });

    test('observed types are bounded: a new type past maxTypes is not recorded, known ones go on; old rows are purged', async () => {
      const known = (await catalog.keys({ limit: 100_000 })).length;
      const row = (type: string, lastSeen: number) => ({ sender: 'bound', type, userId: '', events: 1, firstSeen: lastSeen, lastSeen });
      await catalog.recordProducers([row('a', 1_000)], known + 1);
      await catalog.recordProducers([row('b', 1_000), row('a', 2_000)], known + 1);
      assert.ok(await catalog.get('bound', 'a'));
      assert.equal((await catalog.get('bound', 'a'))?.producers[0]?.events, 2, 'a known type goes on counting');
      assert.equal(await catalog.get('bound', 'b'), undefined, 'a new type past the bound is not recorded');
      await catalog.recordConsumers([{ sender: 'bound', type: 'b', kind: 'exchange', name: 'x', firstSeen: 1_000, lastSeen: 1_000 }]);
      assert.equal(await catalog.get('bound', 'b'), undefined, 'nor its consumers');
      await catalog.recordProducers([row('c', 10_000)], ANY);
      await catalog.recordConsumers([{ sender: 'bound', type: 'a', kind: 'exchange', name: 'x', firstSeen: 1_000, lastSeen: 1_000 }]);
      assert.equal(await catalog.purgeObserved(5_000), 2, 'the producer and the consumer of a, last seen before');
      assert.equal(await catalog.get('bound', 'a'), undefined);
      assert.ok(await catalog.get('bound', 'c'));
      await catalog.delete('bound', 'c');
    });

    test('text and JSON come back as written: unicode, large integers, nesting, key order', async () => {
      const example = { zebra: 1, note: 'żółw — 🐢', nested: { a: [1, 2, { b: null }] }, big: 9007199254740991 };
      const schema = { type: 'object', required: ['zebra'], properties: { zebra: { type: 'integer' } } };
      await catalog.put({
        sender: 'u_1',
        type: 'a.b-c',
        description: 'Ünïcödé',
        example,
        validate: false,
        newVersion: { version: 7, schema },
      });
      const e = await catalog.entry('u_1', 'a.b-c');
      assert.equal(e?.description, 'Ünïcödé');
      assert.equal(JSON.stringify(e?.example), JSON.stringify(example), 'the keys in the order written');
      assert.equal(JSON.stringify(e?.latest?.schema), JSON.stringify(schema));
      assert.equal(e?.latest?.version, 7);
      await catalog.delete('u_1', 'a.b-c');
    });
  });
}
