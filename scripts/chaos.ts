/**
 * `npm run chaos -- --seconds N --seed S`: a hostile run against a router hub process.
 * While four senders × four types publish at about 240 events/s, it creates and resumes pauses
 * (ttl 1–8 s), replays into the flow, creates and deletes durable subscriptions whose clients hop
 * between HTTP pull, SSE (dropped without warning, back with Last-Event-ID) and gRPC, acknowledge or
 * not, and restarts the hub with SIGTERM and SIGKILL. Then it lets everything settle and checks the
 * invariants of DESIGN.md §3 and docs/composition.md against the log (the source of truth):
 *
 *   1. every confirmed publish is in the log;            2. each id once, offsets dense;
 *   3. every receiver got every matching event, each flow (routing key) in offset order, and a
 *      replayed offset only after it was delivered live (a replay never sends a held event);
 *   4. every pause ended, none long after its expiry;    5. every replay finished;
 *   6. every subscription's client processed every matching offset after its start, in order, with
 *      no gap (deleted ones: a prefix, up to their deletion).
 *
 * Prints one line per invariant (ok / FAIL with the first counterexamples) and exits 1 when one
 * fails. Same seed, same schedule of actions (the timing of a real hub still varies). Options:
 * --seconds N (default 60), --seed S (default random, printed), --verbose (each action, and an
 * acknowledged offset past what a client processed), --hub-log FILE (every hub's output, at debug
 * level, written there at the end). Needs
 * RabbitMQ with its management API and PostgreSQL, as the tests do; works in a vhost and a database
 * of its own and removes both.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { subscription } from '@herald/client/grpc';
import { EVENTS_EXCHANGE, Headers, INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  startHubProcess,
  waitFor,
} from '@herald/testing';
import { connect } from 'amqplib';
import { openSse } from '../packages/hub/src/api/subscriptions-test-kit.ts';
import { openStore } from '../packages/hub/src/store/index.ts';
import type { Store } from '../packages/hub/src/store/types.ts';
import { seeded } from './seeded.ts';

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const seconds = Number(arg('--seconds') ?? 60);
const seed = Number(arg('--seed') ?? Math.floor(Math.random() * 2 ** 31));
const verbose = args.includes('--verbose');
if (!Number.isFinite(seconds) || seconds <= 0 || !Number.isSafeInteger(seed)) {
  process.stderr.write('usage: npm run chaos -- [--seconds N] [--seed S] [--verbose]\n');
  process.exit(2);
}

const { random, int, pick } = seeded(seed);
const log = (line: string) => process.stderr.write(`chaos: ${line}\n`);
const debug = (line: string) => verbose && log(line);

const SENDERS = ['c1', 'c2', 'c3', 'c4'];
const TYPES = ['t1', 't2', 't3', 't4'];
const SELECTORS = ['c1:*', '*:t2', 'c2:t3', 'c3:*,c4:t1', 'c4:*', '*:t4', '*:*'];
/** Receivers: an AMQP binding key and the same selection as a selector, for the model. */
const RECEIVERS = [
  { binding: '#', selector: '*:*' },
  { binding: 'c1.#', selector: 'c1:*' },
  { binding: '*.t2', selector: '*:t2' },
];

const [vhost, db, httpPort, grpcPort] = await Promise.all([createTestVhost('chaos'), createTestDatabase('chaos'), freePort(), freePort()]);
const env = {
  HERALD_AMQP_URL: vhost.url,
  HERALD_DATABASE_URL: db.url,
  HERALD_MODE: 'router',
  HERALD_HTTP_PORT: String(httpPort),
  HERALD_GRPC_PORT: String(grpcPort),
  HERALD_LOG_LEVEL: 'warn',
};
const base = `http://127.0.0.1:${httpPort}`;
let hub: HeraldProcess | undefined;
/** Every hub process of the run, for --hub-log. */
const hubs: HeraldProcess[] = [];
const hubLog = arg('--hub-log');
let hubUp = false;
let reader: Store | undefined;
const closers: (() => Promise<unknown>)[] = [];

// biome-ignore lint/suspicious/noExplicitAny: JSON answers of many shapes
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(35_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
/** api(), or undefined while the hub is down or restarting. */
const tryApi = (method: string, path: string, body?: unknown) => api(method, path, body).catch(() => undefined);

async function startHub(): Promise<void> {
  hub = await startHubProcess({ ...env, HERALD_LOG_LEVEL: hubLog ? 'debug' : 'info' });
  hubs.push(hub);
  hubUp = true;
}

// ---- receivers ------------------------------------------------------------------------------

interface Seen {
  offset: number;
  replay: string | undefined;
  key: string;
}
const receivers: { binding: string; selector: string; seen: Seen[] }[] = [];
async function bindReceivers(): Promise<void> {
  const conn = await connect(vhost.url);
  closers.push(() => conn.close());
  const ch = await conn.createChannel();
  await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
  for (const [i, r] of RECEIVERS.entries()) {
    const rx = { ...r, seen: [] as Seen[] };
    receivers.push(rx);
    const q = `chaos-rx-${i}`;
    await ch.assertQueue(q, { durable: true });
    await ch.bindQueue(q, EVENTS_EXCHANGE, r.binding);
    await ch.consume(
      q,
      (m) => {
        if (!m) return;
        const h = m.properties.headers ?? {};
        rx.seen.push({
          offset: Number(String(h[Headers.OFFSET])),
          replay: h[Headers.REPLAY] === undefined ? undefined : String(h[Headers.REPLAY]),
          key: m.fields.routingKey,
        });
      },
      { noAck: true },
    );
  }
}

// ---- publishing ------------------------------------------------------------------------------

const confirmed: string[] = [];
let publishing = true;
async function publishLoop(): Promise<void> {
  const pub = await createRawPublisher(vhost.url);
  closers.push(() => pub.close());
  while (publishing) {
    const batch = Array.from({ length: 24 }, () => {
      const sender = pick(SENDERS);
      const type = pick(TYPES);
      const id = randomUUID();
      return {
        id,
        m: {
          routingKey: `${sender}.${type}`,
          content: Buffer.from(JSON.stringify({ at: Date.now() })),
          options: { messageId: id, appId: sender, type, contentType: 'application/json' },
        },
      };
    });
    const ok = await pub.publishMany(
      INGEST_EXCHANGE,
      batch.map((b) => b.m),
      24,
    );
    for (const [i, b] of batch.entries()) if (ok[i]) confirmed.push(b.id);
    await sleep(100);
  }
}

// ---- durable subscriptions and their clients ---------------------------------------------------

interface Sub {
  name: string;
  selector: string;
  start: number;
  processed: number[];
  /** The transport slice each processed offset came through (`sse#3`), for the report. */
  via: string[];
  slice: string;
  last: number;
  deleted: boolean;
  running: Promise<void>;
  transports: Record<string, number>;
}
const subs: Sub[] = [];
let subsRun = true;
let subSeq = 0;

/** Handles one event as a client that drops what it processed already (at least once). */
function take(s: Sub, offset: number): void {
  if (!Number.isFinite(offset) || offset <= s.last) return;
  s.processed.push(offset);
  s.via.push(s.slice);
  s.last = offset;
}

async function slicePull(s: Sub, until: number): Promise<void> {
  while (Date.now() < until && subsRun && !s.deleted) {
    const r = await tryApi('GET', `/subscriptions/${s.name}/events?max=${int(1, 300)}&wait=1`);
    if (!r) return void (await sleep(200));
    if (r.status === 404) return;
    if (r.status !== 200) return void (await sleep(100));
    for (const e of r.body.events) take(s, Number(e.offset));
    if (random() < 0.85 && s.last > s.start) await tryApi('POST', `/subscriptions/${s.name}/ack`, { offset: String(s.last) });
  }
}

async function sliceSse(s: Sub, until: number): Promise<void> {
  const headers: Record<string, string> = s.last > s.start ? { 'last-event-id': String(s.last) } : {};
  const stream = await openSse(`${base}/api/v1/subscriptions/${s.name}/stream`, headers).catch(() => undefined);
  if (!stream) return void (await sleep(200));
  let i = 0;
  try {
    while (Date.now() < until && subsRun && !s.deleted) {
      // Reads some, then leaves the rest unread in its buffers when it drops.
      for (; i < stream.events.length; i++) take(s, Number(stream.events[i]?.id));
      if (random() < 0.05 && s.last > s.start) await tryApi('POST', `/subscriptions/${s.name}/ack`, { offset: String(s.last) });
      await Promise.race([stream.done, sleep(50)]);
      if (stream.comments.some((c) => c.startsWith('ended'))) break;
    }
  } finally {
    await stream.close();
  }
}

async function sliceGrpc(s: Sub, until: number): Promise<void> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), Math.max(0, until - Date.now()));
  const it = subscription(s.name, s.selector, {
    url: `127.0.0.1:${grpcPort}`,
    maxInFlight: int(1, 500),
    signal: ac.signal,
    reconnectMaxDelayMs: 500,
    onError: () => undefined,
  });
  try {
    for await (const e of it) {
      take(s, Number(e.offset));
      if (random() < 0.9) e.ack();
      if (!subsRun || s.deleted) break;
    }
  } catch (err) {
    debug(`${s.name}: gRPC ended: ${String(err)}`);
  } finally {
    clearTimeout(timer);
    await it.close().catch(() => undefined);
  }
}

async function runClient(s: Sub): Promise<void> {
  while (subsRun && !s.deleted) {
    const kind = pick(['pull', 'sse', 'grpc'] as const);
    s.transports[kind] = (s.transports[kind] ?? 0) + 1;
    s.slice = `${kind}#${Object.values(s.transports).reduce((a, b) => a + b, 0)}@${new Date().toISOString().slice(11, 23)}`;
    const until = Date.now() + int(300, 3000);
    try {
      if (kind === 'pull') await slicePull(s, until);
      else if (kind === 'sse') await sliceSse(s, until);
      else await sliceGrpc(s, until);
    } catch (err) {
      debug(`${s.name}: ${kind} slice failed: ${String(err)}`);
      await sleep(200);
    }
    if (verbose) {
      const v = await tryApi('GET', `/subscriptions/${s.name}`);
      if (v?.status === 200 && Number(v.body.ackedOffset) > s.last)
        log(
          `${s.name}: acknowledged ${v.body.ackedOffset} is past the last processed ${s.last} after ${s.slice} (consumer ${v.body.consumer})`,
        );
    }
  }
}

async function createSub(): Promise<void> {
  const name = `chaos-${++subSeq}`;
  const selector = pick(SELECTORS);
  const r = await tryApi('POST', '/subscriptions', { name, selector, start: random() < 0.5 ? 'new' : 'earliest' });
  if (r?.status !== 201) return;
  const start = Number(r.body.ackedOffset);
  const s: Sub = {
    name,
    selector,
    start,
    processed: [],
    via: [],
    slice: '',
    last: start,
    deleted: false,
    running: Promise.resolve(),
    transports: {},
  };
  s.running = runClient(s);
  subs.push(s);
  debug(`subscription ${name} on ${selector} from ${start}`);
}

async function deleteSub(): Promise<void> {
  const live = subs.filter((s) => !s.deleted);
  if (live.length === 0) return;
  const s = pick(live);
  // The client stops first: a gRPC client attaching after the delete would create the name again.
  s.deleted = true;
  await s.running;
  const r = await tryApi('DELETE', `/subscriptions/${s.name}`);
  debug(`deleted ${s.name} (${r?.status ?? 'hub down'})`);
}

// ---- pauses, replays, restarts -------------------------------------------------------------------

const pauses: { id: string; expiresAt: number }[] = [];
const replays: string[] = [];
const downtimes: { from: number; to: number }[] = [];
let restarts = 0;
let lastRestart = Date.now();

async function restartHub(): Promise<void> {
  const signal = random() < 0.5 ? 'SIGKILL' : 'SIGTERM';
  const from = Date.now();
  hubUp = false;
  await hub?.kill(signal);
  await sleep(int(0, 1500));
  await startHub();
  downtimes.push({ from, to: Date.now() });
  debug(`restart ${signal} ${new Date(from).toISOString().slice(11, 23)} → ${new Date().toISOString().slice(11, 23)}`);
  restarts++;
  lastRestart = Date.now();
  debug(`hub restarted after ${signal}`);
}

async function act(): Promise<void> {
  const r = random();
  const activePauses = pauses.filter((p) => p.expiresAt > Date.now());
  if (r < 0.22 && activePauses.length < 6) {
    const res = await tryApi('POST', '/pauses', { selector: pick(SELECTORS), ttl: int(1, 8), reason: 'chaos' });
    if (res?.status === 201) pauses.push({ id: res.body.id, expiresAt: Date.parse(res.body.expiresAt) });
  } else if (r < 0.32 && activePauses.length > 0) {
    await tryApi('DELETE', `/pauses/${pick(activePauses).id}`);
  } else if (r < 0.52) {
    const res = await tryApi('POST', '/replays', { selector: pick(SELECTORS), from: { last: int(1, 60) } });
    if (res?.status === 202) replays.push(res.body.id);
  } else if (r < 0.66 && subs.filter((s) => !s.deleted).length < 8) await createSub();
  else if (r < 0.72 && subs.filter((s) => !s.deleted).length > 3) await deleteSub();
  else if (r < 0.8 && Date.now() - lastRestart > 8000) await restartHub();
}

// ---- invariants -------------------------------------------------------------------------------

async function readLog(): Promise<{ offset: number; id: string; key: string }[]> {
  const out: { offset: number; id: string; key: string }[] = [];
  let after = 0n;
  for (;;) {
    const rows = await (reader as Store).query({ selector: '*:*', after, limit: 10_000 });
    for (const e of rows) out.push({ offset: Number(e.offset), id: e.id, key: `${e.sender}.${e.type}` });
    if (rows.length < 10_000) return out;
    after = (rows[rows.length - 1] as { offset: bigint }).offset;
  }
}
const matches = (selector: string, key: string) => {
  const [sender, type] = key.split('.') as [string, string];
  return selector.split(',').some((p) => {
    const [ps, pt] = p.split(':');
    return (ps === '*' || ps === sender) && (pt === '*' || pt === type);
  });
};

const results: { name: string; ok: boolean; detail: string }[] = [];
const check = (name: string, problems: string[], detail: string) => {
  results.push({ name, ok: problems.length === 0, detail: problems.length === 0 ? detail : problems.slice(0, 5).join('; ') });
};

async function main(): Promise<void> {
  log(`seed ${seed}, ${seconds} s; vhost ${vhost.name}`);
  await bindReceivers();
  await startHub();
  reader = await openStore({ url: db.url });
  const publisher = publishLoop();
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await act().catch((err) => debug(`action failed: ${String(err)}`));
    await sleep(int(150, 900));
  }
  // Settle: publishing stops; the hub runs; pauses expire by themselves; clients drain.
  publishing = false;
  await publisher;
  if (!hubUp) await startHub();
  log(
    `settling: ${confirmed.length} confirmed, ${restarts} restarts, ${pauses.length} pauses, ${replays.length} replays, ${subs.length} subscriptions`,
  );
  await waitFor(
    'every confirmed event stored',
    async () => ((await reader?.headOffset()) ?? 0n) >= BigInt(confirmed.length),
    60_000,
    200,
  ).catch(() => undefined);
  await waitFor('no pause holds', async () => (await tryApi('GET', '/pauses'))?.body?.items?.length === 0, 30_000, 200).catch(
    () => undefined,
  );
  await waitFor(
    'replays finished',
    async () => {
      for (const id of replays) {
        const r = await tryApi('GET', `/replays/${id}`);
        if (r?.body?.status !== 'done' && r?.body?.status !== 'failed') return false;
      }
      return true;
    },
    30_000,
    200,
  ).catch(() => undefined);
  const events = await readLog();
  const byOffset = new Map(events.map((e) => [e.offset, e]));
  await waitFor(
    'receivers caught up',
    () =>
      receivers.every((r) => {
        const got = new Set(r.seen.filter((m) => m.replay === undefined).map((m) => m.offset));
        return events.every((e) => !matches(r.selector, e.key) || got.has(e.offset));
      }),
    60_000,
    200,
  ).catch(() => undefined);
  const expectedOf = (s: Sub) => events.filter((e) => e.offset > s.start && matches(s.selector, e.key)).map((e) => e.offset);
  await waitFor(
    'subscriptions caught up',
    () => subs.every((s) => s.deleted || s.processed.length >= expectedOf(s).length),
    60_000,
    200,
  ).catch(() => undefined);
  subsRun = false;
  await Promise.all(subs.map((s) => s.running));

  // 1. durability
  const inLog = new Set(events.map((e) => e.id));
  check(
    'every confirmed publish is in the log (§3.1)',
    confirmed.filter((id) => !inLog.has(id)).map((id) => `missing ${id}`),
    `${confirmed.length} confirmed`,
  );
  // 2. once, dense
  const dense: string[] = [];
  for (const [i, e] of events.entries()) if (e.offset !== i + 1) dense.push(`offset ${e.offset} at position ${i + 1}`);
  if (inLog.size !== events.length) dense.push(`${events.length - inLog.size} ids stored twice`);
  check('each id once, offsets dense (§3.2)', dense, `${events.length} events, offsets 1–${events.length}`);
  // 3. receivers
  for (const r of receivers) {
    const problems: string[] = [];
    const live = new Set<number>();
    const lastOfKey = new Map<string, number>();
    let replayed = 0;
    for (const m of r.seen) {
      if (m.replay !== undefined) {
        replayed++;
        if (!live.has(m.offset)) problems.push(`replayed ${m.offset} (${m.replay}) before it was delivered live`);
        continue;
      }
      if (!byOffset.has(m.offset)) problems.push(`offset ${m.offset} is not in the log`);
      if (live.has(m.offset)) continue; // at least once: a repeat after a crash
      live.add(m.offset);
      const prev = lastOfKey.get(m.key);
      if (prev !== undefined && m.offset < prev) problems.push(`${m.key}: ${m.offset} after ${prev}`);
      lastOfKey.set(m.key, m.offset);
    }
    const missing = events.filter((e) => matches(r.selector, e.key) && !live.has(e.offset));
    if (missing.length > 0) problems.push(`${missing.length} never delivered (first ${missing[0]?.offset})`);
    check(
      `receiver ${r.binding}: every event, each flow in order, replays only of released events (§3.3, §3.4)`,
      problems,
      `${live.size} live, ${r.seen.length - live.size - replayed} repeats, ${replayed} replayed`,
    );
  }
  // 4. pauses
  const late: string[] = [];
  for (const p of pauses) {
    const r = await tryApi('GET', `/pauses/${p.id}`);
    const endedAt = r?.body?.endedAt ? Date.parse(r.body.endedAt) : undefined;
    if (endedAt === undefined) {
      late.push(`pause ${p.id} never ended`);
      continue;
    }
    // A pause that expired while no hub ran ends when the next one starts.
    const down = downtimes.find((d) => d.from <= p.expiresAt + 1000 && p.expiresAt <= d.to + 1000);
    const allowed = (down ? down.to : p.expiresAt) + 3000;
    if (endedAt > allowed) late.push(`pause ${p.id} ended ${endedAt - p.expiresAt} ms after its expiry`);
  }
  check('every pause ended, at its expiry at the latest (§3.4)', late, `${pauses.length} pauses`);
  // 5. replays
  const unfinished: string[] = [];
  for (const id of replays) {
    const r = await tryApi('GET', `/replays/${id}`);
    if (r?.body?.status !== 'done') unfinished.push(`replay ${id} ${r?.body?.status}${r?.body?.error ? `: ${r.body.error}` : ''}`);
  }
  check('every replay finished', unfinished, `${replays.length} replays`);
  // 6. subscriptions
  const subProblems: string[] = [];
  let processed = 0;
  for (const s of subs) {
    const want = expectedOf(s);
    processed += s.processed.length;
    const n = s.processed.length;
    const prefix = want.slice(0, n);
    const at = prefix.findIndex((o, i) => s.processed[i] !== o);
    if (at >= 0)
      subProblems.push(
        `${s.name} (${s.selector}): got ${s.processed[at]} (${s.via[at]}) where ${prefix[at]} was due (after ${s.processed[at - 1] ?? s.start}, ${s.via[at - 1] ?? 'start'})`,
      );
    else if (!s.deleted && n < want.length) subProblems.push(`${s.name} (${s.selector}): ${want.length - n} of ${want.length} never came`);
    else if (n > want.length) subProblems.push(`${s.name}: ${n - want.length} offsets beyond the log`);
  }
  const hops = subs.reduce((a, s) => a + Object.values(s.transports).reduce((x, y) => x + y, 0), 0);
  check(
    'every subscription: each matching offset after its start, in order, no gap, over every transport (§3.5)',
    subProblems,
    `${subs.length} subscriptions (${subs.filter((s) => s.deleted).length} deleted), ${processed} offsets processed over ${hops} transport slices`,
  );
}

let failed = true;
try {
  await main();
  for (const r of results) process.stdout.write(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name}: ${r.detail}\n`);
  failed = results.some((r) => !r.ok);
  process.stdout.write(`chaos seed ${seed}, ${seconds} s: ${failed ? 'FAILED' : 'all invariants hold'}\n`);
} catch (err) {
  log(`run failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  publishing = false;
  subsRun = false;
  if (hubLog) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(hubLog, hubs.map((h) => h.output()).join('\n--- restart ---\n'));
  } else if (failed && hub) process.stderr.write(`chaos: the hub's last output:\n${hub.output().slice(-4000)}\n`);
  await hub?.kill('SIGKILL');
  await reader?.close().catch(() => undefined);
  for (const c of closers) await c().catch(() => undefined);
  await vhost.delete().catch(() => undefined);
  await db.drop().catch(() => undefined);
}
process.exit(failed ? 1 : 0);
