/**
 * Measures the event store: (a) the append rate of 1 KB events in batches of 500, on PostgreSQL and
 * on the embedded store; (b) on a log of ≥ 1,000,000 events (50 senders × 20 types), how long the
 * log takes to answer "the last 10 events of types t1 and t2 from sender s1" and a few other
 * selector/offset/time queries, with the plans PostgreSQL chose. Prints JSON; asserts nothing.
 *
 *   node --import tsx bench/hub/store-bench.ts --url postgres://root@127.0.0.1:5432/postgres \
 *     [--events 1000000] [--append-events 50000] [--embedded-append-events 20000] [--embedded-events 0] [--keep]
 *
 * `--url` names a server; the bench works in a scratch database of its own on that server
 * (`herald_bench_<random>`), dropped at the end unless `--keep`. Without `--url` only the embedded
 * store is measured. The 1M log is filled with one `INSERT … SELECT generate_series` per 100,000
 * rows (the append path is measured separately in (a)); `--embedded-events N` also fills and
 * queries an embedded store of N events.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createEvent, type HeraldEvent } from '@herald/core';
import pg from 'pg';
import type { SqlExecutor } from '../../packages/hub/src/store/driver.ts';
import { openStore } from '../../packages/hub/src/store/open.ts';
import { eventQuerySql, type SqlStore } from '../../packages/hub/src/store/sql-store.ts';
import type { EventQuery } from '../../packages/hub/src/store/types.ts';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    events: { type: 'string', default: '1000000' },
    'append-events': { type: 'string', default: '50000' },
    'embedded-append-events': { type: 'string', default: '20000' },
    'embedded-events': { type: 'string', default: '0' },
    keep: { type: 'boolean', default: false },
  },
});
const BATCH = 500;
const EVENT_BYTES = 1024;
const SENDERS = 50;
const TYPES = 20;
const FILL_CHUNK = 100_000;

function makeEvents(n: number): HeraldEvent[] {
  const data = randomBytes(EVENT_BYTES);
  return Array.from({ length: n }, (_, i) =>
    createEvent({ sender: `bench${i % 10}`, type: `append.t${i % 7}`, data, contentType: 'application/octet-stream' }),
  );
}

/** (a) events/s of store.append in batches of 500 1 KB events; the events are made beforehand. */
async function appendRate(store: SqlStore, total: number): Promise<Record<string, number>> {
  const events = makeEvents(total);
  await store.append(events.slice(0, BATCH)); // warm up: connections, plans
  const t0 = performance.now();
  for (let i = BATCH; i < events.length; i += BATCH) await store.append(events.slice(i, i + BATCH));
  const seconds = (performance.now() - t0) / 1000;
  const n = events.length - BATCH;
  return {
    events: n,
    seconds: round(seconds, 2),
    eventsPerSecond: Math.round(n / seconds),
    mbPerSecond: round((n * EVENT_BYTES) / seconds / 1e6, 1),
  };
}

/**
 * (b) Fills the log up to `total` events straight in SQL: sender s1…s50 and type t1…t20 spread
 * evenly (1,000 events per pair per million), 1 KB of bytes each. Before that, a rare pair
 * (`rare:t1`, `rare:t2`, 20 events) is appended at the old end of the log: the case where a plan
 * that walks the primary key backwards and filters would read the whole log.
 */
async function fillLog(store: SqlStore, total: number): Promise<Record<string, number>> {
  await store.append(Array.from({ length: 20 }, (_, i) => createEvent({ sender: 'rare', type: `t${(i % 2) + 1}`, data: { i } })));
  const head = await store.headOffset();
  const data = randomBytes(EVENT_BYTES);
  const t0 = performance.now();
  for (let from = 1; from <= total; from += FILL_CHUNK) {
    const to = Math.min(total, from + FILL_CHUNK - 1);
    await store.sql.query(
      `INSERT INTO events ("offset", id, sender, type, time, stored_at, content_type, headers, data)
       SELECT $1::bigint + g, gen_random_uuid(), 's' || (g % ${SENDERS} + 1), 't' || ((g / ${SENDERS}) % ${TYPES} + 1),
              to_timestamp(1700000000 + g / 100.0), now(), 'application/octet-stream', '{}'::jsonb, $4::bytea
       FROM generate_series($2::bigint, $3::bigint) g`,
      [head.toString(), from, to, data],
    );
  }
  await store.sql.query('ANALYZE events');
  // The fill went around the writer's cached head: take the lease again to re-read it.
  await store.acquireWriterLease();
  return { events: total, seconds: round((performance.now() - t0) / 1000, 1) };
}

const QUERIES: Record<string, EventQuery> = {
  'last 10 of s1:t1, s1:t2': { selector: 's1:t1, s1:t2', last: 10, limit: 10 },
  'last 10 of rare:t1, rare:t2 (old, rare)': { selector: 'rare:t1, rare:t2', last: 10, limit: 10 },
  'last 10 of *:t1, *:t2': { selector: '*:t1, *:t2', last: 10, limit: 10 },
  'last 10 of s1:*': { selector: 's1:*', last: 10, limit: 10 },
  'last 10 of everything': { last: 10, limit: 10 },
  '100 of s7:t3 after offset 500000': { selector: 's7:t3', after: 500_000n, limit: 100 },
  '100 of s1:*, s2:* in a 1-minute time window': {
    selector: 's1:*, s2:*',
    since: 1_700_000_000_000 + 5_000_000,
    until: 1_700_000_000_000 + 5_060_000,
    limit: 100,
  },
};

/** Runs each query 30 times (after 3 warm-ups) and reports median and max ms, and its plan. */
async function timeQueries(store: SqlStore): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [name, q] of Object.entries(QUERIES)) {
    for (let i = 0; i < 3; i++) await store.query(q);
    const ms: number[] = [];
    let rows = 0;
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      rows = (await store.query(q)).length;
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    const built = eventQuerySql(q);
    out[name] = {
      rows,
      medianMs: round(ms[15] ?? 0, 2),
      maxMs: round(ms[29] ?? 0, 2),
      plan: built ? await plan(store.sql, built.sql, built.params) : undefined,
    };
  }
  // For comparison: the obvious single-statement shape, an OR of patterns ordered by offset.
  const naive = `SELECT "offset" FROM events WHERE (sender = $1 AND type = $2) OR (sender = $1 AND type = $3) ORDER BY "offset" DESC LIMIT 10`;
  out['naive OR shape, rare:t1, rare:t2 (for comparison)'] = { plan: await plan(store.sql, naive, ['rare', 't1', 't2']) };
  return out;
}

/** EXPLAIN ANALYZE, compacted to the plan lines (node, index, rows, time). */
async function plan(sql: SqlExecutor, text: string, params: unknown[]): Promise<string[]> {
  const { rows } = await sql.query<Record<string, string>>(`EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) ${text}`, params);
  return rows.map((r) => String(Object.values(r)[0]).replace(/\s+$/, ''));
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

async function onPostgres(url: string): Promise<Record<string, unknown>> {
  const name = `herald_bench_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const scratch = new URL(url);
  scratch.pathname = `/${name}`;
  const store = await openStore({ url: scratch.href });
  try {
    await store.migrate();
    if (!(await store.acquireWriterLease())) throw new Error('writer lease not granted');
    const append = await appendRate(store, Number(args['append-events']));
    process.stderr.write(`postgres append: ${JSON.stringify(append)}\n`);
    const fill = await fillLog(store, Number(args.events));
    process.stderr.write(`postgres fill: ${JSON.stringify(fill)}\n`);
    const head = await store.headOffset();
    const { rows } = await store.sql.query<{ size: string }>(`SELECT pg_size_pretty(pg_total_relation_size('events')) AS size`);
    return { database: name, append, fill, head: head.toString(), eventsTableSize: rows[0]?.size, queries: await timeQueries(store) };
  } finally {
    await store.close();
    if (!args.keep) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
}

async function onEmbedded(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'herald-store-bench-'));
  const store = await openStore({ dataDir: dir });
  try {
    await store.migrate();
    await store.acquireWriterLease();
    const append = await appendRate(store, Number(args['embedded-append-events']));
    process.stderr.write(`embedded append: ${JSON.stringify(append)}\n`);
    const n = Number(args['embedded-events']);
    if (n <= 0) return { dataDir: dir, append };
    const fill = await fillLog(store, n);
    process.stderr.write(`embedded fill: ${JSON.stringify(fill)}\n`);
    return { dataDir: dir, append, fill, head: (await store.headOffset()).toString(), queries: await timeQueries(store) };
  } finally {
    await store.close();
    if (!args.keep) rmSync(dir, { recursive: true, force: true });
  }
}

const result: Record<string, unknown> = { eventBytes: EVENT_BYTES, batch: BATCH };
if (args.url) result.postgres = await onPostgres(args.url);
result.embedded = await onEmbedded();
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
