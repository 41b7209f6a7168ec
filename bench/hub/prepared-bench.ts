/**
 * What a named prepared statement saves PostgreSQL on the store's appends: the store's own INSERT
 * for a batch of n events (n = 1, the batch size of a hub at low load, and n = 256, one under
 * load), sent one after another, unnamed (parsed and planned every time) and named (planned once),
 * twice each, alternating. Reads the server backend's CPU time from /proc, so it must run on the
 * database's machine.
 *
 *   node --import tsx bench/hub/prepared-bench.ts [events per case=5000]
 *
 * Uses a scratch database (HERALD_TEST_DATABASE_URL's server); prints JSON; asserts nothing.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createTestDatabase } from '@herald/testing';
import pg from 'pg';
import { openStore } from '../../packages/hub/src/store/open.ts';
import { insertEventsSql } from '../../packages/hub/src/store/sql-store.ts';

const eventsPerCase = Number(process.argv[2] ?? 5000);

const db = await createTestDatabase('prepared');
const store = await openStore({ url: db.url });
await store.migrate();
await store.close();
const client = new pg.Client(db.url);
await client.connect();
try {
  const pid = Number((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid);
  /** utime + stime of the backend, in clock ticks (1/100 s). */
  const cpuTicks = () => {
    const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
    return Number(fields[11]) + Number(fields[12]);
  };
  const body = Buffer.alloc(1024, 0x61);
  let offset = 0;
  const run = async (rows: number, named: boolean) => {
    const text = insertEventsSql(rows);
    const statements = Math.max(1, Math.round(eventsPerCase / rows));
    const ticks = cpuTicks();
    const started = performance.now();
    for (let i = 0; i < statements; i++) {
      const now = Date.now() / 1000;
      const values: unknown[] = [now];
      for (let r = 0; r < rows; r++)
        values.push(String(++offset), randomUUID(), 's1', 't1', now, 'application/json', null, null, null, '{}', body);
      await client.query(named ? { name: `bench_insert_${rows}`, text, values } : { text, values });
    }
    const events = statements * rows;
    return {
      postgresCpuUsPerEvent: Math.round(((cpuTicks() - ticks) * 10_000) / events),
      wallUsPerEvent: Math.round(((performance.now() - started) * 1000) / events),
    };
  };
  const cases = [];
  for (const rows of [1, 256]) {
    for (let round = 0; round < 2; round++) cases.push({ rows, round, unnamed: await run(rows, false), named: await run(rows, true) });
  }
  process.stdout.write(`${JSON.stringify({ eventsPerCase, cases }, null, 2)}\n`);
} finally {
  await client.end();
  await db.drop();
}
