export type { Driver, ScriptExecutor, SqlExecutor } from './driver.ts';
export { migrationFiles } from './migrate.ts';
export type { OpenStoreOptions } from './open.ts';
export { DEFAULT_DATA_DIR, openStore } from './open.ts';
export { SqlStore } from './sql-store.ts';
export type { AppendResult, DeadLetter, EventQuery, Store, StoredEvent } from './types.ts';
