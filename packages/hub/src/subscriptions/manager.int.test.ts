import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createEvent, ErrorCodes, hasCode, parseSelector, uuidv7 } from '@herald/core';
import { waitFor } from '@herald/testing';
import { connect } from 'amqplib';
import type { Store } from '../store/types.ts';
import { createRig, drain, offsetsOf, type Rig } from './test-kit.ts';
import type { DeliveredEvent, SubscriptionManager } from './types.ts';

const queueOf = (selector: string) => `herald.sub.${parseSelector(selector).hash}`;

for (const kind of ['postgres', 'embedded'] as const) {
  describe(`subscription manager (${kind} store + RabbitMQ)`, { timeout: 60_000 }, () => {
    let rig: Rig;
    let m: SubscriptionManager;

    before(async () => {
      rig = await createRig(kind, 'subs');
      m = await rig.manager();
    });
    after(async () => {
      await rig?.close();
    });

    test('subscriptions with one selector share one in-memory receiver; the last delete removes it; RabbitMQ holds no queue of theirs', async () => {
      const receivers = async () =>
        (await m.receiverDepths())
          .map((r) => r.queue)
          .filter((q) => [queueOf('qs:*'), queueOf('qs:x,qt:*')].includes(q))
          .sort();
      await m.create({ name: 'q-a', selector: 'qs:*' });
      await m.create({ name: 'q-b', selector: ' qs:* ' });
      await m.create({ name: 'q-c', selector: 'qs:x,qt:*' });
      assert.deepEqual(await receivers(), [queueOf('qs:*'), queueOf('qs:x,qt:*')].sort());
      assert.deepEqual(
        (await rig.vhost.queues()).map((q) => q.name).filter((n) => n.startsWith('herald.sub.')),
        [],
        'a subscription costs RabbitMQ no queue',
      );
      // identical create is idempotent, another selector is a conflict
      assert.equal((await m.create({ name: 'q-a', selector: 'qs:*' })).name, 'q-a');
      await assert.rejects(m.create({ name: 'q-a', selector: 'qt:*' }), (e) => hasCode(e, ErrorCodes.CONFLICT));
      await assert.rejects(m.create({ name: 'bad name', selector: 'qt:*' }), (e) => hasCode(e, ErrorCodes.INVALID_REQUEST));
      const view = await m.get('q-a');
      assert.equal(view?.queue, queueOf('qs:*'));
      assert.equal(view?.state, 'sleeping');

      assert.equal(await m.delete('q-a'), true);
      assert.deepEqual(await receivers(), [queueOf('qs:*'), queueOf('qs:x,qt:*')].sort(), 'q-b still uses qs:*');
      assert.equal(await m.delete('q-b'), true);
      assert.equal(await m.delete('q-b'), false);
      await m.delete('q-c');
      assert.deepEqual(await receivers(), []);
      const rows = await rig.store.sql.query('SELECT hash FROM receivers', []);
      assert.equal(rows.rows.length, 0);
    });

    test('catch-up from the log, then live; lag in get', async () => {
      const early = await rig.ingest([
        ['cu', 'a'],
        ['zz', 'a'],
        ['cu', 'b'],
      ]);
      await m.create({ name: 'cu', selector: 'cu:*', start: 'earliest' });
      const v = await m.get('cu');
      assert.ok((v?.lagEvents ?? 0) >= 2);
      const c = await m.attach({ name: 'cu', consumer: 'test' });
      await c.active;
      const got = await drain(c, (g) => g.length >= 2);
      assert.deepEqual(
        offsetsOf(got),
        [early[0], early[2]].map((e) => Number(e?.offset)),
      );
      const later = await rig.ingest([
        ['cu', 'c'],
        ['zz', 'b'],
        ['cu', 'd'],
      ]);
      await drain(c, (g) => g.length >= 4, { got });
      assert.deepEqual(
        offsetsOf(got).slice(2),
        [later[0], later[2]].map((e) => Number(e?.offset)),
      );
      assert.equal((await m.get('cu'))?.state, 'active');
      assert.equal((await m.get('cu'))?.consumer, 'test');
      await c.close();
      const after = await m.get('cu');
      assert.equal(after?.state, 'sleeping');
      assert.equal(after?.ackedOffset, later[2]?.offset);
      assert.equal(after?.lagEvents, 0);
      await m.delete('cu');
    });

    test('standby: a second consumer waits and takes over when the first closes, no offset twice', async () => {
      await m.create({ name: 'sb', selector: 'sb:*' });
      const c1 = await m.attach({ name: 'sb', consumer: 'one', maxInFlight: 10 });
      const c2 = await m.attach({ name: 'sb', consumer: 'two' });
      await c1.active;
      let c2Active = false;
      void c2.active.then(() => {
        c2Active = true;
      });
      const stored = await rig.ingest(Array.from({ length: 40 }, (_, i): [string, string] => [i % 3 === 0 ? 'other' : 'sb', 't']));
      const want = offsetsOf(stored.filter((e) => e.sender === 'sb'));
      const got1 = await drain(c1, (g) => g.length >= 10, { max: 4 });
      assert.equal(c2Active, false);
      await c1.close();
      await c2.active;
      const got2 = await drain(c2, (g) => g.length >= want.length - got1.length);
      assert.deepEqual([...offsetsOf(got1), ...offsetsOf(got2)], want);
      assert.equal(await c1.ended, 'closed');
      await c2.close();
      await m.delete('sb');
    });

    test('maxInFlight bounds what is delivered and not acknowledged', async () => {
      await m.create({ name: 'mf', selector: 'mf:*' });
      const c = await m.attach({ name: 'mf', consumer: 'test', maxInFlight: 3 });
      await rig.ingest(Array.from({ length: 10 }, (): [string, string] => ['mf', 't']));
      const first = await c.next(100);
      assert.ok(first.length <= 3 && first.length > 0);
      let total = first.length;
      while (total < 3) total += (await c.next(100)).length;
      assert.deepEqual(await c.next(100, AbortSignal.timeout(300)), []);
      assert.throws(
        () => c.ack(10_000_000n),
        (e) => hasCode(e, ErrorCodes.INVALID_REQUEST),
      );
      c.ack(first[0]?.offset as bigint);
      const more = await c.next(100);
      assert.equal(more.length, 1);
      await c.close();
      await m.delete('mf');
    });

    test('a pause: the subscription does not pass a held event; after resume it gets it in order', async () => {
      await m.create({ name: 'ph', selector: 'ph:*' });
      const c = await m.attach({ name: 'ph', consumer: 'test' });
      const p = await rig.dispatcher.createPause({ selector: 'ph:held', ttl: 60 });
      const first = await rig.ingest([
        ['ph', 'a'],
        ['ph', 'held'],
        ['ph', 'b'],
        ['ph', 'c'],
      ]);
      const got = await drain(c, (g) => g.length >= 1);
      assert.deepEqual(offsetsOf(got), [Number(first[0]?.offset)]);
      assert.deepEqual(await c.next(100, AbortSignal.timeout(700)), [], 'nothing passes the held event');
      await rig.dispatcher.resume(p.id);
      await drain(c, (g) => g.length >= 4, { got });
      const later = await rig.ingest([['ph', 'd']]);
      await drain(c, (g) => g.length >= 5, { got });
      assert.deepEqual(
        offsetsOf(got),
        [...first, ...later].map((e) => Number(e.offset)),
      );
      await c.close();
      await m.delete('ph');
    });

    test('HTTP pull and ack; CONFLICT while a consumer is attached; replay into the subscription', async () => {
      await m.create({ name: 'hp', selector: 'hp:*' });
      const stored = await rig.ingest([
        ['hp', 'a'],
        ['hp', 'b'],
        ['xx', 'a'],
        ['hp', 'c'],
      ]);
      const want = offsetsOf(stored.filter((e) => e.sender === 'hp'));
      const first = await m.pull('hp', { max: 2, waitMs: 0 });
      assert.deepEqual(offsetsOf(first), want.slice(0, 2));
      // unacknowledged: the same again
      assert.deepEqual(offsetsOf(await m.pull('hp', { max: 2, waitMs: 0 })), want.slice(0, 2));
      await m.ack('hp', first[1]?.offset as bigint);
      assert.equal((await m.get('hp'))?.consumer, 'http');
      await assert.rejects(m.ack('hp', 10_000_000n), (e) => hasCode(e, ErrorCodes.INVALID_REQUEST));
      // long poll: woken by a live event
      const waiting = m.pull('hp', { max: 10, waitMs: 5000 });
      assert.deepEqual(offsetsOf(await waiting), want.slice(2));
      await m.ack('hp', BigInt(want[2] as number));
      const t0 = Date.now();
      const waiting2 = m.pull('hp', { max: 10, waitMs: 5000 });
      await sleep(100);
      const live = await rig.ingest([['hp', 'd']]);
      assert.deepEqual(offsetsOf(await waiting2), [Number(live[0]?.offset)]);
      assert.ok(Date.now() - t0 < 3000);
      await m.ack('hp', live[0]?.offset as bigint);

      const c = await m.attach({ name: 'hp', consumer: 'grpc test' });
      await assert.rejects(m.pull('hp', { max: 1, waitMs: 0 }), (e) => hasCode(e, ErrorCodes.CONFLICT));
      const r1 = uuidv7();
      const count = await m.replay('hp', { id: r1, selector: parseSelector('hp:a,hp:c'), after: 0n, upTo: 1_000_000n });
      assert.equal(count, 2);
      const pending = await rig.dispatcher.getReplay(r1);
      assert.deepEqual([pending?.target, pending?.status, pending?.count], [{ subscription: 'hp' }, 'pending', 0]);
      const got: DeliveredEvent[] = [];
      await drain(c, (g) => g.length >= 2, { got });
      assert.deepEqual(
        got.map((e) => [Number(e.offset), e.replay]),
        [
          [want[0], r1],
          [want[2], r1],
        ],
      );
      const done = await rig.dispatcher.getReplay(r1);
      assert.deepEqual([done?.status, done?.count, done?.selector.canonical], ['done', 2, 'hp:a,hp:c']);
      assert.ok(done?.finishedAt !== undefined);
      const next = await rig.ingest([['hp', 'e']]);
      await drain(c, (g) => g.length >= 3, { got });
      assert.equal(got[2]?.offset, next[0]?.offset);
      assert.equal(got[2]?.replay, undefined);
      await c.close();
      await assert.rejects(m.pull('nope', { max: 1, waitMs: 0 }), (e) => hasCode(e, ErrorCodes.NOT_FOUND));
      await m.delete('hp');
    });

    test('after a crash (acknowledgements not saved) a new manager re-delivers from the saved offset, never skips', async () => {
      // A "crashed" manager: it never saves (flush every hour) and is not stopped before the next one starts.
      const crashed = await rig.manager({ flushMs: 3_600_000 });
      await crashed.create({ name: 'cr', selector: 'cr:*', start: 'new' });
      const stored = await rig.ingest(Array.from({ length: 20 }, (): [string, string] => ['cr', 't']));
      const c = await crashed.attach({ name: 'cr', consumer: 'test' });
      const got = await drain(c, (g) => g.length >= 8, { max: 4 });
      assert.ok(got.length >= 8);
      const m2 = await rig.manager();
      assert.equal((await m2.get('cr'))?.ackedOffset, (stored[0]?.offset as bigint) - 1n);
      const c2 = await m2.attach({ name: 'cr', consumer: 'test' });
      // both managers get the live events now; the new one's consumer reads what it lacks from the log
      const later = await rig.ingest(Array.from({ length: 20 }, (_, i): [string, string] => [i % 2 ? 'cr' : 'zz', 't']));
      const all = await drain(c2, (g) => g.length >= 30);
      assert.deepEqual(offsetsOf(all), offsetsOf([...stored, ...later.filter((e) => e.sender === 'cr')]));
      await c2.close();
      await c.close();
      await crashed.stop();
      await m2.delete('cr');
      await m2.stop();
    });

    test('live events reach an attached consumer from memory: the log is not read for them', async () => {
      let queries = 0;
      const counting: Pick<Store, 'query' | 'headOffset'> = {
        query: (q) => {
          queries++;
          return rig.store.query(q);
        },
        headOffset: () => rig.store.headOffset(),
      };
      const lm = await rig.manager({ store: counting });
      await lm.create({ name: 'lv', selector: 'lv:*', start: 'new' });
      const c = await lm.attach({ name: 'lv', consumer: 'test' });
      await c.active;
      // The first read finds the log empty for it, and the consumer goes live.
      assert.deepEqual(await c.next(10, AbortSignal.timeout(200)), []);
      const before = queries;
      const want: number[] = [];
      const got: DeliveredEvent[] = [];
      for (let i = 0; i < 20; i++) {
        const stored = await rig.ingest(Array.from({ length: 25 }, (_, j): [string, string] => [j % 5 ? 'lv' : 'zz', 't']));
        want.push(...offsetsOf(stored.filter((e) => e.sender === 'lv')));
        await drain(c, (g) => g.length >= want.length, { got });
      }
      assert.deepEqual(offsetsOf(got), want);
      // 20 batches went live; at most the idle look at the log (every 2 s) read it meanwhile.
      assert.ok(queries - before <= 3, `${queries - before} log reads for 20 live batches`);
      await c.close();
      await lm.delete('lv');
      await lm.stop();
    });

    test('a replay cut short by a stop continues in a new manager from its saved position: each offset once, then done', async () => {
      const m1 = await rig.manager({ chunkSize: 5 });
      await m1.create({ name: 'rp', selector: 'rp:*', start: 'new' });
      const stored = await rig.ingest(Array.from({ length: 30 }, (_, i): [string, string] => [i % 3 ? 'rp' : 'zz', 't']));
      const want = offsetsOf(stored.filter((e) => e.sender === 'rp'));
      const c = await m1.attach({ name: 'rp', consumer: 'test' });
      await drain(c, (g) => g.length >= want.length);
      const id = uuidv7();
      assert.equal(await m1.replay('rp', { id, selector: parseSelector('rp:*'), after: 0n, upTo: 1_000_000n }), want.length);
      const part = await drain(c, (g) => g.length >= 8, { max: 4 });
      assert.equal(part.length, 8);
      const running = await rig.dispatcher.getReplay(id);
      assert.deepEqual([running?.status, running?.count, running?.position], ['running', 8, part[7]?.offset]);
      await m1.stop();
      assert.equal(await c.ended, 'hub stopping');
      // the dispatcher leaves it alone: it is not a replay into the flow
      assert.equal((await rig.dispatcher.getReplay(id))?.status, 'running');

      const m2 = await rig.manager({ chunkSize: 5 });
      const c2 = await m2.attach({ name: 'rp', consumer: 'test' });
      const rest = await drain(c2, (g) => g.length >= want.length - 8, { max: 4 });
      assert.ok([...part, ...rest].every((e) => e.replay === id));
      assert.deepEqual([...offsetsOf(part), ...offsetsOf(rest)], want);
      // the next read finds the replay's end: done; nothing more comes
      assert.deepEqual(await c2.next(10, AbortSignal.timeout(300)), []);
      const done = await rig.dispatcher.getReplay(id);
      assert.deepEqual([done?.status, done?.count, done?.target], ['done', want.length, { subscription: 'rp' }]);

      // deleting a subscription fails its unfinished replay
      await c2.close();
      const id2 = uuidv7();
      assert.equal(await m2.replay('rp', { id: id2, selector: parseSelector('rp:*'), after: 0n, upTo: 1_000_000n }), want.length);
      await m2.delete('rp');
      const failed = await rig.dispatcher.getReplay(id2);
      assert.equal(failed?.status, 'failed');
      assert.match(failed?.error ?? '', /deleted/);
      await m2.stop();
    });

    test('catch-up and a replay into the subscription read in chunks bounded in bytes: 20 events of 1 MiB, each once, in order', async () => {
      const big = Array.from({ length: 20 }, (_, i) =>
        createEvent({ sender: 'mb', type: 'blob', data: Buffer.alloc(1024 * 1024, i), contentType: 'application/octet-stream' }),
      );
      const stored = await rig.ingestEvents(big);
      const want = offsetsOf(stored);
      await m.create({ name: 'mb', selector: 'mb:*', start: 'earliest' });
      const c = await m.attach({ name: 'mb', consumer: 'bytes test' });
      await c.active;
      const got: DeliveredEvent[] = [];
      await drain(c, (g) => g.length >= 20, { got });
      assert.deepEqual(offsetsOf(got), want);
      for (const e of got) await m.ack('mb', e.offset);
      const r = uuidv7();
      assert.equal(await m.replay('mb', { id: r, selector: parseSelector('mb:*'), after: 0n, upTo: 1_000_000n }), 20);
      await drain(c, (g) => g.length >= 40, { got });
      assert.deepEqual(offsetsOf(got.slice(20)), want);
      assert.ok(got.slice(20).every((e) => e.replay === r));
      await waitFor('replay done', async () => (await rig.dispatcher.getReplay(r))?.status === 'done', 10_000);
      assert.equal((await rig.dispatcher.getReplay(r))?.count, 20);
      await c.close();
      await m.delete('mb');
    });

    test('stop and restart: a new manager restores state and resumes after the acknowledged offset', async () => {
      const m1 = await rig.manager();
      await m1.create({ name: 'rs-active', selector: 'rs:*', start: 'new' });
      await m1.create({ name: 'rs-sleep', selector: 'rs:*', start: 'new' });
      const stored = await rig.ingest(Array.from({ length: 30 }, (): [string, string] => ['rs', 't']));
      const c = await m1.attach({ name: 'rs-active', consumer: 'test' });
      const got = await drain(c, (g) => g.length >= 12, { max: 6 });
      const acked = got[got.length - 1]?.offset as bigint;
      // after the flush interval it is saved even while attached
      await waitFor(
        'the acknowledged offset saved',
        async () => {
          const r = await rig.store.sql.query<{ a: string }>(
            `SELECT acked_offset::text AS a FROM subscriptions WHERE name = 'rs-active'`,
            [],
          );
          return r.rows[0]?.a === acked.toString();
        },
        3000,
      );
      await m1.stop();
      assert.equal(await c.ended, 'hub stopping');

      const m2 = await rig.manager();
      const views = await m2.list();
      const active = views.find((v) => v.name === 'rs-active');
      const sleeping = views.find((v) => v.name === 'rs-sleep');
      assert.equal(active?.ackedOffset, acked);
      assert.equal(active?.state, 'sleeping');
      assert.equal(sleeping?.lagEvents, 30);
      const c2 = await m2.attach({ name: 'rs-active', consumer: 'test' });
      const rest = await drain(c2, (g) => g.length >= 18);
      assert.deepEqual([...offsetsOf(got), ...offsetsOf(rest)], offsetsOf(stored));
      const c3 = await m2.attach({ name: 'rs-sleep', consumer: 'test' });
      assert.deepEqual(offsetsOf(await drain(c3, (g) => g.length >= 30)), offsetsOf(stored));
      await c2.close();
      await c3.close();
      await m2.delete('rs-active');
      await m2.delete('rs-sleep');
      await m2.stop();
    });

    test('a receiver queue left by an earlier version is deleted at start', async () => {
      const m1 = await rig.manager();
      await m1.create({ name: 'lg', selector: 'lg:*', start: 'new' });
      await m1.stop();
      // What an earlier version declared for the selector: a queue bound to herald.events.
      const conn = await connect(rig.vhost.url);
      const ch = await conn.createChannel();
      await ch.assertQueue(queueOf('lg:*'), { durable: true });
      await ch.bindQueue(queueOf('lg:*'), 'herald.events', 'lg.#');
      await conn.close();
      // … and the row it kept of that queue (nothing writes one any more).
      const sel = parseSelector('lg:*');
      await rig.store.sql.query('INSERT INTO receivers (hash, selector, queue, created_at) VALUES ($1, $2, $3, now())', [
        sel.hash,
        sel.canonical,
        queueOf('lg:*'),
      ]);
      const m2 = await rig.manager();
      await waitFor(
        'the old receiver queue deleted',
        async () => !(await rig.vhost.queues()).some((q) => q.name === queueOf('lg:*')),
        10_000,
      );
      await waitFor('its row deleted', async () => (await rig.store.subscriptions.loadAll()).receivers.length === 0, 10_000);
      await m2.delete('lg');
      await m2.stop();
    });
  });
}
