import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type SubscriptionEvent, subscription } from '@herald/client/grpc';
import { EVENTS_EXCHANGE, Headers, INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  type RawPublisher,
  spawnHerald,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor as waitUntil,
} from '@herald/testing';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { openSse, type SseClient } from './api/subscriptions-test-kit.ts';
import { openStore } from './store/index.ts';
import type { Store } from './store/types.ts';

// Where features meet (docs/composition.md): pauses, replays, mode switches, durable
// subscriptions and their transports (gRPC, HTTP pull, SSE), driven through the hub process. Each
// case keeps a model of what a receiver must see, built from the log (the source of truth) and the
// composition rules, and compares it with what arrived: the offsets, their order, the replay marks.

const waitFor = (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 30_000) => waitUntil(what, fn, timeoutMs, 20);
const num = (o: bigint | string | undefined) => Number(o);

/** A message seen on a queue bound to herald.events; archive mode delivers without an offset. */
interface Seen {
  id: string;
  offset: number | undefined;
  replay: string | undefined;
  key: string;
}

/** A queue bound to herald.events (durable across hub restarts: the test owns the connection). */
async function bindReceiver(url: string, queue: string, bindingKey: string) {
  const conn: ChannelModel = await connect(url, { noDelay: true });
  const ch: Channel = await conn.createChannel();
  await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  await ch.assertQueue(queue, { durable: false, autoDelete: false });
  await ch.bindQueue(queue, EVENTS_EXCHANGE, bindingKey);
  const seen: Seen[] = [];
  await ch.consume(
    queue,
    (m) => {
      if (!m) return;
      const h = m.properties.headers ?? {};
      seen.push({
        id: String(m.properties.messageId),
        offset: h[Headers.OFFSET] === undefined ? undefined : Number(String(h[Headers.OFFSET])),
        replay: h[Headers.REPLAY] === undefined ? undefined : String(h[Headers.REPLAY]),
        key: m.fields.routingKey,
      });
    },
    { noAck: true },
  );
  return {
    seen,
    waitFor: (n: number, timeoutMs = 30_000) =>
      waitFor(`${n} messages on ${queue} (have ${seen.length})`, () => seen.length >= n, timeoutMs),
    close: () => conn.close().catch(() => undefined),
  };
}

describe('interleavings: pauses, replays, mode switches, subscriptions and transports, hub process', { timeout: 170_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let pub: RawPublisher;
  let reader: Store;
  let hub: HeraldProcess | undefined;
  let httpPort = 0;
  let grpcPort = 0;
  let q = 0;

  const env = (mode: 'router' | 'archive'): Record<string, string> => ({
    HERALD_AMQP_URL: vhost.url,
    HERALD_DATABASE_URL: db.url,
    HERALD_MODE: mode,
    HERALD_HTTP_PORT: String(httpPort),
    HERALD_GRPC_PORT: String(grpcPort),
  });
  const base = () => `http://127.0.0.1:${httpPort}`;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers of many shapes
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${base()}/api/v1${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  /** Publishes `sender.type` events to herald.ingest in this order, all confirmed; answers their message ids. */
  const publish = async (keys: readonly string[]): Promise<string[]> => {
    const ids = keys.map(() => randomUUID());
    const ok = await pub.publishMany(
      INGEST_EXCHANGE,
      keys.map((rk, i) => {
        const [sender, ...type] = rk.split('.');
        return {
          routingKey: rk,
          content: Buffer.from(JSON.stringify({ i })),
          options: { messageId: ids[i] as string, appId: sender, type: type.join('.'), contentType: 'application/json' },
        };
      }),
      500,
    );
    assert.ok(ok.every(Boolean), 'every publish confirmed');
    return ids;
  };
  const times = (n: number, key: string) => Array.from({ length: n }, () => key);
  /** Matching offsets in the log after `after`: the model every subscription case compares with. */
  const logOffsets = async (selector: string, after = 0n) =>
    (await reader.query({ selector, after, limit: 100_000 })).map((e) => Number(e.offset));
  /** Resolves once every event with these ids is in the log; answers their offsets, in order. */
  const stored = async (ids: readonly string[]) => {
    const want = new Set(ids);
    let found = new Map<string, number>();
    await waitFor(`${ids.length} events stored`, async () => {
      const rows = await reader.query({ selector: '*:*', after: 0n, limit: 100_000 });
      found = new Map(rows.filter((e) => want.has(e.id)).map((e) => [e.id, Number(e.offset)]));
      return found.size === want.size;
    });
    return ids.map((id) => found.get(id) as number);
  };
  const receiver = (bindingKey: string) => bindReceiver(vhost.url, `rx-${++q}`, bindingKey);
  const startHub = async (mode: 'router' | 'archive' = 'router') => {
    hub = await startHubProcess(env(mode));
    return hub;
  };
  const stopHub = async () => {
    assert.equal(await hub?.kill('SIGTERM'), 0);
    hub = undefined;
  };
  const sub = async (name: string, selector: string, start: unknown = 'earliest') =>
    assert.equal((await api('POST', '/subscriptions', { name, selector, start })).status, 201);
  const sse = (name: string, headers: Record<string, string> = {}) => openSse(`${base()}/api/v1/subscriptions/${name}/stream`, headers);
  const state = async (name: string) => (await api('GET', `/subscriptions/${name}`)).body;

  before(async () => {
    [vhost, db, httpPort, grpcPort] = await Promise.all([createTestVhost('inter'), createTestDatabase('inter'), freePort(), freePort()]);
    await startHub();
    pub = await createRawPublisher(vhost.url);
    reader = await openStore({ url: db.url });
  });
  after(async () => {
    await pub?.close();
    await reader?.close();
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  test('SSE: a client that read 150 of 2,000 and dropped resumes with Last-Event-ID and loses nothing', async () => {
    await sub('sse-drop', 'sd:*');
    const offsets = await stored(await publish(times(2000, 'sd.e')));
    // The client's socket took all 2,000 (positive signal), but it processed only 150 before it dropped.
    const first = await sse('sse-drop');
    await first.waitFor(2000);
    assert.deepEqual(
      first.events.map((e) => num(e.id)),
      offsets,
    );
    await first.close();
    await waitFor('the subscription sleeps', async () => (await state('sse-drop')).state === 'sleeping');
    assert.equal((await state('sse-drop')).ackedOffset, '0', 'an event written to a socket is not acknowledged');
    const lastSeen = first.events[149]?.id as string;
    const again = await sse('sse-drop', { 'last-event-id': lastSeen });
    await again.waitFor(1850);
    assert.deepEqual(
      again.events.map((e) => num(e.id)),
      offsets.slice(150),
      'resumes right after Last-Event-ID',
    );
    await waitFor('Last-Event-ID acknowledged', async () => (await state('sse-drop')).ackedOffset === lastSeen);
    await again.close();
  });

  test('SSE under load: drops and reconnects with Last-Event-ID while events come in, 0 lost, in order', async () => {
    await sub('sse-load', 'sl:*');
    const publishing = (async () => {
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push(...(await publish(times(400, 'sl.e').concat(times(100, 'sx.e')))));
      return ids;
    })();
    // The client processes a few hundred events per connection, then drops with more in its socket.
    const processed: number[] = [];
    let lastId: string | undefined;
    let streams = 0;
    for (let take = 137; processed.length < 4000; take += 211) {
      const s: SseClient = await sse('sse-load', lastId === undefined ? {} : { 'last-event-id': lastId });
      streams++;
      const want = Math.min(take, 4000 - processed.length);
      await s.waitFor(want, 60_000);
      for (const e of s.events.slice(0, want)) processed.push(num(e.id));
      lastId = String(processed.at(-1));
      await s.close();
      await waitFor('the subscription sleeps', async () => (await state('sse-load')).state === 'sleeping');
    }
    await publishing;
    assert.deepEqual(processed, await logOffsets('sl:*'), `every matching offset once, in order, over ${streams} streams`);
  });

  test('acks across transports: an HTTP ack of pulled events while a gRPC stream holds the subscription; bad offsets are 400', async () => {
    await sub('cross', 'ac:*');
    const offsets = await stored(await publish(times(40, 'ac.e')));
    const pulled = await api('GET', '/subscriptions/cross/events?max=20&wait=0');
    assert.deepEqual(
      pulled.body.events.map((e: { offset: string }) => num(e.offset)),
      offsets.slice(0, 20),
    );
    // A gRPC consumer attaches before the pull client acks, and takes 5 (its window).
    const got: SubscriptionEvent[] = [];
    const grpcSub = subscription('cross', 'ac:*', { url: `127.0.0.1:${grpcPort}`, maxInFlight: 5 });
    const consuming = (async () => {
      for await (const e of grpcSub) got.push(e);
    })();
    await waitFor('5 events over gRPC', () => got.length >= 5);
    assert.equal((await state('cross')).consumer.startsWith('grpc'), true);
    assert.equal((await api('GET', '/subscriptions/cross/events?wait=0')).status, 409, 'a pull while a stream holds it');
    const ack = await api('POST', '/subscriptions/cross/ack', { offset: String(offsets[19]) });
    assert.equal(ack.status, 204, JSON.stringify(ack.body));
    assert.equal((await state('cross')).ackedOffset, String(offsets[19]));
    // The stream moves past what the pull client acknowledged: the next it gets is the 21st.
    await waitFor('the gRPC stream went on', () => got.some((e) => num(e.offset) > (offsets[19] as number)));
    const after20 = got.filter((e) => num(e.offset) > (offsets[19] as number)).map((e) => num(e.offset));
    assert.deepEqual(after20, offsets.slice(20, 20 + after20.length));
    for (const bad of ['abc', '18446744073709551616', '-1', '1.5', 2 ** 64, 1.5, -1]) {
      const r = await api('POST', '/subscriptions/cross/ack', { offset: bad });
      assert.equal(r.status, 400, String(bad));
      assert.equal(r.body.parameter, 'offset', String(bad));
      assert.match(r.body.detail, /decimal string/, `${bad}: ${r.body.detail}`);
    }
    got.at(-1)?.ack();
    await grpcSub.close();
    await consuming;
  });

  /** Pulls (without acking) until `n` events came; answers their offsets and replay marks. */
  const pullMarked = async (name: string, n: number, max = 1000) => {
    const out: { offset: number; replay: string | undefined }[] = [];
    await waitFor(`${n} pulled from ${name}`, async () => {
      const r = await api('GET', `/subscriptions/${name}/events?max=${Math.min(max, n - out.length)}&wait=1`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      for (const e of r.body.events) out.push({ offset: num(e.offset), replay: e.replay });
      const last = r.body.events.filter((e: { replay?: string }) => e.replay === undefined).at(-1);
      if (last) assert.equal((await api('POST', `/subscriptions/${name}/ack`, { offset: last.offset })).status, 204);
      return out.length >= n;
    });
    return out;
  };
  const pullAll = async (name: string, n: number) => (await pullMarked(name, n)).map((e) => e.offset);

  /** The replay's status once it is done. */
  const replayDone = async (id: string) => {
    let body: { status: string; count: number } = { status: '', count: 0 };
    await waitFor(`replay ${id} done`, async () => {
      body = (await api('GET', `/replays/${id}`)).body;
      return body.status === 'done';
    });
    return body;
  };
  const heldBy = async (pauseId: string, n: number) =>
    waitFor(`pause ${pauseId} holds ${n}`, async () => (await api('GET', `/pauses/${pauseId}`)).body.held === n);
  const marks = (seen: readonly Seen[]) => seen.map((m) => `${m.offset}${m.replay === undefined ? '' : 'r'}`);

  test('pause, then replay into the flow: the replay re-sends only what was released; held events come once, on resume', async () => {
    const rx = await receiver('pr.#');
    const released = await stored(await publish(times(20, 'pr.a')));
    await rx.waitFor(20);
    const pause = (await api('POST', '/pauses', { selector: ['pr:*'], ttl: 60 })).body;
    const heldOffsets = await stored(await publish(times(10, 'pr.a')));
    await heldBy(pause.id, 10);
    const r = await api('POST', '/replays', { selector: ['pr:*'], from: { last: 15 } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const done = await replayDone(r.body.id);
    assert.equal(done.count, 5, 'the 5 released events of the last 15; the 10 held ones are not replayed');
    await rx.waitFor(25);
    assert.equal((await api('DELETE', `/pauses/${pause.id}`)).status, 200);
    await rx.waitFor(35);
    const model = [...released.map(String), ...released.slice(15).map((o) => `${o}r`), ...heldOffsets.map(String)];
    assert.deepEqual(marks(rx.seen), model);
    assert.ok(rx.seen.slice(20, 25).every((m) => m.replay === r.body.id));
    await rx.close();
  });

  test('replay, then a pause while it runs: the replay re-sends its whole (released) range; what the pause holds comes after, once', async () => {
    const rx = await receiver('pq.#');
    const old = await stored(await publish(times(6000, 'pq.a')));
    await rx.waitFor(6000);
    const r = await api('POST', '/replays', { selector: ['pq:*'], from: { offset: String(old[0]) } });
    assert.equal(r.status, 202);
    // Created while the replay runs or just after it: the outcome is the same.
    const pause = (await api('POST', '/pauses', { selector: ['pq:*'], ttl: 60 })).body;
    const later = await stored(await publish(times(5, 'pq.a')));
    assert.equal((await replayDone(r.body.id)).count, 6000);
    await heldBy(pause.id, 5);
    await rx.waitFor(12_000);
    assert.equal((await api('DELETE', `/pauses/${pause.id}`)).status, 200);
    await rx.waitFor(12_005);
    assert.deepEqual(marks(rx.seen), [...old.map(String), ...old.map((o) => `${o}r`), ...later.map(String)]);
    await rx.close();
  });

  test('mode switch router → archive while a pause holds is refused; held events go out before newer ones; archive → router pauses again', async () => {
    const rx = await receiver('ms.#');
    await sub('ms-sub', 'ms:*');
    const pause = (await api('POST', '/pauses', { selector: ['ms:*'], ttl: 8 })).body;
    const held = await publish(times(5, 'ms.a'));
    await heldBy(pause.id, 5);
    await stopHub();
    const archive = spawnHerald(['hub'], env('archive'));
    const outcome = await Promise.race([archive.exited, archive.waitFor('"msg":"hub running"', 60_000).then(() => 'running')]);
    if (outcome === 'running') await archive.kill('SIGKILL');
    assert.equal(outcome, 1, `the archive start is refused:\n${archive.output().slice(-2000)}`);
    assert.match(archive.stderr(), /HERALD_MODE=archive refused: 1 pause still holds the flow \(5 events held: pause .* on ms:\*/);
    assert.match(archive.stderr(), /router mode/);
    // Router mode ends the pause at its expiry and releases the held events.
    await startHub('router');
    await rx.waitFor(5);
    await stopHub();
    await startHub('archive');
    const newer = await publish(times(5, 'ms.a'));
    await rx.waitFor(10);
    assert.deepEqual(
      rx.seen.map((m) => m.id),
      [...held, ...newer],
      'held events before newer events of their flow',
    );
    assert.equal((await api('POST', '/pauses', { selector: ['ms:*'], ttl: 60 })).status, 409, 'no pause in archive mode');
    await stopHub();
    await startHub('router');
    const again = (await api('POST', '/pauses', { selector: ['ms:*'], ttl: 60 })).body;
    const third = await publish(times(3, 'ms.a'));
    await heldBy(again.id, 3);
    assert.equal((await api('DELETE', `/pauses/${again.id}`)).status, 200);
    await rx.waitFor(13);
    assert.deepEqual(
      rx.seen.map((m) => m.id),
      [...held, ...newer, ...third],
      'each event once, in order, across router → archive → router',
    );
    // The subscription slept through the archive run and catches up from the log: all 13, in order.
    const all = await stored([...held, ...newer, ...third]);
    assert.deepEqual(await pullAll('ms-sub', 13), all);
    await rx.close();
  });

  test('a replay into a subscription while its consumer moves from gRPC to pull to SSE: each replayed event once, marked, before live ones', async () => {
    await sub('rs', 'rs:*');
    const offsets = await stored(await publish(times(30, 'rs.e')));
    assert.deepEqual(await pullAll('rs', 30), offsets);
    const r = await api('POST', '/replays', { selector: ['rs:*'], from: { offset: String(offsets[0]) }, target: { subscription: 'rs' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.count, 30);
    // gRPC takes its window (10), unacknowledged, and goes.
    const got: SubscriptionEvent[] = [];
    const grpcSub = subscription('rs', 'rs:*', { url: `127.0.0.1:${grpcPort}`, maxInFlight: 10 });
    const consuming = (async () => {
      for await (const e of grpcSub) got.push(e);
    })();
    await waitFor('10 replayed over gRPC', () => got.length >= 10);
    await grpcSub.close();
    await consuming;
    await waitFor('the subscription sleeps', async () => (await state('rs')).state === 'sleeping');
    // An HTTP pull takes the next 10, then an SSE stream the rest and the live events after them.
    const pulled = await pullMarked('rs', 10, 10);
    const stream = await sse('rs');
    await stream.waitFor(10);
    const live = await stored(await publish(times(5, 'rs.e')));
    await stream.waitFor(15);
    const replayed = [
      ...got.map((e) => ({ offset: num(e.offset), replay: e.replay })),
      ...pulled,
      ...stream.events.slice(0, 10).map((e) => ({ offset: num(e.data.offset), replay: e.data.replay })),
    ];
    assert.deepEqual(
      replayed.map((e) => e.offset),
      offsets,
      'the replay is handed out once, in order, across the three transports',
    );
    assert.ok(replayed.every((e) => e.replay === r.body.id));
    assert.ok(
      stream.events.slice(0, 10).every((e) => e.id === undefined),
      'no SSE id on a replayed event',
    );
    assert.deepEqual(
      stream.events.slice(10).map((e) => [num(e.id), e.data.replay]),
      live.map((o) => [o, undefined]),
    );
    assert.equal((await replayDone(r.body.id)).count, 30);
    await stream.close();
  });

  test('delete while consumers are attached: the active SSE stream and a gRPC standby end; 404 after; the name starts afresh', async () => {
    await sub('del', 'dl:*');
    const stream = await sse('del');
    await waitFor('SSE active', () => stream.comments.includes('active'));
    const errors: unknown[] = [];
    const grpcSub = subscription('del', 'dl:*', { url: `127.0.0.1:${grpcPort}` });
    const consuming = (async () => {
      for await (const _ of grpcSub) {
        // nothing is published to dl
      }
    })().catch((err: unknown) => errors.push(err));
    await hub?.waitFor(/"subscription":"del","consumer":"grpc [^"]+","standby":true/);
    assert.equal((await api('DELETE', '/subscriptions/del')).status, 204);
    await stream.done;
    assert.ok(
      stream.comments.some((c) => c.startsWith('ended: subscription deleted')),
      stream.comments.join(' | '),
    );
    await consuming;
    assert.equal((errors[0] as { code?: string } | undefined)?.code, 'NOT_FOUND', String(errors[0]));
    assert.equal((await api('GET', '/subscriptions/del/events?wait=0')).status, 404);
    assert.equal((await api('POST', '/subscriptions/del/ack', { offset: '1' })).status, 404);
    await stored(await publish(['dl.e']));
    await sub('del', 'dl:*', 'new');
    const fresh = await state('del');
    assert.equal(fresh.ackedOffset, fresh.headOffset, 'created again: starts after the head');
  });
});
