/**
 * What the store needs of a database connection, answered by both drivers (`pg` and PGlite) with
 * the same SQL. Rows come back with bigint columns as strings or numbers (callers convert) and bytea
 * as bytes.
 */
export interface SqlExecutor {
  /**
   * Runs one statement. `prepared` names it: a server connection parses and plans it once under
   * that name and reuses the plan (one name, always the same SQL); PGlite, in process, ignores it.
   */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], prepared?: string): Promise<{ rows: T[] }>;
}

/** A connection that can also run several statements without parameters (migrations). */
export interface ScriptExecutor extends SqlExecutor {
  exec(sql: string): Promise<void>;
}

export interface Driver extends ScriptExecutor {
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: ScriptExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Where the log is read (queries, catch-up, pulls, replays): on a server, a pool apart from the
 * writer's with a statement timeout; in the embedded store, the one connection. Rejects with a
 * HeraldError TIMEOUT when a statement ran past the timeout, UNAVAILABLE when no connection could
 * be had or it broke; other errors (a statement PostgreSQL refused) as the driver raised them.
 */
export interface ReadExecutor extends SqlExecutor {
  close(): Promise<void>;
}
