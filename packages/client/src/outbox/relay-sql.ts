// The relay's statements on the outbox table, all run on the one session that holds the lease.
import type { TableNames } from './schema.ts';
import type { Queryable } from './types.ts';

/** One pending row as the relay reads it. */
export interface OutboxRow {
  /** bigint, as text. */
  readonly seq: string;
  readonly id: string;
  readonly key: string | null;
  readonly sender: string;
  readonly type: string;
  /** bigint, as text. */
  readonly time_ms: string;
  readonly content_type: string;
  readonly data: Buffer;
  readonly subject: string | null;
  readonly correlation_id: string | null;
  readonly causation_id: string | null;
  readonly headers: unknown;
}

/** The lease of one outbox table: a two-key session advisory lock, its class "hrls". */
const LEASE_CLASS = 0x68726c73;

/** The relay's SQL for one outbox table. */
export class RelaySql {
  private readonly fetchSql: string;
  private readonly sentSql: string;
  private readonly refusedSql: string;
  private readonly parkSql: string;
  private readonly purgeSql: string;

  constructor(
    private readonly names: TableNames,
    retentionMs: number,
  ) {
    const t = names.outbox;
    // The byte budget reads each body's length from its TOAST pointer, without fetching the body;
    // the first row always fits, so one large row cannot stall the relay.
    this.fetchSql = `SELECT o.seq, o.id, o.key, o.sender, o.type, o.time_ms, o.content_type, o.data, o.subject, o.correlation_id, o.causation_id, o.headers
FROM ${t} o JOIN (
  SELECT seq, sum(octet_length(data)) OVER (ORDER BY seq) - octet_length(data) AS before
  FROM ${t} WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY seq LIMIT $1
) p ON p.seq = o.seq
WHERE p.before < $2 ORDER BY o.seq`;
    this.sentSql =
      retentionMs === 0
        ? `DELETE FROM ${t} WHERE seq = ANY($1::bigint[])`
        : `UPDATE ${t} SET sent_at = now() WHERE seq = ANY($1::bigint[])`;
    this.refusedSql = `UPDATE ${t} SET attempts = attempts + 1, last_error = $2,
  failed_at = CASE WHEN $3::integer > 0 AND attempts + 1 >= $3::integer THEN now() END
WHERE seq = $1::bigint RETURNING failed_at IS NOT NULL AS parked`;
    this.parkSql = `UPDATE ${t} SET failed_at = now(), last_error = $2 WHERE seq = $1::bigint`;
    this.purgeSql = `DELETE FROM ${t} WHERE seq IN (
  SELECT seq FROM ${t} WHERE sent_at < now() - $1::bigint * interval '1 millisecond' ORDER BY sent_at LIMIT $2)`;
  }

  /** Takes the lease unless another session holds it; true when this session holds it now. */
  async tryLease(db: Queryable): Promise<boolean> {
    const { rows } = await db.query(`SELECT pg_try_advisory_lock(${LEASE_CLASS}, hashtext($1)) AS got`, [this.names.outboxName]);
    return rows[0]?.got === true;
  }

  async listen(db: Queryable): Promise<void> {
    await db.query(`LISTEN "${this.names.channel}"`);
  }

  /** The oldest pending rows, in seq order: at most `limit`, and bodies within `maxBytes` (but at least one row). */
  async pending(db: Queryable, limit: number, maxBytes: number): Promise<OutboxRow[]> {
    const { rows } = await db.query(this.fetchSql, [limit, maxBytes]);
    return rows as OutboxRow[];
  }

  /** Marks confirmed rows sent, or deletes them when nothing is retained. */
  async sent(db: Queryable, seqs: readonly string[]): Promise<void> {
    if (seqs.length > 0) await db.query(this.sentSql, [seqs]);
  }

  /** Counts a refusal of one row; parks it once it reached `maxAttempts` (0 = never). True when parked. */
  async refused(db: Queryable, seq: string, reason: string, maxAttempts: number): Promise<boolean> {
    const { rows } = await db.query(this.refusedSql, [seq, clean(reason), maxAttempts]);
    return rows[0]?.parked === true;
  }

  /** Parks a row that can never be published (it breaks the contract's limits). */
  async park(db: Queryable, seq: string, reason: string): Promise<void> {
    await db.query(this.parkSql, [seq, clean(reason)]);
  }

  /** Deletes up to `limit` rows sent more than `retentionMs` ago; resolves with how many. */
  async purge(db: Queryable, retentionMs: number, limit: number): Promise<number> {
    const r = await db.query(this.purgeSql, [retentionMs, limit]);
    return r.rowCount ?? 0;
  }
}

/** A reason as text PostgreSQL takes: no NUL, at most 1000 characters. */
function clean(reason: string): string {
  const text = reason.replaceAll('\u0000', '').toWellFormed();
  return text.length > 1000 ? `${text.slice(0, 999)}…` : text;
}
