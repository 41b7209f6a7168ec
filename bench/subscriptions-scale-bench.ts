/**
 * The router with many durable subscriptions, side by side in one run on one router hub on
 * PostgreSQL (`startRouterHub`): `herald bench --receivers all --count <n>` flat out (through
 * `runHeraldBench`'s path) with
 *   - no subscription;
 *   - N subscriptions of distinct selectors that all match the bench's traffic (`s<k>:*,x<i>:y`: the
 *     bench's senders s1…s3 in turn, plus a pattern of no sender, so each canonical selector differs),
 *     sleeping (no consumer), for each N of --counts;
 *   - the same N with --active of them attached through the gRPC SDK (`subscription()`, start
 *     `new`, acking everything) for the whole run.
 * Each step also times GET /api/v1/subscriptions with its N subscriptions (the median of 5 calls).
 * Events/s of each step beside the ratio to the no-subscription run of the same round; the rounds
 * turn the order of the steps. Subscriptions are made and deleted (DELETE /api/v1/subscriptions/{name})
 * around each step; HERALD_MAX_SUBSCRIPTIONS is set to allow the largest N. A bench run longer than
 * --timeout seconds is stopped and reported as a timeout, and the hub given time to drain its
 * ingest queue before the next step.
 *
 *   node --conditions=herald-source --import tsx bench/subscriptions-scale-bench.ts
 *     [--rounds 2] [--counts 300,1000] [--count 20000] [--active 20] [--timeout 240]
 *
 * Works in a vhost and a database of its own and removes both. Prints one JSON document; asserts nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { type DurableSubscription, subscription } from '@herald/client/grpc';
import { type RouterHub, restClient, spawnHerald, startRouterHub } from '@herald/testing';
import { connect } from 'amqplib';
import type { BenchReport } from '../packages/cli/src/bench/index.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    counts: { type: 'string', default: '300,1000' },
    count: { type: 'string', default: '20000' },
    active: { type: 'string', default: '20' },
    timeout: { type: 'string', default: '240' },
  },
});
const ROUNDS = Number(args.rounds);
const COUNTS = String(args.counts)
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0);
const EVENTS = Number(args.count);
const ACTIVE = Number(args.active);
const TIMEOUT_MS = Number(args.timeout) * 1000;
/** The bench's senders (`herald bench` defaults: 3 senders × 4 types). */
const SENDERS = ['s1', 's2', 's3'];
/** Creates and deletes in flight at once. */
const PARALLEL = 16;
/** How long a stopped bench may take to delete its queues before it is killed. */
const STOP_GRACE_MS = 30_000;
/** How long the hub may take to drain herald.ingest after a step before the next one starts anyway. */
const SETTLE_MS = 120_000;
const LIST_CALLS = 5;

type Call = ReturnType<typeof restClient>;

function log(line: string): void {
  process.stderr.write(`subscriptions-scale-bench: ${new Date().toISOString().slice(11, 19)} ${line}\n`);
}

const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

/** Runs `fn` over `items`, `PARALLEL` at a time. */
async function inParallel<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}

const nameOf = (i: number) => `scale-${i}`;
/** Distinct canonical selectors, each matching one of the bench's senders. */
const selectorOf = (i: number) => `${SENDERS[i % SENDERS.length]}:*,x${i}:y`;

async function createSubscriptions(call: Call, n: number): Promise<number> {
  const t0 = performance.now();
  await inParallel(
    Array.from({ length: n }, (_, i) => i),
    async (i) => {
      const r = await call('POST', '/api/v1/subscriptions', { name: nameOf(i), selector: selectorOf(i), start: 'new' });
      if (r.status !== 201 && r.status !== 200) throw new Error(`creating ${nameOf(i)} answered ${r.status}: ${r.text}`);
    },
  );
  return round((performance.now() - t0) / 1000, 1);
}

async function deleteSubscriptions(call: Call, n: number): Promise<number> {
  const t0 = performance.now();
  await inParallel(
    Array.from({ length: n }, (_, i) => i),
    async (i) => {
      const r = await call('DELETE', `/api/v1/subscriptions/${nameOf(i)}`);
      if (r.status >= 300 && r.status !== 404) throw new Error(`deleting ${nameOf(i)} answered ${r.status}: ${r.text}`);
    },
  );
  return round((performance.now() - t0) / 1000, 1);
}

/** The median time of GET /api/v1/subscriptions, ms, and the number of items it answered. */
async function timeList(call: Call): Promise<{ listMs: number; listed: number }> {
  const times: number[] = [];
  let listed = 0;
  for (let i = 0; i < LIST_CALLS; i++) {
    const t0 = performance.now();
    const r = await call('GET', '/api/v1/subscriptions');
    times.push(performance.now() - t0);
    if (r.status !== 200) throw new Error(`GET /api/v1/subscriptions answered ${r.status}: ${r.text}`);
    listed = (r.json().items as unknown[]).length;
  }
  times.sort((a, b) => a - b);
  return { listMs: round(times[Math.floor(times.length / 2)] as number, 1), listed };
}

/** SDK consumers of the first `n` subscriptions, acking every event; resolves once the hub shows each active. */
async function attach(fx: RouterHub, call: Call, n: number) {
  const subs: DurableSubscription[] = [];
  let consumed = 0;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const sub = subscription(nameOf(i), selectorOf(i), { url: fx.grpc, start: 'new', maxInFlight: 1000 });
    subs.push(sub);
    loops.push(
      (async () => {
        for await (const event of sub) {
          consumed++;
          event.ack();
        }
      })().catch((err) => log(`consumer ${nameOf(i)} ended: ${String(err)}`)),
    );
  }
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < n; i++) {
    for (;;) {
      const r = await call('GET', `/api/v1/subscriptions/${nameOf(i)}`);
      if (r.status === 200 && r.json().state === 'active') break;
      if (Date.now() > deadline) throw new Error(`${nameOf(i)} not active after 60 s: ${r.status} ${r.text}`);
      await sleep(50);
    }
  }
  return {
    consumed: () => consumed,
    async close() {
      await Promise.all(subs.map((s) => s.close()));
      await Promise.all(loops);
    },
  };
}

/** Deletes the queues a stopped bench left (`herald.bench.<run>.*`): bound to herald.events, they would take copies of the next steps' events. */
async function deleteBenchQueues(fx: RouterHub): Promise<void> {
  const left = (await fx.vhost.queues()).filter((q) => q.name.startsWith('herald.bench.'));
  if (left.length === 0) return;
  const conn = await connect(fx.vhost.url);
  try {
    const ch = await conn.createChannel();
    for (const q of left) await ch.deleteQueue(q.name);
  } finally {
    await conn.close();
  }
}

/** Waits (up to SETTLE_MS) until herald.ingest is empty, so that a slow step does not spill into the next. */
async function settle(fx: RouterHub): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < SETTLE_MS) {
    const ingest = (await fx.vhost.queues()).find((q) => q.name === 'herald.ingest');
    if ((ingest?.messages ?? 0) === 0) break;
    await sleep(1000);
  }
  return round((performance.now() - t0) / 1000, 1);
}

/** `herald bench --receivers all --count <EVENTS>` as runHeraldBench runs it, stopped after TIMEOUT_MS. */
async function flatOut(fx: RouterHub) {
  const p = spawnHerald(['bench', '--json', '--quiet', '--receivers', 'all', '--count', String(EVENTS)], { HERALD_AMQP_URL: fx.vhost.url });
  const t0 = performance.now();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    // SIGTERM first: the bench stops sending and deletes its queues.
    p.child.kill('SIGTERM');
    setTimeout(() => p.child.kill('SIGKILL'), STOP_GRACE_MS).unref();
  }, TIMEOUT_MS);
  const code = await p.exited;
  clearTimeout(timer);
  const seconds = round((performance.now() - t0) / 1000, 1);
  if (timedOut) {
    await deleteBenchQueues(fx);
    return { timeout: true, seconds, perSec: undefined, ok: false };
  }
  const out = p.output();
  const start = out.indexOf('{"run"');
  if (start < 0) return { error: `no report (exit ${code}): ${out.slice(-500)}`, seconds, perSec: undefined, ok: false };
  const r = JSON.parse(out.slice(start, out.lastIndexOf('}') + 1)) as BenchReport;
  const all = r.receivers.find((x) => x.kind === 'all');
  return {
    ok: r.ok,
    seconds,
    perSec: Math.round(all?.throughput ?? 0),
    p50: all === undefined ? undefined : round(all.latencyMs.p50),
    p99: all === undefined ? undefined : round(all.latencyMs.p99),
    lost: all?.lost,
  };
}

interface Step {
  subscriptions: number;
  active: number;
}

async function runStep(fx: RouterHub, call: Call, step: Step) {
  const label = `${step.subscriptions} subscriptions, ${step.active} active`;
  log(`${label}: creating`);
  const createS = step.subscriptions > 0 ? await createSubscriptions(call, step.subscriptions) : 0;
  const list = step.subscriptions > 0 ? await timeList(call) : undefined;
  const consumers = step.active > 0 ? await attach(fx, call, step.active) : undefined;
  log(`${label}: herald bench, ${EVENTS} events`);
  const bench = await flatOut(fx);
  const consumed = consumers?.consumed();
  await consumers?.close();
  log(`${label}: ${bench.perSec ?? (bench.timeout ? 'timeout' : 'error')} events/s; deleting`);
  const deleteS = step.subscriptions > 0 ? await deleteSubscriptions(call, step.subscriptions) : 0;
  const settleS = await settle(fx);
  // Each subscription matches one sender's share of the events (senders take turns).
  const matching = (step.active * EVENTS) / SENDERS.length;
  const consumedShare = consumed === undefined ? undefined : round(consumed / matching, 3);
  return { ...step, ...bench, ...list, consumedDuringRun: consumed, consumedShare, createS, deleteS, settleS };
}

/**
 * runStep, but a step that fails (the hub gone, a call refused) is reported with the end of the
 * hub's output and the run goes on, on a hub started again if this one exited.
 */
async function guardedStep(fx: RouterHub, call: Call, step: Step) {
  let result: Record<string, unknown> & { subscriptions: number; perSec?: number | undefined };
  try {
    result = await runStep(fx, call, step);
  } catch (err) {
    const exited = fx.hub.child.exitCode ?? fx.hub.child.signalCode;
    result = { ...step, error: String(err), hubExited: exited ?? undefined, hubOutput: fx.hub.output().slice(-1500) };
    log(`${step.subscriptions} subscriptions, ${step.active} active failed: ${String(err)} (hub exit ${exited})`);
    if (exited !== null) await fx.start();
    await deleteSubscriptions(call, step.subscriptions).catch(() => undefined);
    await settle(fx);
  }
  log(`step: ${JSON.stringify({ ...result, hubOutput: undefined })}`);
  return result;
}

const steps: Step[] = [{ subscriptions: 0, active: 0 }];
for (const n of COUNTS) {
  steps.push({ subscriptions: n, active: 0 });
  if (ACTIVE > 0) steps.push({ subscriptions: n, active: Math.min(ACTIVE, n) });
}
const maxN = Math.max(0, ...COUNTS);
const fx = await startRouterHub('subscale', { HERALD_MAX_SUBSCRIPTIONS: String(Math.max(10_000, maxN + 100)) });
const call = restClient(fx.http);
try {
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Odd rounds run the steps in reverse, so that no step always comes after the same one.
    const order = r % 2 === 0 ? steps : [...steps].reverse();
    const results = [];
    for (const step of order) results.push(await guardedStep(fx, call, step));
    const zero = results.find((x) => x.subscriptions === 0)?.perSec;
    rounds.push(results.map((x) => ({ ...x, ratio: zero && x.perSec !== undefined ? round(x.perSec / zero, 3) : undefined })));
  }
  process.stdout.write(
    `${JSON.stringify({ events: EVENTS, counts: COUNTS, active: ACTIVE, timeoutS: TIMEOUT_MS / 1000, rounds }, null, 2)}\n`,
  );
} finally {
  await fx.close();
}
