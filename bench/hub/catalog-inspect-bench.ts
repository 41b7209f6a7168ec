/**
 * What the catalog's ingest hook costs per event (the hub's inspect: observation counting, then the
 * validation lookup), in process, with no I/O: events parsed as ingest parses them, inspected in
 * a loop, for three cases — no type validates, another type validates, and this type validates
 * against a small schema; eight types in turn, and (no type validates) runs of 64 events of one type. Nanoseconds per event, best of five rounds.
 *
 *   node --conditions=herald-source --import tsx bench/hub/catalog-inspect-bench.ts [events per round=1000000]
 *
 * Uses a throwaway embedded store for the catalog; prints JSON; asserts nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEvent, type HeraldEvent } from '@herald/core';
import pino from 'pino';
import { Catalog } from '../../packages/hub/src/catalog/catalog.ts';
import { CatalogObserver } from '../../packages/hub/src/catalog/observer.ts';
import { IngestValidation } from '../../packages/hub/src/catalog/validation.ts';
import { createCatalogStore, openStore } from '../../packages/hub/src/store/index.ts';

const perRound = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'herald-inspect-bench-'));
const store = await openStore({ dataDir: dir });
await store.migrate();
const catalogStore = createCatalogStore(store.sql);
const log = pino({ level: 'silent' });
const validation = new IngestValidation(catalogStore, log, 3_600_000);
const observer = new CatalogObserver(catalogStore, async () => [], log, { flushMs: 3_600_000 });
const catalog = new Catalog(catalogStore, () => validation.refresh());
await validation.start();
const inspect = (e: HeraldEvent, userId: unknown) => {
  observer.seenEvent(e.sender, e.type, userId);
  validation.check(e);
};

const events = Array.from({ length: 64 }, (_, i) =>
  createEvent({ sender: 'billing', type: `invoice.t${i % 8}`, data: { invoiceId: `inv-${i}`, amount: i } }),
);

/** `mixed`: eight types in turn; else runs of one type (as a batch of one producer's events often is). */
let mixed = true;

function round(fn: (e: HeraldEvent) => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < perRound; i++) fn(events[mixed ? i & 63 : (i >> 6) & 63] as HeraldEvent);
  return Number(process.hrtime.bigint() - t0) / perRound;
}

function best(fn: (e: HeraldEvent) => void): number {
  let min = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 5; r++) min = Math.min(min, round(fn));
  return Math.round(min * 10) / 10;
}

const result: Record<string, number> = {};
result.baseline_ns = best(() => undefined);
result.no_type_validates_ns = best((e) => inspect(e, 'herald-billing'));
result.no_type_validates_validation_only_ns = best((e) => validation.check(e));
result.no_type_validates_observation_only_ns = best((e) => observer.seenEvent(e.sender, e.type, 'herald-billing'));
mixed = false;
result.no_type_validates_runs_of_one_type_ns = best((e) => inspect(e, 'herald-billing'));
mixed = true;
await catalog.put('crm', 'contact.added', { schema: { type: 'object' }, validate: true });
result.another_type_validates_ns = best((e) => inspect(e, 'herald-billing'));
const schema = {
  type: 'object',
  properties: { invoiceId: { type: 'string' }, amount: { type: 'integer', minimum: 0 } },
  required: ['invoiceId'],
};
for (let i = 0; i < 8; i++) await catalog.put('billing', `invoice.t${i}`, { schema, validate: true });
result.this_type_validates_ns = best((e) => inspect(e, 'herald-billing'));
console.log(JSON.stringify({ eventsPerRound: perRound, ...result }));
validation.stop();
await store.close();
rmSync(dir, { recursive: true, force: true });
