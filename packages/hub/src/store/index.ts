/**
 * The event store: the log (events with dense offsets), dead letters and the hub's small state, in
 * PostgreSQL (`pg`) or the embedded store (PGlite), behind one interface, `Store`, with one
 * repository per table (`Store.pauses`, `.held`, `.replays`, …). All of the hub's SQL is here.
 *
 * Failure, in short: every method rejects while the database is unreachable and nothing is
 * half-written (each write is one transaction); the `pg` pool reconnects by itself on the next call.
 * A lost writer lease is reported through `onLeaseLost`, and `append` then rejects with CONFLICT
 * until `acquireWriterLease()` succeeds again. Details on each export.
 */

export {
  type CatalogEntry,
  type CatalogKey,
  type CatalogListQuery,
  type CatalogPage,
  type CatalogSchemaVersion,
  type CatalogStore,
  type CatalogType,
  type CatalogWrite,
  createCatalogStore,
  OBSERVED_PER_TYPE,
  type ObservedConsumer,
  type ObservedProducer,
  type ValidatedType,
} from './catalog-store.ts';
export {
  createDeadLetterStore,
  DEAD_LETTER_SOURCES,
  type DeadLetterFilter,
  type DeadLetterSource,
  type DeadLetterStore,
  type ReceivedDeadLetter,
  type StoredDeadLetter,
} from './dead-letter-store.ts';
export type { Driver, ReadExecutor, ScriptExecutor, SqlExecutor } from './driver.ts';
export { createExchangeStore, type ExchangeRecord, type ExchangeStore } from './exchange-store.ts';
export { createHeldStore, type HeldRow, type HeldStore } from './held-store.ts';
export { migrationFiles } from './migrate.ts';
export type { OpenStoreOptions } from './open.ts';
export { DEFAULT_DATA_DIR, openStore } from './open.ts';
export { createPauseStore, type PauseStore } from './pause-store.ts';
export { createReplayStore, type ReplayStore } from './replay-store.ts';
export { type MatchingOffsets, matchingOffsetsSql } from './selector-sql.ts';
export { eventQuerySql, queryMayHaveMore, SqlStore } from './sql-store.ts';
export {
  createSubscriptionStore,
  type Lag,
  type LagEntry,
  type ReceiverRecord,
  receiverQueue,
  type SubscriptionRecord,
  type SubscriptionStore,
} from './subscription-store.ts';
export type { AppendResult, DeadLetter, EventQuery, Repositories, Store, StoredEvent } from './types.ts';
export { READ_MAX_BYTES } from './types.ts';
export { createUserStore, type TokenOwner, type UserStore } from './user-store.ts';
