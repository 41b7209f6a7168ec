/**
 * `npm run test:faults -- [--seed S] [--kills N] [--only kind,…] [--timeout S] [--hub-log FILE] [--verbose]`: faults injected under load, then an
 * account of every confirmed event (DESIGN.md §3, §7).
 *
 * Load: a plain amqplib publisher (senders f1, f3) and two SDK publishers (f2, f4), about 300
 * events/s in all, through a router hub on PostgreSQL to the five receiver kinds — everything, all
 * of one sender, one type from anyone, chosen sender×type pairs, several senders — and to two
 * durable subscriptions, one read over gRPC and one over HTTP pull. The hub's database connection
 * goes through a TCP proxy, so it can be cut.
 *
 * Faults, in an order and at moments drawn from the seed: SIGKILL the hub (--kills, default 10),
 * SIGTERM it, close every RabbitMQ connection of the run, restart RabbitMQ's application
 * (`rabbitmqctl stop_app` / `start_app`), restart PostgreSQL, cut the hub's database connection for
 * 10 s, and overflow a subscription's in-memory receiver (its gRPC client stops reading for 6 s
 * while the receiver buffers 200). After each fault the run waits until events flow again before the next.
 *
 * The report: faults injected, events confirmed, lost (in the log, at a receiver, at a
 * subscription: must be 0), delivered twice (counted: at least once allows it after a fault), out
 * of order per flow (must be 0; no replays run here), and the longest time from a fault's repair
 * to the first event published after it reaching the everything-receiver. Exits 1 when anything
 * was lost or reordered. Needs RabbitMQ with its management API and rabbitmqctl, and PostgreSQL
 * with pg_ctlcluster, all local; works in a vhost and a database of its own and removes both.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPublisher } from '@herald/client';
import { subscription } from '@herald/client/grpc';
import { EVENTS_EXCHANGE, Headers, INGEST_EXCHANGE } from '@herald/core';
import { createTestDatabase, createTestVhost, freePort, type HeraldProcess, startHubProcess, startProxy, waitFor } from '@herald/testing';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { openStore } from '../packages/hub/src/store/index.ts';
import { seeded } from './seeded.ts';

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const seed = Number(arg('--seed') ?? Math.floor(Math.random() * 2 ** 31));
const kills = Number(arg('--kills') ?? 10);
const verbose = args.includes('--verbose');
/** The whole run's bound, in seconds: past it the run fails (CI's tier stays within its time). */
const limitSeconds = Number(arg('--timeout') ?? 600);
/** --only sigkill,db-cut,…: just these kinds of fault (all by default). */
const only = arg('--only')?.split(',');
if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(kills) || kills < 0 || !(limitSeconds > 0)) {
  process.stderr.write('usage: npm run test:faults -- [--seed S] [--kills N] [--only kind,…] [--timeout S] [--hub-log FILE] [--verbose]\n');
  process.exit(2);
}

const { random, int, pick } = seeded(seed);
const t0 = Date.now();
setTimeout(() => {
  process.stderr.write(`faults: FAILED: the run took longer than ${limitSeconds} s (--timeout)\n`);
  process.exit(1);
}, limitSeconds * 1000).unref();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
const log = (line: string) => process.stderr.write(`faults: ${stamp()} ${line}\n`);
const debug = (line: string) => verbose && log(line);

const TYPES = ['t1', 't2', 't3', 't4'];
const RECEIVERS = [
  { kind: 'everything', bindings: ['#'], selector: '*:*' },
  { kind: 'one sender', bindings: ['f1.#'], selector: 'f1:*' },
  { kind: 'one type', bindings: ['*.t2'], selector: '*:t2' },
  { kind: 'pairs', bindings: ['f2.t3', 'f3.t1'], selector: 'f2:t3,f3:t1' },
  { kind: 'senders', bindings: ['f1.#', 'f4.#'], selector: 'f1:*,f4:*' },
] as const;
const SUBSCRIPTIONS = [
  { name: 'faults-grpc', selector: 'f1:*,*:t2', via: 'grpc' },
  { name: 'faults-pull', selector: 'f2:*,f3:t4', via: 'pull' },
] as const;

const matches = (selector: string, key: string) => {
  const [sender, type] = key.split('.') as [string, string];
  return selector.split(',').some((p) => {
    const [ps, pt] = p.split(':');
    return (ps === '*' || ps === sender) && (pt === '*' || pt === type);
  });
};

const pgVersion = readdirSync('/etc/postgresql')[0] ?? '15';
const [vhost, db, httpPort, grpcPort] = await Promise.all([
  createTestVhost('faults'),
  createTestDatabase('faults'),
  freePort(),
  freePort(),
]);
const dbUrl = new URL(db.url);
const pgProxy = await startProxy({ host: dbUrl.hostname, port: Number(dbUrl.port || 5432) });
const proxiedDbUrl = new URL(db.url);
proxiedDbUrl.hostname = '127.0.0.1';
proxiedDbUrl.port = String(pgProxy.port);
const env = {
  HERALD_AMQP_URL: vhost.url,
  HERALD_DATABASE_URL: proxiedDbUrl.toString(),
  HERALD_MODE: 'router',
  HERALD_HTTP_PORT: String(httpPort),
  HERALD_GRPC_PORT: String(grpcPort),
  HERALD_RECEIVER_MAX_LENGTH: '200',
  HERALD_LOG_LEVEL: 'info',
};
const base = `http://127.0.0.1:${httpPort}/api/v1`;
let hub: HeraldProcess | undefined;
/** Every hub process of the run, for --hub-log FILE (their output is written there at the end). */
const hubs: HeraldProcess[] = [];
const hubLog = arg('--hub-log');
/** Publishers run while `publishing`; receivers and subscription clients while `running`. */
let publishing = true;
let running = true;
const closers: (() => Promise<unknown>)[] = [];

// biome-ignore lint/suspicious/noExplicitAny: JSON answers of many shapes
async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any } | undefined> {
  try {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  } catch {
    return undefined;
  }
}

async function startHub(): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      hub = await startHubProcess(env);
      hubs.push(hub);
      return;
    } catch (err) {
      if (attempt >= 3) throw err;
      log(`hub did not start (${String(err).slice(0, 200)}); again`);
      await sleep(1000);
    }
  }
}

/** Runs `body` on a fresh AMQP connection, again after every loss, until the run ends. */
async function resilient(name: string, on: () => boolean, body: (conn: ChannelModel) => Promise<void>): Promise<void> {
  while (on()) {
    let conn: ChannelModel | undefined;
    try {
      conn = await connect(vhost.url, { noDelay: true });
      const closed = new Promise<void>((resolve) => {
        conn?.on('close', () => resolve());
        conn?.on('error', () => undefined);
      });
      await body(conn);
      await Promise.race([closed, until(() => !on())]);
    } catch (err) {
      debug(`${name}: ${String(err).slice(0, 200)}`);
    } finally {
      await conn?.close().catch(() => undefined);
    }
    if (on()) await sleep(300);
  }
}
const until = async (cond: () => boolean) => {
  while (!cond()) await sleep(100);
};

// ---- publishing ----------------------------------------------------------------------------------

/** Every confirmed event: id → routing key and when it was published. */
const confirmed = new Map<string, { key: string; at: number }>();

/** A plain amqplib publisher: batches of 20 with confirms every 100 ms, senders f1 and f3. */
function rawPublisher(): Promise<void> {
  return resilient(
    'raw publisher',
    () => publishing,
    async (conn) => {
      const ch = await conn.createConfirmChannel();
      ch.on('error', () => undefined);
      while (publishing) {
        const at = Date.now();
        const batch = Array.from({ length: 20 }, () => ({ id: randomUUID(), key: `${pick(['f1', 'f3'])}.${pick(TYPES)}` }));
        const acks = batch.map(
          (e) =>
            new Promise<boolean>((resolve) => {
              try {
                const [sender, type] = e.key.split('.') as [string, string];
                ch.publish(
                  INGEST_EXCHANGE,
                  e.key,
                  Buffer.from(JSON.stringify({ at })),
                  {
                    messageId: e.id,
                    appId: sender,
                    type,
                    contentType: 'application/json',
                    persistent: true,
                    timestamp: Math.floor(at / 1000),
                  },
                  (err) => resolve(!err),
                );
              } catch {
                resolve(false);
              }
            }),
        );
        const ok = await Promise.race([Promise.all(acks), sleep(20_000).then(() => undefined)]);
        for (const [i, e] of batch.entries()) if (ok?.[i]) confirmed.set(e.id, { key: e.key, at });
        // A nack, a closed channel or no answer: a new connection (what was not confirmed is not counted).
        if (!ok || ok.some((x) => !x)) throw new Error('publishes not confirmed');
        await sleep(100);
      }
    },
  );
}

/** An SDK publisher for one sender: 5 events every 100 ms, each counted once its publish resolves. */
async function sdkPublisher(sender: string): Promise<void> {
  const publisher = createPublisher({ sender, url: vhost.url, reconnectMaxDelayMs: 500, onError: () => undefined });
  closers.push(() => publisher.close());
  const inFlight = new Set<Promise<void>>();
  while (publishing) {
    const at = Date.now();
    for (let i = 0; i < 5; i++) {
      const type = pick(TYPES);
      const p = publisher
        .publish(type, { at })
        .then(
          (r) => void confirmed.set(r.id, { key: `${sender}.${type}`, at }),
          (err) => void debug(`${sender}: ${String(err).slice(0, 160)}`),
        )
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await sleep(100);
    while (inFlight.size > 500) await sleep(50);
  }
  await Promise.all(inFlight);
}

// ---- receivers and subscriptions ---------------------------------------------------------------------

interface Delivery {
  offset: number;
  key: string;
  at: number;
  replay: boolean;
}
/** The receiver queues bound so far: publishing starts once all are, or their first events would be missed. */
const bound = new Set<string>();
const receivers = RECEIVERS.map((r, i) => ({ ...r, queue: `faults-rx-${i}`, seen: [] as Delivery[] }));
/** When the everything-receiver last saw an event published at or after a moment: for recovery times. */
let newestPublishSeen = 0;

function receiver(r: (typeof receivers)[number]): Promise<void> {
  return resilient(
    `receiver ${r.kind}`,
    () => running,
    async (conn) => {
      const ch: Channel = await conn.createChannel();
      ch.on('error', () => undefined);
      await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
      await ch.assertQueue(r.queue, { durable: true });
      for (const b of r.bindings) await ch.bindQueue(r.queue, EVENTS_EXCHANGE, b);
      bound.add(r.queue);
      await ch.prefetch(500);
      await ch.consume(r.queue, (m) => {
        if (!m) return;
        const h = m.properties.headers ?? {};
        let at = 0;
        try {
          at = Number(JSON.parse(m.content.toString()).at) || 0;
        } catch {}
        r.seen.push({ offset: Number(String(h[Headers.OFFSET])), key: m.fields.routingKey, at, replay: h[Headers.REPLAY] !== undefined });
        if (r.kind === 'everything' && at > newestPublishSeen) newestPublishSeen = at;
        ch.ack(m);
      });
    },
  );
}

interface SubClient {
  name: string;
  selector: string;
  start: number;
  processed: number[];
  repeats: number;
  last: number;
  stalled: boolean;
}
const subs: SubClient[] = [];
function take(s: SubClient, offset: number): void {
  if (!Number.isFinite(offset) || offset <= s.last) {
    s.repeats++;
    return;
  }
  s.processed.push(offset);
  s.last = offset;
}

async function grpcClient(s: SubClient): Promise<void> {
  const it = subscription(s.name, s.selector, {
    url: `127.0.0.1:${grpcPort}`,
    maxInFlight: 50,
    reconnectMaxDelayMs: 500,
    onError: (err) => debug(`${s.name}: ${err.message.slice(0, 160)}`),
  });
  closers.push(() => it.close());
  for await (const e of it) {
    while (s.stalled && running) await sleep(50);
    take(s, Number(e.offset));
    e.ack();
    if (!running) break;
  }
}

async function pullClient(s: SubClient): Promise<void> {
  while (running) {
    const r = await api('GET', `/subscriptions/${s.name}/events?max=300&wait=1`);
    if (r?.status !== 200) {
      await sleep(200);
      continue;
    }
    for (const e of r.body.events) take(s, Number(e.offset));
    if (s.last > s.start) await api('POST', `/subscriptions/${s.name}/ack`, { offset: String(s.last) });
  }
}

// ---- faults ----------------------------------------------------------------------------------------

type Fault = 'sigkill' | 'sigterm' | 'connections' | 'rabbitmq' | 'postgres' | 'db-cut' | 'overflow';
interface Injected {
  fault: Fault;
  at: number;
  repairedAt: number;
  flowingAt: number | undefined;
}
const injected: Injected[] = [];

function sh(cmd: string, argv: string[]): void {
  execFileSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
}

async function portOpen(port: number): Promise<boolean> {
  const { connect: tcp } = await import('node:net');
  return new Promise((resolve) => {
    const s = tcp(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Injects one fault and returns when the broken part is back (the hub restarted, the line restored…). */
async function inject(fault: Fault): Promise<void> {
  switch (fault) {
    case 'sigkill':
    case 'sigterm':
      await hub?.kill(fault === 'sigkill' ? 'SIGKILL' : 'SIGTERM');
      await sleep(int(0, 1500));
      await startHub();
      return;
    case 'connections':
      log(`closed ${await vhost.dropConnections()} connections`);
      return;
    case 'rabbitmq':
      sh('rabbitmqctl', ['stop_app']);
      await sleep(int(1000, 3000));
      sh('rabbitmqctl', ['start_app']);
      await waitFor('RabbitMQ listening', () => portOpen(5672), 60_000, 200);
      await waitFor('the management API', () => portOpen(15672), 60_000, 200);
      return;
    case 'postgres':
      sh('pg_ctlcluster', ['--skip-systemctl-redirect', pgVersion, 'main', 'restart']);
      await waitFor('PostgreSQL listening', () => portOpen(5432), 60_000, 200);
      return;
    case 'db-cut':
      pgProxy.cut();
      await sleep(10_000);
      pgProxy.restore();
      return;
    case 'overflow': {
      const s = subs.find((x) => x.name === 'faults-grpc') as SubClient;
      s.stalled = true;
      await sleep(6000);
      s.stalled = false;
      return;
    }
  }
}

function schedule(): Fault[] {
  const faults: Fault[] = [
    ...Array.from({ length: kills }, () => 'sigkill' as const),
    'sigterm',
    'connections',
    'rabbitmq',
    'postgres',
    'db-cut',
    'overflow',
  ];
  if (only) faults.splice(0, faults.length, ...faults.filter((f) => only.includes(f)));
  for (let i = faults.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [faults[i], faults[j]] = [faults[j] as Fault, faults[i] as Fault];
  }
  return faults;
}

// ---- the account ----------------------------------------------------------------------------------

interface Line {
  name: string;
  ok: boolean;
  detail: string;
}
const lines: Line[] = [];

async function account(): Promise<void> {
  const reader = await openStore({ url: db.url });
  closers.push(() => reader.close());
  const events: { offset: number; id: string; key: string }[] = [];
  const readLog = async () => {
    events.length = 0;
    let after = 0n;
    for (;;) {
      const rows = await reader.query({ selector: '*:*', after, limit: 10_000 });
      for (const e of rows) events.push({ offset: Number(e.offset), id: e.id, key: `${e.sender}.${e.type}` });
      if (rows.length < 10_000) return;
      after = (rows[rows.length - 1] as { offset: bigint }).offset;
    }
  };
  const inLog = new Set<string>();
  await waitFor(
    'every confirmed event in the log',
    async () => {
      await readLog();
      inLog.clear();
      for (const e of events) inLog.add(e.id);
      return [...confirmed.keys()].every((id) => inLog.has(id));
    },
    90_000,
    1000,
  ).catch(() => undefined);
  const live = (r: (typeof receivers)[number]) => new Set(r.seen.filter((d) => !d.replay).map((d) => d.offset));
  await waitFor(
    'receivers caught up',
    () =>
      receivers.every((r) => {
        const got = live(r);
        return events.every((e) => !matches(r.selector, e.key) || got.has(e.offset));
      }),
    90_000,
    500,
  ).catch(() => undefined);
  const expectedOf = (s: SubClient) => events.filter((e) => e.offset > s.start && matches(s.selector, e.key)).map((e) => e.offset);
  await waitFor('subscriptions caught up', () => subs.every((s) => s.processed.length >= expectedOf(s).length), 90_000, 500).catch(
    () => undefined,
  );

  const lostInLog = [...confirmed.keys()].filter((id) => !inLog.has(id));
  const dense = events.every((e, i) => e.offset === i + 1) && inLog.size === events.length;
  lines.push({
    name: 'log: every confirmed event stored, once, offsets dense',
    ok: lostInLog.length === 0 && dense,
    detail: `${confirmed.size} confirmed, ${events.length} stored (unconfirmed publishes may be stored too), lost ${lostInLog.length}${lostInLog.length ? ` (first ${lostInLog[0]})` : ''}${dense ? '' : ', offsets NOT dense or an id stored twice'}`,
  });
  const byOffset = new Map(events.map((e) => [e.offset, e]));
  for (const r of receivers) {
    const got = new Set<number>();
    const lastOfKey = new Map<string, number>();
    let twice = 0;
    const disorder: string[] = [];
    for (const d of r.seen) {
      if (got.has(d.offset)) {
        twice++;
        continue;
      }
      got.add(d.offset);
      const prev = lastOfKey.get(d.key);
      if (prev !== undefined && d.offset < prev) disorder.push(`${d.key}: ${d.offset} after ${prev}`);
      lastOfKey.set(d.key, d.offset);
    }
    const expected = events.filter((e) => matches(r.selector, e.key));
    const lost = expected.filter((e) => !got.has(e.offset));
    const stray = [...got].filter((o) => !byOffset.has(o) || !matches(r.selector, byOffset.get(o)?.key ?? '')).length;
    lines.push({
      name: `receiver ${r.kind} (${r.bindings.join(' ')})`,
      ok: lost.length === 0 && disorder.length === 0 && stray === 0,
      detail: `${got.size} of ${expected.length}, lost ${lost.length}${lost.length ? ` (first offset ${lost[0]?.offset})` : ''}, delivered twice ${twice}, out of order ${disorder.length}${disorder.length ? ` (${disorder.slice(0, 3).join('; ')})` : ''}${stray ? `, ${stray} not matching or not in the log` : ''}`,
    });
  }
  for (const s of subs) {
    const want = expectedOf(s);
    const at = s.processed.findIndex((o, i) => want[i] !== o);
    const lost = Math.max(0, want.length - s.processed.length);
    lines.push({
      name: `subscription ${s.name} (${s.selector})`,
      ok: at < 0 && lost === 0,
      detail: `${s.processed.length} of ${want.length} in order, lost ${lost}, delivered twice ${s.repeats}${at >= 0 ? `, GAP or DISORDER: ${s.processed[at]} where ${want[at]} was due` : ''}`,
    });
  }
}

async function main(): Promise<void> {
  log(`seed ${seed}, ${kills} kills; vhost ${vhost.name}, database ${db.name}`);
  await startHub();
  for (const s of SUBSCRIPTIONS) {
    const r = await api('POST', '/subscriptions', { name: s.name, selector: s.selector, start: 'earliest' });
    if (r?.status !== 201) throw new Error(`cannot create ${s.name}: ${r?.status} ${JSON.stringify(r?.body)}`);
    subs.push({
      name: s.name,
      selector: s.selector,
      start: Number(r.body.ackedOffset),
      processed: [],
      repeats: 0,
      last: 0,
      stalled: false,
    });
  }
  for (const s of subs) s.last = s.start;
  const consumers = [...receivers.map(receiver), grpcClient(subs[0] as SubClient), pullClient(subs[1] as SubClient)];
  await waitFor('receivers bound', () => bound.size === receivers.length, 60_000, 50);
  const publishers = [rawPublisher(), sdkPublisher('f2'), sdkPublisher('f4')];
  await waitFor('events flowing', () => (receivers[0]?.seen.length ?? 0) > 100, 60_000, 100);
  for (const fault of schedule()) {
    await sleep(int(2000, 6000));
    const at = Date.now();
    log(`inject ${fault}`);
    await inject(fault);
    const repairedAt = Date.now();
    const flowing = await waitFor('flowing again', () => newestPublishSeen >= repairedAt, 90_000, 50)
      .then(() => Date.now())
      .catch(() => undefined);
    injected.push({ fault, at, repairedAt, flowingAt: flowing });
    log(
      `${fault}: repaired after ${((repairedAt - at) / 1000).toFixed(1)} s, flowing ${flowing ? `${((flowing - repairedAt) / 1000).toFixed(2)} s later` : 'NOT within 90 s'}`,
    );
  }
  await sleep(3000);
  publishing = false;
  await Promise.race([Promise.allSettled(publishers), sleep(30_000)]);
  log(`load stopped: ${confirmed.size} confirmed; accounting`);
  await account();
  running = false;
  await Promise.race([Promise.allSettled(consumers), sleep(10_000)]);
  const stuck = injected.filter((f) => f.flowingAt === undefined);
  const recovery = injected.filter((f) => f.flowingAt !== undefined).map((f) => ({ f, ms: (f.flowingAt as number) - f.repairedAt }));
  const worst = recovery.sort((a, b) => b.ms - a.ms)[0];
  lines.push({
    name: 'flowing again after every fault',
    ok: stuck.length === 0,
    detail: `${injected.length} faults (${Object.entries(
      injected.reduce<Record<string, number>>((acc, f) => {
        acc[f.fault] = (acc[f.fault] ?? 0) + 1;
        return acc;
      }, {}),
    )
      .map(([k, v]) => `${k} ${v}`)
      .join(
        ', ',
      )}); longest from repair to flowing: ${worst ? `${(worst.ms / 1000).toFixed(2)} s (${worst.f.fault})` : 'n/a'}${stuck.length ? `; STUCK after ${stuck.map((f) => f.fault).join(', ')}` : ''}`,
  });
}

let failed = true;
try {
  await main();
  for (const l of lines) process.stdout.write(`${l.ok ? 'ok  ' : 'FAIL'} ${l.name}: ${l.detail}\n`);
  failed = lines.some((l) => !l.ok);
  process.stdout.write(
    `faults seed ${seed}: ${failed ? 'FAILED' : 'nothing lost, nothing reordered'} in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`,
  );
} catch (err) {
  log(`run failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  running = false;
  if (hubLog) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(hubLog, hubs.map((h) => h.output()).join('\n--- restart ---\n'));
  } else if (failed && hub) process.stderr.write(`faults: the hub's last output:\n${hub.output().slice(-4000)}\n`);
  await hub?.kill('SIGKILL');
  for (const c of closers) await c().catch(() => undefined);
  await pgProxy.close().catch(() => undefined);
  await vhost.delete().catch(() => undefined);
  await db.drop().catch(() => undefined);
}
process.exit(failed ? 1 : 0);
