// Test helpers for the subscription int tests (not exported by the package): a store, a vhost, a
// real dispatcher forwarding to herald.events, and managers over them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HeraldEvent } from '@herald/core';
import { createTestDatabase, createTestVhost, type TestDatabase, type TestVhost } from '@herald/testing';
import { pino } from 'pino';
import { createDispatcher, type Dispatcher, LogFlow } from '../dispatcher/index.ts';
import { events } from '../dispatcher/test-kit.ts';
import { openStore, type SqlStore } from '../store/index.ts';
import type { Store, StoredEvent } from '../store/types.ts';
import { createSubscriptionManager, type SubscriptionManagerOptions } from './manager.ts';
import type { Consumer, DeliveredEvent, SubscriptionManager } from './types.ts';

export interface Rig {
  readonly vhost: TestVhost;
  readonly store: SqlStore;
  readonly dispatcher: Dispatcher;
  /** Stores events and dispatches them, as the ingest does for one batch. */
  ingest(spec: readonly [string, string][]): Promise<StoredEvent[]>;
  /** The same for events made elsewhere (a gRPC Publish, say). */
  ingestEvents(list: readonly HeraldEvent[]): Promise<StoredEvent[]>;
  /** A manager over the rig's store and vhost (started). */
  manager(options?: Partial<SubscriptionManagerOptions>): Promise<SubscriptionManager>;
  close(): Promise<void>;
}

export async function createRig(kind: 'postgres' | 'embedded', prefix: string): Promise<Rig> {
  const vhost = await createTestVhost(prefix);
  let db: TestDatabase | undefined;
  let dir: string | undefined;
  let store: SqlStore;
  if (kind === 'postgres') {
    db = await createTestDatabase(prefix);
    store = await openStore({ url: db.url });
  } else {
    dir = mkdtempSync(join(tmpdir(), `herald-${prefix}-`));
    store = await openStore({ dataDir: dir });
  }
  await store.migrate();
  if (!(await store.acquireWriterLease())) throw new Error('no writer lease');
  const logger = process.env.DEBUG_SUBSCRIPTIONS ? pino({ level: 'debug' }) : undefined;
  const managers: SubscriptionManager[] = [];
  // As the hub's event path does: the dispatcher forwards through the flow, and what the flow
  // forwards live reaches the managers' consumers from memory.
  let flow: LogFlow | undefined;
  const dispatcher = createDispatcher({ store, forward: (list, options) => (flow as LogFlow).send(list, options), logger });
  flow = new LogFlow({ amqpUrl: vhost.url, store, logger: logger ?? pino({ level: 'silent' }), dispatcher });
  const theFlow = flow;
  theFlow.onForwarded((list) => {
    for (const m of managers) m.feed(list);
  });
  await dispatcher.start();
  await theFlow.start();
  if (theFlow.horizon() === undefined) await theFlow.moveTo((await store.headOffset()) ?? 0n);
  let chain: Promise<unknown> = Promise.resolve();
  const ingestEvents = (list: readonly HeraldEvent[]): Promise<StoredEvent[]> => {
    const run = chain.then(async () => {
      const { stored } = await store.append(list);
      await theFlow.appended(stored);
      return stored;
    });
    chain = run.catch(() => undefined);
    return run;
  };
  return {
    vhost,
    store,
    dispatcher,
    ingest: (spec) => ingestEvents(events(spec)),
    ingestEvents,
    async manager(options = {}) {
      const m = createSubscriptionManager({
        store,
        sql: store.sql,
        amqpUrl: vhost.url,
        logger,
        dispatched: () => theFlow.horizon(),
        holding: () => dispatcher.stats().holding > 0,
        ...options,
      });
      await m.start();
      managers.push(m);
      return m;
    },
    async close() {
      for (const m of managers) await m.stop().catch(() => undefined);
      await theFlow.stop().catch(() => undefined);
      await dispatcher.stop().catch(() => undefined);
      await store.close();
      await vhost.delete();
      await db?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads from a consumer until `until` holds for what was received, acking every batch; gives up after `timeoutMs`. */
export async function drain(
  c: Consumer,
  until: (got: DeliveredEvent[]) => boolean,
  options: { max?: number; timeoutMs?: number; got?: DeliveredEvent[] } = {},
): Promise<DeliveredEvent[]> {
  const got = options.got ?? [];
  const end = Date.now() + (options.timeoutMs ?? 20_000);
  while (!until(got)) {
    const left = end - Date.now();
    if (left <= 0) throw new Error(`timed out with ${got.length} events; last ${got[got.length - 1]?.offset}`);
    const batch = await c.next(options.max ?? 100, AbortSignal.timeout(Math.min(left, 1000)));
    if (batch.length === 0) continue;
    got.push(...batch);
    c.ack((batch[batch.length - 1] as DeliveredEvent).offset);
  }
  return got;
}

/** Asserts strictly increasing offsets; returns them as numbers. */
export function offsetsOf(list: readonly { offset: bigint }[]): number[] {
  return list.map((e) => Number(e.offset));
}

/** Every offset of the log matching `selector`, ascending: what a subscription must end up with. */
export async function matchingOffsets(reader: Pick<Store, 'query'>, selector: string): Promise<bigint[]> {
  const out: bigint[] = [];
  for (;;) {
    const page = await reader.query({ selector, after: out.at(-1), limit: 10_000 });
    out.push(...page.map((e) => e.offset));
    if (page.length < 10_000) return out;
  }
}
