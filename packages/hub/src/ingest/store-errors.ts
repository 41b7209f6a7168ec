/**
 * What a failed store write says, so ingest can tell "the store is unavailable" (retry the batch,
 * acknowledge nothing) from "these events can never be stored" (find the bad ones, dead-letter
 * them, store the rest):
 * - `refused`: PostgreSQL answered that the data itself is wrong: SQLSTATE class 22 (data
 *   exception: a NUL in text or jsonb, a timestamp out of range, bad JSON), class 54 (program limit
 *   exceeded: a value too large for an index), class 23 other than 23505 (a NOT NULL or CHECK
 *   violation); or the driver could not encode a parameter (a TypeError or RangeError raised in
 *   process, e.g. JSON.stringify of a bigint). Both drivers carry the SQLSTATE as `code` (PGlite's
 *   errors are the same DatabaseError as `pg`'s), so both stores are classified alike.
 * - `unavailable`: everything else. Connection refused, reset or ended, timeouts, admin shutdown
 *   (57P01), connection exceptions (class 08), insufficient resources (class 53), a lost writer
 *   lease (a HeraldError CONFLICT from append), 23505 (the store handles duplicate ids itself, so a
 *   unique violation means a concurrent writer), and anything not known to be about the data.
 *
 * A TypeError may also come from a driver whose connection broke: a `refused` that isEncodingFailure
 * is only to be trusted once the store answers a ping.
 */
export type StoreFailure = 'unavailable' | 'refused';

const SQLSTATE = /^[0-9A-Z]{5}$/;
const UNIQUE_VIOLATION = '23505';

export function storeFailure(err: unknown): StoreFailure {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'string' && SQLSTATE.test(code)) {
    const cls = code.slice(0, 2);
    if (cls === '22' || cls === '54' || (cls === '23' && code !== UNIQUE_VIOLATION)) return 'refused';
    return 'unavailable';
  }
  return isEncodingFailure(err) ? 'refused' : 'unavailable';
}

/** A TypeError or RangeError raised in process while the parameters were encoded (no SQLSTATE). */
export function isEncodingFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'string' && SQLSTATE.test(code)) return false;
  return err instanceof TypeError || err instanceof RangeError;
}
