/**
 * What the outbox needs of a PostgreSQL connection: `query(text, values)` as `pg` has it, so a
 * pg.Client, a pg.PoolClient and a pg.Pool all fit.
 */
export interface Queryable {
  // biome-ignore lint/suspicious/noExplicitAny: pg's own signature; rows are read as the SQL selects them
  query(text: string, values?: any[]): Promise<{ rows: any[]; rowCount?: number | null }>;
}
