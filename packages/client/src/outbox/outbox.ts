import {
  checkText,
  createEvent,
  DEFAULT_MAX_EVENT_BYTES,
  ErrorCodes,
  type HeraldEvent,
  LIMITS,
  uuidv7,
  ValidationError,
} from '@herald/core';
import { loadOpenTelemetry, openTelemetryLoaded, withActiveTraceContext } from '../trace-context.ts';
import { type OutboxTableOptions, type TableNames, tableNames } from './schema.ts';
import type { Queryable } from './types.ts';

/** One event to add to the outbox: what a publish carries, plus the aggregate it belongs to. */
export interface OutboxEvent {
  /** The sender (DESIGN.md §1). Required. */
  sender: string;
  /** The event type, e.g. `order.placed`. Required. */
  type: string;
  /** The data: a Buffer is sent as is, a string as UTF-8 text, anything else as JSON. Default null. */
  payload?: unknown;
  /**
   * The aggregate the event is about (an order id): the relay publishes the events of one key in
   * the order they were added. At most 255 bytes of UTF-8 without NUL. Default: none (no order
   * promised against other events).
   */
  key?: string | undefined;
  /** The event id, a UUID. Default: a new UUIDv7, made now, so ids sort in the order of `add`. */
  id?: string | undefined;
  subject?: string | undefined;
  correlationId?: string | undefined;
  causationId?: string | undefined;
  /** A Date or epoch milliseconds. Default: now (the time of `add`, not of publishing). */
  time?: Date | number | undefined;
  /** Default `application/json` (`application/octet-stream` for a Buffer, `text/plain` for a string). */
  contentType?: string | undefined;
  /** Extra headers, carried as they are. */
  headers?: Record<string, string> | undefined;
}

export interface OutboxOptions extends OutboxTableOptions {
  /** Largest event body in bytes; larger events are refused with EVENT_TOO_LARGE. Default 1 MiB (the hub's default). */
  maxEventBytes?: number;
  /**
   * Take a transaction-scoped advisory lock on the key in `add`, so that two transactions adding
   * events of one key commit one after the other, in the order of their rows: then the relay can
   * never see a key's later row before its earlier one. A transaction adding events of several
   * keys in different orders than another may then deadlock (PostgreSQL aborts one of them, as for
   * row locks). Turn it off when the service locks its aggregate row anyway. Default true.
   */
  serializeKeys?: boolean;
}

/** Adds events to the outbox table inside the caller's transaction. */
export interface Outbox {
  /**
   * Validates `event` as the SDK's publisher does (names, envelope, limits) and writes one row
   * with the caller's connection, inside its transaction (`client` is a pg.PoolClient or pg.Client
   * after BEGIN). Issues a NOTIFY, delivered at commit, that wakes the relay. Resolves with the
   * event id; the row is published only if the transaction commits. Adding an id that is in the
   * outbox already adds nothing (the first one wins, as in the log).
   *
   * Failure: a ValidationError (INVALID_SENDER, INVALID_TYPE, INVALID_EVENT, EVENT_TOO_LARGE,
   * naming the field in `details.parameter`) before any SQL runs, so the caller's transaction is
   * untouched and can go on; a database error as `pg` raises it (the transaction is then aborted).
   */
  add(client: Queryable, event: OutboxEvent): Promise<string>;
}

/** Two-key advisory locks of the outbox: the class of its key locks (the relay's lease has its own). */
export const KEY_LOCK_CLASS = 0x68726b79; // "hrky"

function insertSql(names: TableNames, serializeKeys: boolean): string {
  // The lock is taken before the row gets its seq (the INSERT forms the row from this subquery),
  // and the NOTIFY is sent at commit only. Several NOTIFYs of one transaction arrive as one.
  const lock = serializeKeys
    ? `CASE WHEN $2::text IS NULL THEN '' ELSE pg_advisory_xact_lock(${KEY_LOCK_CLASS}, hashtext($13 || $2::text))::text END`
    : `''`;
  return `INSERT INTO ${names.outbox} (id, key, sender, type, time_ms, content_type, data, subject, correlation_id, causation_id, headers)
SELECT $1::uuid, $2::text, $3, $4, $5::bigint, $6, $7::bytea, $8, $9, $10, $11::jsonb
FROM (SELECT pg_notify($12, '') AS notified, ${lock} AS locked) AS signal
ON CONFLICT (id) DO NOTHING`;
}

/**
 * The headers a row keeps: the event's own, and the fields that travel as AMQP headers of their own
 * name (the W3C trace context), so that the relay's createEvent reads them back as they were.
 */
function storedHeaders(e: HeraldEvent): Record<string, string> {
  const headers: Record<string, string> = { ...e.headers };
  for (const name of HEADER_FIELDS) {
    const v = (e as unknown as Record<string, unknown>)[name];
    if (typeof v === 'string') headers[name] = v;
  }
  return headers;
}

/** Event fields carried as AMQP headers named like them. */
const HEADER_FIELDS = ['traceparent', 'tracestate'] as const;

function bad(field: string, message: string, value: unknown): never {
  throw new ValidationError(ErrorCodes.INVALID_CONFIG, `invalid option ${field}: ${message} (got ${JSON.stringify(value)})`, {
    details: { field },
  });
}

const OUTBOX_FIELDS = ['schema', 'outboxTable', 'inboxTable', 'maxEventBytes', 'serializeKeys'];

/** Checks the options of createOutbox, throwing a ValidationError (INVALID_CONFIG) naming the bad one. */
function normalize(options: OutboxOptions): { names: TableNames; maxBytes: number; serializeKeys: boolean } {
  if (typeof options !== 'object' || options === null) bad('options', 'expected an object', options);
  for (const k of Object.keys(options))
    if (!OUTBOX_FIELDS.includes(k)) bad(k, `unknown outbox option; known: ${OUTBOX_FIELDS.join(', ')}`, k);
  const maxBytes = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) bad('maxEventBytes', 'expected an integer from 1', maxBytes);
  const serializeKeys = options.serializeKeys ?? true;
  if (typeof serializeKeys !== 'boolean') bad('serializeKeys', 'expected true or false', serializeKeys);
  return { names: tableNames(options), maxBytes, serializeKeys };
}

/**
 * Creates the outbox of a service whose data lives in PostgreSQL: `add` writes events in the
 * service's own transactions, and a relay (createOutboxRelay, or `herald outbox-relay`) publishes
 * them to `herald.ingest`. Create the tables first with migrateOutbox. Throws a ValidationError
 * (INVALID_CONFIG) for bad options.
 */
export function createOutbox(options: OutboxOptions = {}): Outbox {
  const { names, maxBytes, serializeKeys } = normalize(options);
  const sql = insertSql(names, serializeKeys);
  return {
    async add(client, event) {
      if (typeof event !== 'object' || event === null)
        throw new ValidationError(ErrorCodes.INVALID_EVENT, 'invalid outbox event: expected an object', {
          details: { parameter: 'event' },
        });
      const key = event.key;
      if (key !== undefined) checkText('key', key, LIMITS.shortStringBytes.value);
      // As the publisher does: the active OpenTelemetry context's trace context, taken at add, in the caller's context.
      if (!openTelemetryLoaded()) await loadOpenTelemetry();
      const e = createEvent(
        withActiveTraceContext({
          sender: event.sender,
          type: event.type,
          data: event.payload,
          // Made here, not by the relay: the id is fixed at commit, whatever is re-sent later.
          id: typeof event.id === 'string' ? event.id.toLowerCase() : (event.id ?? uuidv7()),
          time: event.time,
          contentType: event.contentType,
          subject: event.subject,
          correlationId: event.correlationId,
          causationId: event.causationId,
          headers: event.headers,
        }),
        { maxBytes },
      );
      const values: unknown[] = [
        e.id,
        key ?? null,
        e.sender,
        e.type,
        e.time,
        e.contentType,
        e.data,
        e.subject ?? null,
        e.correlationId ?? null,
        e.causationId ?? null,
        JSON.stringify(storedHeaders(e)),
        names.channel,
      ];
      // $13 only when the SQL uses it: PostgreSQL cannot type a parameter that appears nowhere.
      if (serializeKeys) values.push(`${names.outboxName}:`);
      await client.query(sql, values);
      return e.id;
    },
  };
}
