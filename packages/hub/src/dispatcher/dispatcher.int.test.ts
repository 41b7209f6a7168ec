import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, hasCode } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost } from '@herald/testing';
import { pino } from 'pino';
import { openStore, type SqlStore } from '../store/index.ts';
import { createDispatcher, type Dispatcher } from './index.ts';
import { createForward, createReceiver, events, type Seen, type TestReceiver } from './test-kit.ts';

const offsets = (seen: readonly Seen[]) => seen.map((s) => Number(s.offset));

function assertIncreasing(list: number[], what: string): void {
  for (let i = 1; i < list.length; i++) assert.ok((list[i] as number) > (list[i - 1] as number), `${what} not in offset order: ${list}`);
}

for (const kind of ['postgres', 'embedded'] as const) {
  describe(`dispatcher (${kind} store + RabbitMQ)`, { timeout: 60_000 }, () => {
    let db: TestDatabase | undefined;
    let dir: string | undefined;
    let vhost: TestVhost;
    let store: SqlStore;
    let fwd: Awaited<ReturnType<typeof createForward>>;
    let rx: TestReceiver;
    let d: Dispatcher;
    let q = 0;

    const make = (chunkSize = 2000) =>
      createDispatcher({
        store,
        forward: fwd.forward,
        chunkSize,
        logger: process.env.DEBUG_DISPATCHER ? pino() : undefined,
      });
    /** Stores events and dispatches them, as the ingest does for one batch. */
    const ingest = async (spec: [string, string][]) => {
      const { stored } = await store.append(events(spec));
      await d.dispatch(stored);
      return stored;
    };

    before(async () => {
      vhost = await createTestVhost('dispatcher');
      if (kind === 'postgres') {
        db = await createTestDatabase('dispatcher');
        store = await openStore({ url: db.url });
      } else {
        dir = mkdtempSync(join(tmpdir(), 'herald-dispatcher-'));
        store = await openStore({ dataDir: dir });
      }
      await store.migrate();
      assert.ok(await store.acquireWriterLease());
      fwd = await createForward(vhost.url);
    });
    beforeEach(async () => {
      await d?.stop();
      await rx?.close();
      await store.sql.query('DELETE FROM held_events', []);
      await store.sql.query('DELETE FROM pauses', []);
      await store.sql.query('DELETE FROM replays', []);
      rx = await createReceiver(vhost.url, `rx${++q}`);
      d = make();
      await d.start();
    });
    after(async () => {
      await d?.stop();
      await rx?.close();
      await fwd?.close();
      await store?.close();
      await vhost?.delete();
      await db?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('a pause on s1:* holds exactly the s1 events; on resume they go out in order before newer s1 events', async () => {
      const p = await d.createPause({ selector: 's1:*', ttl: 60, reason: 'maintenance' });
      const first = await ingest([
        ['s1', 't1'],
        ['s2', 't1'],
        ['s1', 't2'],
        ['s3', 'x'],
        ['s1', 't1'],
      ]);
      await rx.waitFor(2);
      await sleep(100);
      assert.deepEqual(
        rx.seen.map((s) => s.sender),
        ['s2', 's3'],
      );
      const view = await d.getPause(p.id);
      assert.equal(view?.held, 3);
      assert.equal((await d.listPauses()).length, 1);

      const resumed = await d.resume(p.id);
      assert.ok(resumed.endedAt !== undefined);
      // Newer events arrive at once, while the release is under way.
      const later = await ingest([
        ['s1', 't1'],
        ['s2', 't2'],
      ]);
      await rx.waitFor(7);
      const s1 = rx.seen.filter((s) => s.sender === 's1');
      assert.deepEqual(
        offsets(s1),
        [first[0], first[2], first[4], later[0]].map((e) => Number(e?.offset)),
      );
      await d.idle();
      assert.equal((await d.listPauses()).length, 0);
      assert.equal((await store.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM held_events', [])).rows[0]?.n, 0);
      assert.equal((await d.resume(p.id)).id, p.id, 'resume is idempotent');
      await assert.rejects(d.resume('018f0000-0000-7000-8000-000000000000'), (e: unknown) => hasCode(e, ErrorCodes.NOT_FOUND));
    });

    test('two overlapping pauses: an event goes out only when every pause matching it has ended', async () => {
      const a = await d.createPause({ selector: 's1:*', ttl: 60 });
      const b = await d.createPause({ selector: '*:t1', ttl: 60 });
      const st = await ingest([
        ['s1', 't1'], // a, b
        ['s1', 't2'], // a
        ['s2', 't1'], // b
        ['s2', 't2'], // none
      ]);
      await rx.waitFor(1);
      await d.resume(a.id);
      await d.idle();
      await rx.waitFor(2);
      await sleep(100);
      assert.deepEqual(
        offsets(rx.seen),
        [st[3], st[1]].map((e) => Number(e?.offset)),
      );
      assert.equal((await d.getPause(b.id))?.held, 2);
      await d.resume(b.id);
      await d.idle();
      await rx.waitFor(4);
      assert.deepEqual(
        offsets(rx.seen.slice(2)),
        [st[0], st[2]].map((e) => Number(e?.offset)),
      );
    });

    test('a pause ends by itself at its expiry, and one that expired while the hub was down is released at start', async () => {
      await d.createPause({ selector: 's1:*', ttl: 0.4 });
      const st = await ingest([
        ['s1', 't1'],
        ['s1', 't2'],
      ]);
      await sleep(150);
      assert.equal(rx.seen.length, 0);
      await rx.waitFor(2, 3000);
      assert.deepEqual(
        offsets(rx.seen),
        st.map((e) => Number(e.offset)),
      );

      // Across a restart: held, stopped, expired while down, released by the next start().
      await d.createPause({ selector: 's2:*', ttl: 0.3 });
      const st2 = await ingest([['s2', 't1']]);
      await d.stop();
      await sleep(400);
      assert.equal(rx.seen.length, 2);
      d = make();
      await d.start();
      await d.idle();
      await rx.waitFor(3, 3000);
      assert.equal(Number(rx.seen[2]?.offset), Number(st2[0]?.offset));
    });

    test('pauses survive a restart: a new dispatcher keeps holding, then releases on resume', async () => {
      const p = await d.createPause({ selector: 's1:t1', ttl: 60 });
      await d.stop();
      d = make();
      await d.start();
      const st = await ingest([
        ['s1', 't1'],
        ['s1', 't2'],
      ]);
      await rx.waitFor(1);
      await sleep(100);
      assert.deepEqual(offsets(rx.seen), [Number(st[1]?.offset)]);
      await d.resume(p.id);
      await rx.waitFor(2);
      assert.equal(Number(rx.seen[1]?.offset), Number(st[0]?.offset));
    });

    test('a release in chunks keeps offset order and interleaves with live batches of other flows', async () => {
      d = make(100);
      await d.start();
      const p = await d.createPause({ selector: 's1:*', ttl: 60 });
      const spec: [string, string][] = [];
      for (let i = 0; i < 1000; i++) spec.push([i % 4 === 0 ? 's2' : 's1', i % 2 ? 't1' : 't2']);
      const st = await ingest(spec);
      await d.resume(p.id);
      const more = await ingest([
        ['s1', 't9'],
        ['s2', 't9'],
      ]);
      await rx.waitFor(1002);
      await d.idle();
      const s1 = rx.seen.filter((s) => s.sender === 's1').map((s) => Number(s.offset));
      assert.equal(s1.length, 751);
      assertIncreasing(s1, 's1 events');
      assert.equal(s1[750], Number(more[0]?.offset));
      assert.equal(new Set(offsets(rx.seen)).size, 1002, 'each event once');
      assert.equal(st.length, 1000);
    });

    test('replay of the last 10 events of s1:t1,t2: exactly those, in order, marked, then the live events that arrived meanwhile', async () => {
      const spec: [string, string][] = [];
      for (let i = 0; i < 40; i++) spec.push([i % 3 === 0 ? 's2' : 's1', ['t1', 't2', 't3'][i % 3] as string]);
      const st = await ingest(spec);
      await rx.waitFor(40);
      rx.seen.length = 0;
      const expected = st
        .filter((e) => e.sender === 's1' && (e.type === 't1' || e.type === 't2'))
        .slice(-10)
        .map((e) => Number(e.offset));
      const r = await d.createReplay({ selector: ['s1:t1', 's1:t2'], from: { last: 10 } });
      assert.equal(r.status, 'pending');
      const live = await ingest([
        ['s1', 't1'],
        ['s2', 't2'],
        ['s1', 't2'],
      ]);
      await rx.waitFor(13);
      await d.idle();
      const fromReplay = rx.seen.filter((s) => s.replay !== undefined);
      assert.deepEqual(offsets(fromReplay), expected);
      assert.ok(fromReplay.every((s) => s.replay === r.id));
      const s1 = rx.seen.filter((s) => s.sender === 's1');
      assert.deepEqual(offsets(s1), [...expected, Number(live[0]?.offset), Number(live[2]?.offset)]);
      const done = await d.getReplay(r.id);
      assert.equal(done?.status, 'done');
      assert.equal(done?.count, 10);
      assert.equal((await d.listPauses()).length, 0, "the replay's own pause is not listed");
    });

    test('a replay cut short by a stop continues from its last confirmed chunk on the next start', async () => {
      d = make(5);
      await d.start();
      const spec: [string, string][] = Array.from({ length: 23 }, () => ['r1', 'x'] as [string, string]);
      const st = await ingest(spec);
      await rx.waitFor(23);
      rx.seen.length = 0;
      const r = await d.createReplay({ selector: 'r1:*', from: { offset: Number(st[0]?.offset) } });
      const live = await ingest([['r1', 'y']]);
      await d.stop(); // mid-replay: the step in progress finishes, the rest waits in the database
      const partial = await d.getReplay(r.id);
      assert.ok(partial && partial.count < 23 && partial.status !== 'done', `cut short: ${partial?.status} ${partial?.count}`);
      d = make(5);
      await d.start();
      await d.idle();
      await rx.waitFor(24);
      const replayed = rx.seen.filter((s) => s.replay === r.id);
      assert.deepEqual(
        offsets(replayed),
        st.map((e) => Number(e.offset)),
      );
      assert.equal(Number(rx.seen[rx.seen.length - 1]?.offset), Number(live[0]?.offset), 'the live event waited for the replay');
      const done = await d.getReplay(r.id);
      assert.equal(done?.status, 'done');
      assert.equal(done?.count, 23);
    });

    test('an event dispatched twice (a retried batch) is held once and released once', async () => {
      const p = await d.createPause({ selector: 'dup:*', ttl: 60 });
      const { stored } = await store.append(
        events([
          ['dup', 'a'],
          ['dup', 'b'],
        ]),
      );
      await d.dispatch(stored);
      await d.dispatch(stored);
      assert.equal((await d.getPause(p.id))?.held, 2);
      await d.resume(p.id);
      await d.idle();
      await rx.waitFor(2);
      await sleep(100);
      assert.deepEqual(
        offsets(rx.seen),
        stored.map((e) => Number(e.offset)),
      );
    });

    test('replay from an offset up to an offset, and from a time', async () => {
      const st = await ingest([
        ['s5', 'a'],
        ['s5', 'b'],
        ['s5', 'a'],
        ['s5', 'a'],
      ]);
      await rx.waitFor(4);
      rx.seen.length = 0;
      const from = st[1]?.offset as bigint;
      const r = await d.createReplay({ selector: 's5:a', from: { offset: Number(from) }, to: { offset: Number(st[2]?.offset) } });
      await d.idle();
      await rx.waitFor(1);
      await sleep(50);
      assert.deepEqual(offsets(rx.seen), [Number(st[2]?.offset)]);
      assert.equal((await d.getReplay(r.id))?.count, 1);
      rx.seen.length = 0;
      const r2 = await d.createReplay({ selector: 's5:*', from: { time: new Date(Date.now() - 60_000).toISOString() } });
      await d.idle();
      await rx.waitFor(4);
      assert.deepEqual(
        offsets(rx.seen),
        st.map((e) => Number(e.offset)),
      );
      assert.equal((await d.getReplay(r2.id))?.status, 'done');
    });
  });
}
