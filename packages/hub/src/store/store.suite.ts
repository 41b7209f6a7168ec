import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createEvent, type HeraldEvent, uuidv7 } from '@herald/core';
import { selectorCases } from '@herald/testing';
import type { Store } from './types.ts';

function ev(sender: string, type: string, extra: Partial<Parameters<typeof createEvent>[0]> = {}): HeraldEvent {
  return createEvent({ sender, type, data: { sender, type }, ...extra });
}

function split(routingKey: string): [string, string] {
  const dot = routingKey.indexOf('.');
  return [routingKey.slice(0, dot), routingKey.slice(dot + 1)];
}

/**
 * The one suite both drivers must pass. `open` gives a fresh, empty store (the suite migrates it and
 * takes the writer lease); `cleanup` runs after it is closed (drop the database, remove the dir).
 */
export function storeSuite(name: string, open: () => Promise<Store>, cleanup: () => Promise<void> = async () => {}): void {
  describe(`store: ${name}`, () => {
    let store: Store;
    before(async () => {
      store = await open();
      await store.migrate();
      assert.equal(await store.acquireWriterLease(), true);
    });
    after(async () => {
      await store?.close();
      await cleanup();
    });

    test('migrations are idempotent', async () => {
      await store.migrate();
      await store.migrate();
    });

    test('append assigns dense offsets from 1 in batch order; duplicates are stored once', async () => {
      assert.equal(await store.headOffset(), 0n);
      const a = ev('s1', 't1');
      const b = ev('s1', 't2');
      const r1 = await store.append([a, b, a]);
      assert.deepEqual(
        r1.stored.map((e) => e.offset),
        [1n, 2n],
      );
      assert.deepEqual(r1.duplicates, [a.id]);
      const c = ev('s2', 't1');
      const r2 = await store.append([b, c]);
      assert.deepEqual(r2.duplicates, [b.id]);
      assert.deepEqual(
        r2.stored.map((e) => [e.id, e.offset]),
        [[c.id, 3n]],
      );
      assert.equal(await store.headOffset(), 3n);
      assert.deepEqual(await store.append([]), { stored: [], duplicates: [] });
    });

    test('a large batch is chunked in one transaction; offsets stay dense around duplicates', async () => {
      const head = await store.headOffset();
      // 4,600 events, 11 parameters each: more than one INSERT under the 65,535-parameter cap.
      const fresh = Array.from({ length: 4600 }, (_, i) => ev('big', `t${i % 5}`));
      const old = (await store.query({ limit: 1 }))[0];
      assert.ok(old);
      const batch = [old, ...fresh.slice(0, 2000), fresh[10]!, ...fresh.slice(2000), fresh[0]!];
      const { stored, duplicates } = await store.append(batch);
      assert.deepEqual(duplicates, [old.id, fresh[10]!.id, fresh[0]!.id]);
      assert.equal(stored.length, fresh.length);
      stored.forEach((e, i) => {
        assert.equal(e.offset, head + BigInt(i + 1));
        assert.equal(e.id, fresh[i]!.id);
      });
      assert.equal(await store.headOffset(), head + 4600n);
      const [first, last] = [await store.getByOffset(head + 1n), await store.getByOffset(head + 4600n)];
      assert.equal(first?.id, fresh[0]!.id);
      assert.equal(last?.id, fresh[4599]!.id);
    });

    test('batches of the sizes the ingest cuts to, and of others, append densely, twice over', async () => {
      for (let n = 1; n <= 600; n++) {
        const size = store.appendBatchSize(n);
        assert.ok(size >= 1 && size <= n, `appendBatchSize(${n}) = ${size}`);
        if (store.kind === 'embedded' || n <= 32) assert.equal(size, n);
        else assert.ok(size * 2 > n && (size & (size - 1)) === 0, `appendBatchSize(${n}) = ${size}: the largest power of two ≤ n`);
      }
      // Twice: the second round runs the prepared statements the first one made.
      for (let round = 0; round < 2; round++) {
        for (const n of [1, 2, 31, 32, 33, 64, 100, 256, store.appendBatchSize(500)]) {
          const head = await store.headOffset();
          const batch = Array.from({ length: n }, (_, i) => ev('sizes', `t${i % 3}`));
          const { stored, duplicates } = await store.append(batch);
          assert.deepEqual(duplicates, []);
          assert.deepEqual(
            stored.map((e) => [e.id, e.offset]),
            batch.map((e, i) => [e.id, head + BigInt(i + 1)]),
          );
          assert.equal((await store.getByOffset(head + BigInt(n)))?.id, batch[n - 1]?.id);
        }
      }
    });

    test('a failed append writes nothing and the next one continues densely', async () => {
      const head = await store.headOffset();
      const good = ev('fail', 'ok');
      await assert.rejects(store.append([good, { ...ev('fail', 'bad'), id: 'not-a-uuid' }]));
      assert.equal(await store.headOffset(), head);
      assert.equal(await store.getById(good.id), undefined);
      const { stored } = await store.append([good]);
      assert.equal(stored[0]?.offset, head + 1n);
    });

    test('bytes, headers and optional fields round trip exactly', async () => {
      const binary = Buffer.from([0, 255, 128, 10, 13, 0xc3, 0x28]);
      const e1 = createEvent({
        sender: 'bin',
        type: 'blob',
        data: binary,
        time: 1_700_000_000_123,
        subject: 'sub',
        correlationId: 'corr',
        causationId: 'cause',
        headers: { tenant: 'acme', 'x-y': '1' },
      });
      const e2 = createEvent({ sender: 'bin', type: 'empty', data: Buffer.alloc(0) });
      await store.append([e1, e2]);
      const got = await store.getById(e1.id);
      assert.ok(got);
      assert.deepEqual(got.data, binary);
      assert.equal(got.time, 1_700_000_000_123);
      assert.equal(got.contentType, 'application/octet-stream');
      assert.equal(got.subject, 'sub');
      assert.equal(got.correlationId, 'corr');
      assert.equal(got.causationId, 'cause');
      assert.deepEqual(got.headers, { tenant: 'acme', 'x-y': '1' });
      const byOffset = await store.getByOffset(got.offset);
      assert.equal(byOffset?.id, e1.id);
      assert.equal((await store.getById(e2.id))?.data.length, 0);
      assert.equal(await store.getById(uuidv7()), undefined);
      assert.equal(await store.getByOffset(999_999n), undefined);
    });

    test('selector queries agree with the shared case table', async () => {
      const start = await store.headOffset();
      const keys = [...new Set(selectorCases.flatMap((c) => [...c.match, ...c.miss]))];
      await store.append(keys.map((k) => ev(...split(k))));
      for (const c of selectorCases) {
        const rows = await store.query({ selector: c.selector, after: start, limit: 10_000 });
        const got = new Set(rows.map((r) => `${r.sender}.${r.type}`));
        for (const k of c.match) assert.ok(got.has(k), `${c.name}: ${k} should match`);
        for (const k of c.miss) assert.ok(!got.has(k), `${c.name}: ${k} should not match`);
        const offsets = rows.map((r) => r.offset);
        assert.deepEqual(
          offsets,
          [...offsets].sort((x, y) => (x < y ? -1 : 1)),
          'ascending',
        );
      }
    });

    test('after, upTo, limit, last, since and until', async () => {
      const base = 1_800_000_000_000;
      const batch = Array.from({ length: 30 }, (_, i) => ev('q', i % 2 ? 'odd' : 'even', { time: base + i * 1000 }));
      const { stored } = await store.append(batch);
      const first = stored[0]!.offset;
      const page = await store.query({ selector: 'q:*', after: first, limit: 5 });
      assert.deepEqual(
        page.map((e) => e.offset),
        [1n, 2n, 3n, 4n, 5n].map((n) => first + n),
      );
      const last = await store.query({ selector: 'q:odd, q:even', last: 3, limit: 100 });
      assert.deepEqual(
        last.map((e) => e.offset),
        stored.slice(-3).map((e) => e.offset),
      );
      const lastOdd = await store.query({ selector: 'q:odd', last: 2, limit: 100 });
      assert.deepEqual(
        lastOdd.map((e) => e.id),
        [batch[27]!.id, batch[29]!.id],
      );
      const timed = await store.query({ selector: 'q:*', since: base + 10_000, until: base + 13_000, limit: 100 });
      assert.deepEqual(
        timed.map((e) => e.id),
        batch.slice(10, 13).map((e) => e.id),
      );
      const upTo = await store.query({ selector: 'q:*', after: first, upTo: first + 2n, limit: 100 });
      assert.equal(upTo.length, 2);
      assert.deepEqual(await store.query({ selector: 'q:*', limit: 0 }), []);
      const lastAfter = await store.query({ selector: 'q:odd', after: stored[25]!.offset, last: 10, limit: 100 });
      assert.deepEqual(
        lastAfter.map((e) => e.id),
        [batch[27]!.id, batch[29]!.id],
      );
      const lastCapped = await store.query({ selector: 'q:*', last: 10, limit: 4 });
      assert.deepEqual(
        lastCapped.map((e) => e.offset),
        stored.slice(-4).map((e) => e.offset),
      );
      const overlapping = await store.query({ selector: 'q:*, *:odd', after: first, upTo: first + 4n, limit: 100 });
      assert.deepEqual(
        overlapping.map((e) => e.offset),
        [1n, 2n, 3n, 4n].map((n) => first + n),
        'an event two patterns match comes back once',
      );
      const untilOnly = await store.query({ selector: 'q:*', until: base + 2000, limit: 100 });
      assert.deepEqual(
        untilOnly.map((e) => e.id),
        batch.slice(0, 2).map((e) => e.id),
      );
    });

    test('dead letters keep the reason and the bytes', async () => {
      const body = Buffer.from([1, 2, 3, 0]);
      await store.addDeadLetters([
        {
          reason: 'bad routing key',
          code: 'INVALID_EVENT',
          exchange: 'herald.ingest',
          routingKey: 'x',
          properties: { appId: 'a' },
          body,
          at: 1_700_000_000_000,
        },
      ]);
      const [dl] = await store.listDeadLetters(10);
      assert.ok(dl);
      assert.equal(dl.reason, 'bad routing key');
      assert.equal(dl.code, 'INVALID_EVENT');
      assert.equal(dl.routingKey, 'x');
      assert.deepEqual(dl.properties, { appId: 'a' });
      assert.deepEqual(dl.body, body);
      assert.equal(dl.at, 1_700_000_000_000);
    });

    test('hub state round trips JSON', async () => {
      assert.equal(await store.getState('missing'), undefined);
      await store.setState('checkpoint', { offset: '42' });
      await store.setState('checkpoint', { offset: '43' });
      assert.deepEqual(await store.getState('checkpoint'), { offset: '43' });
      // A JSON string stays a string (it must not be parsed twice).
      await store.setState('text', '5000');
      assert.equal(await store.getState('text'), '5000');
      await store.ping();
    });
  });
}
