import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { compileMatcher, createEvent, parseSelector, type Selector, uuidv7 } from '@herald/core';
import type { Replay } from '../replays/replay.ts';
import { lagMany } from './lag-sql.ts';
import { LAG_MANY_MAX_SELECTORS } from './subscription-store.ts';
import type { Store, StoredEvent } from './types.ts';

const T0 = 1_800_000_000_000;

function replayOf(over: Partial<Replay> = {}): Replay {
  return {
    id: uuidv7(),
    selector: parseSelector('billing:*'),
    from: { offset: 0n },
    to: undefined,
    target: 'flow',
    status: 'pending',
    count: 0,
    after: 0n,
    upTo: 100n,
    since: undefined,
    until: undefined,
    position: 0n,
    createdAt: T0,
    finishedAt: undefined,
    error: undefined,
    ...over,
  };
}

const sha = (s: string) => createHash('sha256').update(s).digest();

/**
 * The repositories of the hub's tables (Store.pauses, .held, .replays, .subscriptions, .exchanges,
 * .users), one suite both drivers must pass. `open` gives a fresh, empty store (the suite migrates
 * it and takes the writer lease); `cleanup` runs after it is closed.
 */
export function repositoriesSuite(name: string, open: () => Promise<Store>, cleanup: () => Promise<void> = async () => {}): void {
  describe(`repositories: ${name}`, () => {
    let store: Store;
    let log: StoredEvent[] = [];
    before(async () => {
      store = await open();
      await store.migrate();
      assert.equal(await store.acquireWriterLease(), true);
      // Overlapping patterns (billing:* and *:invoice.paid share billing.invoice.paid), rare and common ones.
      const keys = ['billing.invoice.paid', 'billing.invoice.voided', 'shipping.invoice.paid', 'shipping.parcel.sent', 'crm.user.created'];
      const batch = Array.from({ length: 60 }, (_, i) => {
        const key = keys[i % 7 === 6 ? 4 : i % 4] as string;
        const dot = key.indexOf('.');
        return createEvent({ sender: key.slice(0, dot), type: key.slice(dot + 1), data: { i }, time: T0 + i * 1000 });
      });
      log = (await store.append(batch)).stored;
    });
    after(async () => {
      await store?.close();
      await cleanup();
    });

    const matching = (selector: string, from = 0n, upTo?: bigint) => {
      const m = compileMatcher(parseSelector(selector));
      return log.filter((e) => e.offset > from && (upTo === undefined || e.offset <= upTo) && m(e.sender, e.type)).map((e) => e.offset);
    };
    const SELECTORS = ['billing:*, *:invoice.paid', 'crm:user.created', '*:*', 'billing:invoice.voided, shipping:parcel.sent', 'nobody:*'];

    test('subscriptions: offsets, nthLast, countRange and lag match the log, an event of overlapping patterns counted once', async () => {
      const subs = store.subscriptions;
      for (const text of SELECTORS) {
        const s = parseSelector(text);
        const all = matching(text);
        assert.deepEqual(await subs.offsets(s, 0n, undefined, 1000), all, `${text}: offsets`);
        assert.deepEqual(await subs.offsets(s, 10n, 40n, 5), matching(text, 10n, 40n).slice(0, 5), `${text}: offsets in (10, 40], 5`);
        for (const n of new Set([1, 3, Math.max(1, all.length), all.length + 1])) {
          assert.equal(await subs.nthLast(s, n), all.length >= n ? all[all.length - n] : undefined, `${text}: nthLast ${n}`);
        }
        const lag = await subs.lag(s, 20n);
        const behind = matching(text, 20n);
        assert.equal(lag.events, behind.length, `${text}: lag`);
        const oldest = log.find((e) => e.offset === behind[0]);
        if (oldest === undefined) assert.equal(lag.oldestMs, undefined, `${text}: no oldest`);
        else assert.ok(Math.abs((lag.oldestMs ?? 0) - oldest.storedAt) < 1, `${text}: oldest`);
        const within = parseSelector('billing:*, crm:*');
        const both = compileMatcher(within);
        const m = compileMatcher(s);
        const inRange = log.filter(
          (e) =>
            e.offset > 5n &&
            e.offset <= 50n &&
            e.time >= T0 + 10_000 &&
            e.time < T0 + 45_000 &&
            m(e.sender, e.type) &&
            both(e.sender, e.type),
        );
        assert.equal(
          await subs.countRange(s, within, { after: 5n, upTo: 50n, since: T0 + 10_000, until: T0 + 45_000 }),
          inRange.length,
          `${text}: countRange`,
        );
        assert.equal(await subs.countRange(s, parseSelector('*:*'), { after: 0n, upTo: 1000n }), all.length, `${text}: countRange, all`);
      }
    });

    test('subscriptions: lagMany answers what lag answers for each entry, over several statements', async () => {
      const subs = store.subscriptions;
      const head = log[log.length - 1]?.offset ?? 0n;
      const entries: { selector: Selector; after: bigint }[] = [];
      for (const text of SELECTORS)
        for (const after of [0n, 1n, 20n, 20n, head - 1n, head, head + 5n]) entries.push({ selector: parseSelector(text), after });
      // More selectors than one statement reads, spread between the others.
      for (let i = 0; i < LAG_MANY_MAX_SELECTORS + 20; i++)
        entries.splice(i % entries.length, 0, { selector: parseSelector(`billing:invoice.paid, crm:x${i}`), after: BigInt(i % 60) });
      const many = await subs.lagMany(entries);
      assert.equal(many.length, entries.length);
      for (const [i, e] of entries.entries())
        assert.deepEqual(many[i], await subs.lag(e.selector, e.after), `${e.selector.canonical} after ${e.after}`);
      assert.deepEqual(await subs.lagMany([]), []);
    });

    test('subscriptions: lagMany of many subscriptions of every shape equals the events Store.query finds', async () => {
      const subs = store.subscriptions;
      const keys = ['a:x', 'a:y.z', 'b:x', 'b:w', 'c:y.z', 'c:x', 'a:w', 'd:y.q'];
      const more = Array.from({ length: 240 }, (_, i) => {
        const [sender, type] = (keys[(i * 7 + (i >> 3)) % keys.length] as string).split(':') as [string, string];
        return createEvent({ sender, type, data: { i }, time: T0 + i });
      });
      const stored = (await store.append(more)).stored;
      log = [...log, ...stored];
      const head = stored[stored.length - 1]?.offset ?? 0n;
      const texts = [
        'a:*',
        '*:x',
        'a:x',
        'a:#',
        '*:#',
        '*:*',
        'a:x, b:*',
        'a:*, *:x',
        'a:*, *:x, a:x, b:x, c:*',
        '*:x, *:w, b:*, *:*',
        'a:y.*',
        'c:#.z, a:x',
        '*:y.#',
        'nobody:*, *:nothing',
        'billing:*, *:invoice.paid',
      ];
      const entries: { selector: Selector; after: bigint }[] = [];
      for (const [i, text] of texts.entries())
        for (let j = 0; j < 12; j++) entries.push({ selector: parseSelector(text), after: BigInt((i * 37 + j * 29) % Number(head + 3n)) });
      // Many subscriptions of one pattern at different offsets: one pattern, many segments.
      for (let j = 0; j < 80; j++) entries.push({ selector: parseSelector('b:*'), after: BigInt(j * 4) });
      entries.push({ selector: parseSelector('a:*'), after: head }, { selector: parseSelector('a:*'), after: head + 9n });
      const expected = async (e: { selector: Selector; after: bigint }, upTo: bigint) => {
        const events = await store.query({ selector: e.selector, after: e.after, upTo, limit: 100_000 });
        return { events: events.length, oldestMs: events[0]?.storedAt };
      };
      for (const upTo of [head, head - 100n, undefined]) {
        const lags = await subs.lagMany(entries, upTo);
        assert.equal(lags.length, entries.length);
        for (const [i, e] of entries.entries()) {
          const want = await expected(e, upTo ?? head);
          const got = lags[i];
          const at = `${e.selector.canonical} in (${e.after}, ${upTo ?? 'head'}]`;
          assert.equal(got?.events, want.events, at);
          if (want.oldestMs === undefined) assert.equal(got?.oldestMs, undefined, at);
          else assert.ok(Math.abs((got?.oldestMs ?? 0) - want.oldestMs) < 1, `${at}: oldest`);
        }
      }
      // A small cap: ranges wider than it take the statement that cuts each scan; a count reaching it says the cap.
      for (const cap of [5, 40]) {
        const lags = await lagMany(store.sql, entries, head, cap);
        for (const [i, e] of entries.entries()) {
          const want = await expected(e, head);
          const at = `${e.selector.canonical} after ${e.after}, cap ${cap}`;
          assert.equal(lags[i]?.events, Math.min(cap, want.events), at);
          if (want.oldestMs === undefined) assert.equal(lags[i]?.oldestMs, undefined, at);
          else assert.ok(Math.abs((lags[i]?.oldestMs ?? 0) - want.oldestMs) < 1, `${at}: oldest`);
        }
      }
      const one = entries[7] as { selector: Selector; after: bigint };
      assert.deepEqual(await subs.lag(one.selector, one.after), (await subs.lagMany([one]))[0]);
    });

    test('subscriptions: insert keeps the first of a name; nothing writes receivers, whose legacy rows are read and deleted', async () => {
      const subs = store.subscriptions;
      const sel = parseSelector('billing:*');
      const a = await subs.insert({ name: 'repo-a', selector: sel, ackedOffset: 3n, createdAt: T0 });
      assert.equal(a.ackedOffset, 3n);
      const again = await subs.insert({ name: 'repo-a', selector: parseSelector('crm:*'), ackedOffset: 9n, createdAt: T0 });
      assert.equal(again.selector.canonical, sel.canonical, 'the existing one');
      await subs.insert({ name: 'repo-b', selector: sel, ackedOffset: 0n, createdAt: T0 });
      await subs.saveAcked([
        { name: 'repo-a', acked: 2n },
        { name: 'repo-b', acked: 7n },
      ]);
      let all = await subs.loadAll();
      const acked = new Map(all.subscriptions.map((s) => [s.name, s.ackedOffset]));
      assert.equal(acked.get('repo-a'), 3n, 'an acked offset never goes down');
      assert.equal(acked.get('repo-b'), 7n);
      assert.deepEqual(all.receivers, [], 'no receiver row for a new subscription');
      // A row an earlier version wrote stays until its queue is gone, whatever happens to the subscriptions.
      await store.sql.query('INSERT INTO receivers (hash, selector, queue, created_at) VALUES ($1, $2, $3, now())', [
        sel.hash,
        sel.canonical,
        `herald.sub.${sel.hash}`,
      ]);
      assert.equal(await subs.delete('repo-a'), true);
      assert.equal(await subs.delete('repo-a'), false);
      assert.equal(await subs.delete('repo-b'), true);
      all = await subs.loadAll();
      assert.deepEqual(
        all.receivers.map((r) => [r.hash, r.selector.canonical, r.queue]),
        [[sel.hash, sel.canonical, `herald.sub.${sel.hash}`]],
      );
      assert.ok(!all.subscriptions.some((s) => s.name.startsWith('repo-')));
      await subs.deleteReceiver(sel.hash);
      assert.deepEqual((await subs.loadAll()).receivers, []);
    });

    test('held: add, releasable past the active pauses, heldAmong, count, firstHeld, remove', async () => {
      const held = store.held;
      const some = log.slice(0, 20);
      await held.add(some);
      await held.add(some.slice(0, 3)); // held already: left as is
      assert.equal(await held.total(), 20);
      const billing = parseSelector('billing:*');
      const mb = compileMatcher(billing);
      assert.equal(await held.count(billing), some.filter((e) => mb(e.sender, e.type)).length);
      const rel = await held.releasable([billing, parseSelector('crm:*')], 0n, 1000);
      assert.deepEqual(
        rel.map((r) => r.offset),
        some.filter((e) => !mb(e.sender, e.type) && e.sender !== 'crm').map((e) => e.offset),
      );
      assert.deepEqual(
        (await held.releasable([], 5n, 3)).map((r) => r.offset),
        [6n, 7n, 8n],
      );
      const first = some.find((e) => e.sender === 'shipping');
      assert.equal(await store.subscriptions.firstHeld(parseSelector('shipping:*')), first?.offset);
      assert.deepEqual(await held.heldAmong([1n, 2n, 50n]), new Set([1n, 2n]));
      await held.remove(some.map((e) => e.offset));
      assert.equal(await held.total(), 0);
      assert.equal(await store.subscriptions.firstHeld(parseSelector('shipping:*')), undefined);
    });

    test('pauses and replays: a flow replay comes with its pause; finishing it ends the pause', async () => {
      const { pauses, replays } = store;
      const userPause = {
        id: uuidv7(),
        selector: parseSelector('crm:*'),
        reason: 'deploy',
        replayId: undefined,
        createdAt: T0,
        expiresAt: T0 + 60_000,
      };
      await pauses.insert(userPause);
      const got = await pauses.get(userPause.id);
      assert.equal(got?.reason, 'deploy');
      assert.equal(got?.endedAt, undefined);
      const r = replayOf({ from: { last: 5 }, since: T0, until: T0 + 5000 });
      const pauseId = uuidv7();
      await replays.insert(r, { id: pauseId, expiresAt: T0 + 600_000 });
      assert.deepEqual(
        (await pauses.listUnreleased()).map((p) => p.id),
        [userPause.id],
        'the replay’s own pause is not a user pause',
      );
      assert.deepEqual((await pauses.loadHolding()).map((p) => p.id).sort(), [userPause.id, pauseId].sort());
      assert.equal((await pauses.get(pauseId))?.replayId, r.id);
      assert.deepEqual(
        (await replays.listUnfinished()).map((x) => x.id),
        [r.id],
      );
      await replays.progress(r.id, 42n, 7, 90n);
      const running = await replays.get(r.id);
      assert.deepEqual([running?.status, running?.position, running?.count, running?.upTo, running?.since], ['running', 42n, 7, 90n, T0]);
      assert.deepEqual(running?.from, { last: 5 });
      await replays.finish(r.id, 'done', T0 + 1000);
      assert.equal((await replays.get(r.id))?.status, 'done');
      assert.equal((await pauses.get(pauseId))?.endedAt, T0 + 1000);
      await replays.progress(r.id, 99n, 9);
      assert.equal((await replays.get(r.id))?.position, 42n, 'a finished replay stays as it is');
      assert.equal(await pauses.end(pauseId, T0), undefined, 'a replay’s pause is not ended by hand');
      assert.equal((await pauses.end(userPause.id, T0 + 2000))?.endedAt, T0 + 2000);
      assert.equal(await pauses.end(userPause.id, T0 + 3000), undefined, 'ended already');
      await pauses.markReleased([userPause.id, pauseId], T0 + 4000);
      assert.deepEqual(await pauses.loadHolding(), []);
    });

    test('pauses: expiry and the pauses of replays a crash left behind end by query', async () => {
      const { pauses, replays } = store;
      const p = {
        id: uuidv7(),
        selector: parseSelector('billing:*'),
        reason: undefined,
        replayId: undefined,
        createdAt: T0,
        expiresAt: T0 + 10,
      };
      await pauses.insert(p);
      assert.deepEqual(await pauses.endExpired(T0 + 5), []);
      assert.deepEqual(await pauses.endExpired(T0 + 10), [p.id]);
      const r = replayOf();
      const pauseId = uuidv7();
      await replays.insert(r, { id: pauseId, expiresAt: T0 + 600_000 });
      await replays.finish(r.id, 'failed', T0, 'broken');
      assert.equal((await replays.get(r.id))?.error, 'broken');
      assert.deepEqual(await pauses.endForFinishedReplays(T0), [], 'finish ended it');
      // A finished replay whose pause is still open, as a hub of an older version could leave it.
      await store.sql.query('UPDATE pauses SET ended_at = NULL WHERE id = $1::uuid', [pauseId]);
      assert.deepEqual(await pauses.endForFinishedReplays(T0 + 1), [pauseId]);
      assert.equal((await pauses.get(pauseId))?.endedAt, T0 + 1);
      await pauses.markReleased([p.id, pauseId], T0);
    });

    test('replays into a subscription: no pause, listed apart from the flow’s', async () => {
      const { replays, pauses } = store;
      const r = replayOf({ target: { subscription: 'repo-sub' }, from: { time: T0 }, to: { offset: 30n } });
      await replays.insertForSubscription(r);
      const done = replayOf({ target: { subscription: 'repo-sub' }, status: 'done', finishedAt: T0 + 1 });
      await replays.insertForSubscription(done);
      assert.deepEqual(
        (await replays.listUnfinished('subscription')).map((x) => x.id),
        [r.id],
      );
      assert.deepEqual(await replays.listUnfinished('flow'), []);
      const got = await replays.get(r.id);
      assert.deepEqual(got?.target, { subscription: 'repo-sub' });
      assert.deepEqual([got?.from, got?.to], [{ time: T0 }, { offset: 30n }]);
      assert.equal((await replays.get(done.id))?.finishedAt, T0 + 1);
      assert.deepEqual(await pauses.loadHolding(), []);
    });

    test('exchanges: insert once, get, list, count, delete', async () => {
      const x = store.exchanges;
      const rec = { name: 'repo.billing', selector: parseSelector('billing:*'), createdAt: T0 };
      assert.equal(await x.insert(rec), undefined);
      assert.deepEqual(await x.insert({ ...rec, selector: parseSelector('crm:*'), createdAt: T0 + 5 }), rec, 'the one there');
      await x.insert({ name: 'repo.a', selector: parseSelector('crm:*'), createdAt: T0 });
      assert.deepEqual(
        (await x.list()).map((r) => r.name),
        ['repo.a', 'repo.billing'],
      );
      assert.equal(await x.count(), 2);
      assert.deepEqual(await x.get('repo.billing'), rec);
      assert.equal(await x.delete('repo.billing'), true);
      assert.equal(await x.delete('repo.billing'), false);
      assert.equal(await x.get('repo.billing'), undefined);
    });

    test('users: users, tokens by hash and id, subscription owners; deleting a user takes its tokens', async () => {
      const u = store.users;
      const alice = {
        name: 'alice',
        roles: [{ role: 'subscriber' as const, selector: parseSelector('billing:*') }],
        createdAt: T0,
        amqpUsername: undefined,
      };
      assert.equal(await u.insert(alice), true);
      assert.equal(await u.insert(alice), false);
      assert.equal((await u.get('alice'))?.roles[0]?.role, 'subscriber');
      assert.equal(await u.setRoles('alice', [{ role: 'admin' }]), true);
      assert.equal(await u.setRoles('nobody', [{ role: 'admin' }]), false);
      await u.setAmqpUsername('alice', 'herald-alice');
      assert.deepEqual(await u.get('alice'), { ...alice, roles: [{ role: 'admin' }], amqpUsername: 'herald-alice' });
      const token = { id: uuidv7(), user: 'alice', name: 'ci', createdAt: T0, lastUsedAt: undefined };
      assert.equal(await u.insertToken(token, sha('s1')), true);
      assert.equal(await u.insertToken({ ...token, id: uuidv7() }, sha('s2')), false, 'a second token of that name');
      assert.equal(await u.insertToken({ ...token, id: uuidv7(), user: 'nobody' }, sha('s3')), false, 'no such user');
      assert.deepEqual(await u.tokens('alice'), [token]);
      assert.equal((await u.byHash(sha('s1')))?.user.name, 'alice');
      assert.equal(await u.byHash(sha('nope')), undefined);
      await u.touch([token.id]);
      const [owner] = await u.byIds([token.id, uuidv7()]);
      assert.equal(owner?.token.id, token.id);
      assert.ok(owner?.token.lastUsedAt !== undefined);
      await u.insert({ name: 'bob', roles: [{ role: 'admin' }], createdAt: T0, amqpUsername: undefined });
      assert.equal(await u.claim('repo-sub', 'alice'), 'alice');
      assert.equal(await u.claim('repo-sub', 'bob'), 'alice', 'the owner it has');
      assert.deepEqual(await u.owned('alice'), new Set(['repo-sub']));
      await u.assign('repo-sub', 'bob');
      assert.equal(await u.ownerOf('repo-sub'), 'bob');
      await u.disown('repo-sub');
      assert.equal(await u.ownerOf('repo-sub'), undefined);
      assert.equal(await u.claim('repo-sub', 'alice'), 'alice');
      assert.deepEqual(
        (await u.list()).map((x) => x.name),
        ['alice', 'bob'],
      );
      assert.equal(await u.deleteToken('alice', uuidv7()), false);
      assert.equal(await u.delete('alice'), true);
      assert.equal(await u.delete('alice'), false);
      assert.equal(await u.byHash(sha('s1')), undefined, 'its tokens went with it');
      assert.equal(await u.ownerOf('repo-sub'), undefined, 'and its subscriptions’ ownership');
    });
  });
}
