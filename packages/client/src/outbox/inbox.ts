import { checkText, ErrorCodes, HeraldError, isUuid, LIMITS, preview, ValidationError } from '@herald/core';
import type pg from 'pg';
import { type OutboxTableOptions, tableNames } from './schema.ts';
import type { Queryable } from './types.ts';

export interface InboxOptions extends Pick<OutboxTableOptions, 'schema' | 'inboxTable'> {
  /**
   * Who handles the events: one name per read model or handler, so that two consumers of one
   * event each handle it once. At most 255 bytes of UTF-8 without NUL. Required.
   */
  consumer: string;
}

/**
 * Effectively-once handling on the service's own PostgreSQL: the record "this consumer handled
 * this event id" is written in the same transaction as the handler's writes.
 */
export interface Inbox {
  /**
   * Takes a connection from `pool`, opens a transaction, records (consumer, event id) and runs
   * `handler` with that connection, then commits: resolves true. When the record exists already
   * (a redelivery, a replay, a duplicate), nothing runs and it resolves false. Two deliveries of
   * one event at once: the second waits for the first's transaction and then skips (or runs, if
   * the first rolled back).
   *
   * Failure: a handler that throws rolls the whole transaction back (the record with it, so a
   * retry runs the handler again) and handle() rejects with that error; an event without a UUID
   * id rejects with INVALID_EVENT before anything runs; database errors reject as `pg` raises
   * them. With the SDK's subscriber: throwing there retries the delivery, and a redelivery of an
   * event handled already resolves false, which acknowledges it.
   */
  handle(pool: pg.Pool, event: { readonly id: string }, handler: (client: pg.PoolClient) => Promise<void> | void): Promise<boolean>;
  /** Deletes this consumer's records older than `olderThanMs`; resolves with how many. Events redelivered after that run again. */
  purge(db: Queryable, olderThanMs: number): Promise<number>;
}

/**
 * Creates the inbox of one consumer. The table comes from migrateOutbox. Throws a ValidationError
 * (INVALID_CONFIG) for bad options.
 */
export function createInbox(options: InboxOptions): Inbox {
  if (typeof options !== 'object' || options === null)
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid inbox options: expected an object with a consumer');
  const consumer = checkText('consumer', options.consumer, LIMITS.shortStringBytes.value, ErrorCodes.INVALID_CONFIG);
  if (consumer === '')
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid consumer: must not be empty', { details: { field: 'consumer' } });
  const names = tableNames({ schema: options.schema, inboxTable: options.inboxTable });
  const record = `INSERT INTO ${names.inbox} (consumer, event_id) VALUES ($1, $2::uuid) ON CONFLICT DO NOTHING`;
  const purge = `DELETE FROM ${names.inbox} WHERE consumer = $1 AND handled_at < now() - $2::bigint * interval '1 millisecond'`;
  return {
    async handle(pool, event, handler) {
      const id = (event as { id?: unknown } | null)?.id;
      if (!isUuid(id))
        throw new ValidationError(ErrorCodes.INVALID_EVENT, `invalid event id ${preview(id)}: expected a UUID`, {
          details: { parameter: 'id' },
        });
      if (typeof pool?.connect !== 'function')
        throw new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid pool: expected a pg.Pool (something with connect())');
      const client = await pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const r = await client.query(record, [consumer, id]);
        if (r.rowCount === 0) {
          await client.query('ROLLBACK');
          return false;
        }
        await handler(client);
        await client.query('COMMIT');
        return true;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw err;
      } finally {
        // A connection whose ROLLBACK failed is in an unknown state: it must not go back to the pool.
        client.release(broken);
      }
    },
    async purge(db, olderThanMs) {
      if (!Number.isSafeInteger(olderThanMs) || olderThanMs < 0)
        throw new HeraldError(ErrorCodes.INVALID_REQUEST, `invalid olderThanMs ${preview(olderThanMs)}: expected milliseconds ≥ 0`);
      const r = await db.query(purge, [consumer, olderThanMs]);
      return r.rowCount ?? 0;
    },
  };
}
