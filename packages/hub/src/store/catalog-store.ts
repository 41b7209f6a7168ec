import { ErrorCodes, HeraldError } from '@herald/core';
import type { SqlExecutor } from './driver.ts';

/** One version of an event type's JSON Schema. */
export interface CatalogSchemaVersion {
  /** 1, 2, …: increasing with each change of the schema. */
  readonly version: number;
  readonly schema: unknown;
  /** Epoch ms. */
  readonly createdAt: number;
}

/** What the catalog says of one event type (sender, type), as written by a PUT. */
export interface CatalogEntry {
  readonly sender: string;
  readonly type: string;
  readonly description: string | undefined;
  /** An example payload (it validates against the latest schema); undefined when none. */
  readonly example: unknown;
  /** Whether the hub checks events of the type against the latest schema at ingest. */
  readonly validate: boolean;
  /** Epoch ms of the last PUT. */
  readonly updatedAt: number;
  /** The newest version; undefined for a type only observed. */
  readonly latest: CatalogSchemaVersion | undefined;
  /** How many versions the type has. */
  readonly versionCount: number;
}

/** A producer of an event type seen in the traffic: the sender, with the RabbitMQ user that published (`''`: none given). */
export interface ObservedProducer {
  readonly sender: string;
  readonly type: string;
  readonly userId: string;
  /** Events counted (as flushed so far). */
  readonly events: number;
  /** Epoch ms. */
  readonly firstSeen: number;
  readonly lastSeen: number;
}

/** A consumer of an event type: a durable subscription or an exchange whose selector matched events of it. */
export interface ObservedConsumer {
  readonly sender: string;
  readonly type: string;
  readonly kind: 'subscription' | 'exchange';
  readonly name: string;
  /** Epoch ms. */
  readonly firstSeen: number;
  readonly lastSeen: number;
}

/** A type of the catalog: its entry (undefined when only observed), producers and consumers. */
export interface CatalogType {
  readonly sender: string;
  readonly type: string;
  readonly entry: CatalogEntry | undefined;
  readonly producers: ObservedProducer[];
  readonly consumers: ObservedConsumer[];
}

/** What a PUT writes: the entry's fields, and a new schema version when `newVersion` is set. */
export interface CatalogWrite {
  readonly sender: string;
  readonly type: string;
  readonly description: string | undefined;
  readonly example: unknown;
  readonly validate: boolean;
  readonly newVersion?: { readonly version: number; readonly schema: unknown } | undefined;
}

/** A page of list(): types after `after`, by sender then type. */
export interface CatalogListQuery {
  readonly limit: number;
  /** Only types after this one (exclusive). */
  readonly after?: { readonly sender: string; readonly type: string } | undefined;
  /**
   * Stop once the schemas and examples reach this many bytes: a type is returned when those before
   * it add up to less, so at least one comes back whenever one is left.
   */
  readonly maxBytes: number;
}

export interface CatalogPage {
  readonly types: CatalogType[];
  /** The last type returned when more may follow (pass it as `after`); undefined when this was the end. */
  readonly next: { readonly sender: string; readonly type: string } | undefined;
}

/** A type's name: sender and type. */
export interface CatalogKey {
  readonly sender: string;
  readonly type: string;
}

/** Producers and consumers read per type, the most recently seen first. */
export const OBSERVED_PER_TYPE = 100;

/** The latest schema version of a type that validates at ingest. */
export interface ValidatedType {
  readonly sender: string;
  readonly type: string;
  readonly version: number;
}

/**
 * The catalog's tables (migration 009): entries with their schema versions, and the producers and
 * consumers observed. Every method is one statement except list(), load() and get(), which read four.
 * Rejects when the database is unreachable; a write is all or nothing.
 */
export interface CatalogStore {
  /**
   * Writes an entry (replacing description, example and validate) and, with `newVersion`, adds that
   * version. Rejects with CONFLICT when that version exists already (another write took it).
   */
  put(write: CatalogWrite): Promise<void>;
  /** The entry with its latest version; undefined when there is no entry. */
  entry(sender: string, type: string): Promise<CatalogEntry | undefined>;
  /** The newest `limit` versions, oldest first. */
  versions(sender: string, type: string, limit: number): Promise<CatalogSchemaVersion[]>;
  /** One type, entry or observed; undefined when neither. */
  get(sender: string, type: string): Promise<CatalogType | undefined>;
  /** Types with an entry or observations, by sender then type: one page. */
  list(q: CatalogListQuery): Promise<CatalogPage>;
  /** The names of up to `limit` types (with an entry or observed) after `after`, by sender then type: no content read. */
  keys(q: { readonly limit: number; readonly after?: CatalogKey | undefined }): Promise<CatalogKey[]>;
  /** The types of `keys` (in their order; absent ones left out), cut as list() cuts at `maxBytes`. */
  load(keys: readonly CatalogKey[], maxBytes: number): Promise<CatalogType[]>;
  /** How many entries the catalog holds, and how many of them validate. */
  counts(): Promise<{ entries: number; validated: number }>;
  /** Deletes the entry, its versions and what was observed of the type; false when there was nothing. */
  delete(sender: string, type: string): Promise<boolean>;
  /** The types that validate at ingest, with their latest version, by sender then type. */
  validated(): Promise<ValidatedType[]>;
  /** One version's schema; undefined when absent. */
  schema(sender: string, type: string, version: number): Promise<unknown>;
  /**
   * Adds counts and widens first/last seen (one statement for the lot; one row per key). A type not
   * observed before is recorded only while fewer than `maxTypes` types are (the check is made once
   * per statement, so one batch can pass it by its size).
   */
  recordProducers(rows: readonly ObservedProducer[], maxTypes: number): Promise<void>;
  /** Consumers of types that have producers recorded (the others were refused by recordProducers). */
  recordConsumers(rows: readonly ObservedConsumer[]): Promise<void>;
  /** Deletes the producers and consumers last seen before `before` (epoch ms); how many rows went. */
  purgeObserved(before: number): Promise<number>;
}

interface EntryRow {
  sender: string;
  type: string;
  description: string | null;
  example: unknown;
  validate: boolean;
  updated_ms: number;
  version: number | null;
  schema: unknown;
  created_ms: number | null;
  versions: string | number;
}

interface ProducerRow {
  sender: string;
  type: string;
  user_id: string;
  events: string | number;
  first_ms: number;
  last_ms: number;
}

interface ConsumerRow {
  sender: string;
  type: string;
  kind: 'subscription' | 'exchange';
  name: string;
  first_ms: number;
  last_ms: number;
}

const ms = (column: string) => `(extract(epoch from ${column}) * 1000)::float8`;
/** A JSON text column read back. */
const json = (v: unknown): unknown => (typeof v === 'string' ? JSON.parse(v) : v);

/** The entries with their latest version, for the keys that `keys` (a CTE of sender, type) names. */
const ENTRY_SELECT = `SELECT e.sender, e.type, e.description, e.example, e.validate, ${ms('e.updated_at')} AS updated_ms,
    s.version, s.schema, ${ms('s.created_at')} AS created_ms,
    (SELECT count(*) FROM catalog_schemas c WHERE c.sender = e.sender AND c.type = e.type) AS versions
  FROM catalog_entries e
  LEFT JOIN LATERAL (SELECT version, schema, created_at FROM catalog_schemas v
    WHERE v.sender = e.sender AND v.type = e.type ORDER BY version DESC LIMIT 1) s ON TRUE`;
/** The observations of the types in $1, $2 (arrays of senders and types), OBSERVED_PER_TYPE each. */
const observedSelect = (table: string, columns: string, order: string) =>
  `SELECT ${columns}, ${ms('first_seen')} AS first_ms, ${ms('last_seen')} AS last_ms FROM (
     SELECT *, row_number() OVER (PARTITION BY sender, type ORDER BY last_seen DESC, ${order}) AS n FROM ${table}
     WHERE (sender, type) IN (SELECT * FROM unnest($1::text[], $2::text[]))) o
   WHERE n <= ${OBSERVED_PER_TYPE} ORDER BY sender, type, ${order}`;
const PRODUCER_SELECT = observedSelect('catalog_producers', 'sender, type, user_id, events::text AS events', 'user_id');
const CONSUMER_SELECT = observedSelect('catalog_consumers', 'sender, type, kind, name', 'kind, name');
/** Every type: with an entry, or observed. */
const ALL_KEYS = `SELECT sender, type FROM catalog_entries
  UNION SELECT sender, type FROM catalog_producers UNION SELECT sender, type FROM catalog_consumers`;

/**
 * After a CTE `k` of keys: those whose latest schema and example, with the ones before them,
 * stay under $4 bytes (always the first), by sender then type.
 */
const BYTES_CUT = `b AS (SELECT k.sender, k.type, COALESCE(octet_length(e.example), 0) + COALESCE((SELECT octet_length(v.schema) FROM catalog_schemas v
        WHERE v.sender = k.sender AND v.type = k.type ORDER BY v.version DESC LIMIT 1), 0) AS bytes
      FROM k LEFT JOIN catalog_entries e ON e.sender = k.sender AND e.type = k.type)
   SELECT sender, type FROM (SELECT sender, type, sum(bytes) OVER (ORDER BY sender, type) - bytes AS before FROM b) c
   WHERE before < $4::bigint ORDER BY sender, type`;

function toEntry(r: EntryRow): CatalogEntry {
  return {
    sender: r.sender,
    type: r.type,
    description: r.description ?? undefined,
    example: r.example === null ? undefined : json(r.example),
    validate: r.validate === true,
    updatedAt: Math.round(Number(r.updated_ms)),
    latest:
      r.version === null ? undefined : { version: Number(r.version), schema: json(r.schema), createdAt: Math.round(Number(r.created_ms)) },
    versionCount: Number(r.versions),
  };
}

const toProducer = (r: ProducerRow): ObservedProducer => ({
  sender: r.sender,
  type: r.type,
  userId: r.user_id,
  events: Number(r.events),
  firstSeen: Math.round(Number(r.first_ms)),
  lastSeen: Math.round(Number(r.last_ms)),
});

const toConsumer = (r: ConsumerRow): ObservedConsumer => ({
  sender: r.sender,
  type: r.type,
  kind: r.kind,
  name: r.name,
  firstSeen: Math.round(Number(r.first_ms)),
  lastSeen: Math.round(Number(r.last_ms)),
});

const keyOf = (sender: string, type: string) => `${sender}\u0000${type}`;

/** Entries, producers and consumers grouped into types, in the order of `keys`. */
function assemble(keys: { sender: string; type: string }[], entries: CatalogEntry[], prods: ObservedProducer[], cons: ObservedConsumer[]) {
  const types = new Map<
    string,
    { sender: string; type: string; entry: CatalogEntry | undefined; producers: ObservedProducer[]; consumers: ObservedConsumer[] }
  >();
  for (const k of keys)
    types.set(keyOf(k.sender, k.type), { sender: k.sender, type: k.type, entry: undefined, producers: [], consumers: [] });
  for (const e of entries) {
    const t = types.get(keyOf(e.sender, e.type));
    if (t) t.entry = e;
  }
  for (const p of prods) types.get(keyOf(p.sender, p.type))?.producers.push(p);
  for (const c of cons) types.get(keyOf(c.sender, c.type))?.consumers.push(c);
  return [...types.values()];
}

/** A unique violation (SQLSTATE 23505), from either driver. */
function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === '23505';
}

export function createCatalogStore(sql: SqlExecutor): CatalogStore {
  /** Reads the types that `keysSql` (selecting sender, type; parameters `params`) names. */
  async function typesOf(keysSql: string, params: unknown[]): Promise<CatalogType[]> {
    const keys = (await sql.query<{ sender: string; type: string }>(keysSql, params)).rows;
    if (keys.length === 0) return [];
    const senders = keys.map((k) => k.sender);
    const typeNames = keys.map((k) => k.type);
    const [entries, prods, cons] = await Promise.all([
      sql.query<EntryRow>(`${ENTRY_SELECT} WHERE (e.sender, e.type) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, [
        senders,
        typeNames,
      ]),
      sql.query<ProducerRow>(PRODUCER_SELECT, [senders, typeNames]),
      sql.query<ConsumerRow>(CONSUMER_SELECT, [senders, typeNames]),
    ]);
    return assemble(keys, entries.rows.map(toEntry), prods.rows.map(toProducer), cons.rows.map(toConsumer));
  }

  return {
    async put(w) {
      try {
        await sql.query(
          `WITH e AS (
             INSERT INTO catalog_entries (sender, type, description, example, validate, updated_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (sender, type) DO UPDATE
               SET description = EXCLUDED.description, example = EXCLUDED.example, validate = EXCLUDED.validate, updated_at = now()
             RETURNING sender, type)
           INSERT INTO catalog_schemas (sender, type, version, schema)
           SELECT sender, type, $6::integer, $7::text FROM e WHERE $6::integer IS NOT NULL`,
          [
            w.sender,
            w.type,
            w.description ?? null,
            w.example === undefined ? null : JSON.stringify(w.example),
            w.validate,
            w.newVersion?.version ?? null,
            w.newVersion === undefined ? null : JSON.stringify(w.newVersion.schema),
          ],
        );
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        throw new HeraldError(
          ErrorCodes.CONFLICT,
          `version ${w.newVersion?.version} of ${w.sender}:${w.type} exists already (written meanwhile)`,
          {
            cause: err,
          },
        );
      }
    },
    async entry(sender, type) {
      const r = await sql.query<EntryRow>(`${ENTRY_SELECT} WHERE e.sender = $1 AND e.type = $2`, [sender, type]);
      return r.rows[0] ? toEntry(r.rows[0]) : undefined;
    },
    async versions(sender, type, limit) {
      const r = await sql.query<{ version: number; schema: unknown; created_ms: number }>(
        `SELECT * FROM (SELECT version, schema, ${ms('created_at')} AS created_ms FROM catalog_schemas
           WHERE sender = $1 AND type = $2 ORDER BY version DESC LIMIT $3) v ORDER BY version`,
        [sender, type, limit],
      );
      return r.rows.map((v) => ({ version: Number(v.version), schema: json(v.schema), createdAt: Math.round(Number(v.created_ms)) }));
    },
    async get(sender, type) {
      const found = await typesOf(
        `SELECT sender, type FROM catalog_entries WHERE sender = $1 AND type = $2
         UNION SELECT sender, type FROM catalog_producers WHERE sender = $1 AND type = $2
         UNION SELECT sender, type FROM catalog_consumers WHERE sender = $1 AND type = $2`,
        [sender, type],
      );
      return found[0];
    },
    async list(q) {
      const types = await typesOf(
        `WITH k AS (SELECT sender, type FROM (${ALL_KEYS}) u
                    WHERE $2::text IS NULL OR (sender, type) > ($2::text, $3::text) ORDER BY sender, type LIMIT $1), ${BYTES_CUT}`,
        [q.limit, q.after?.sender ?? null, q.after?.type ?? null, q.maxBytes],
      );
      const last = types[types.length - 1];
      if (last === undefined) return { types, next: undefined };
      const after = await sql.query(`SELECT 1 FROM (${ALL_KEYS}) u WHERE (sender, type) > ($1::text, $2::text) LIMIT 1`, [
        last.sender,
        last.type,
      ]);
      return { types, next: after.rows.length > 0 ? { sender: last.sender, type: last.type } : undefined };
    },
    async keys(q) {
      const r = await sql.query<{ sender: string; type: string }>(
        `SELECT sender, type FROM (${ALL_KEYS}) u WHERE $2::text IS NULL OR (sender, type) > ($2::text, $3::text)
         ORDER BY sender, type LIMIT $1`,
        [q.limit, q.after?.sender ?? null, q.after?.type ?? null],
      );
      return r.rows.map((k) => ({ sender: k.sender, type: k.type }));
    },
    async load(keys, maxBytes) {
      if (keys.length === 0) return [];
      // Only the keys that still exist; the cut's bound is $3 here.
      return typesOf(
        `WITH k AS (SELECT x.sender, x.type FROM unnest($1::text[], $2::text[]) AS x(sender, type)
                    WHERE (x.sender, x.type) IN (${ALL_KEYS})), ${BYTES_CUT.replaceAll('$4', '$3')}`,
        [keys.map((k) => k.sender), keys.map((k) => k.type), maxBytes],
      );
    },
    async counts() {
      const r = await sql.query<{ entries: string | number; validated: string | number }>(
        'SELECT count(*) AS entries, count(*) FILTER (WHERE validate) AS validated FROM catalog_entries',
      );
      return { entries: Number(r.rows[0]?.entries ?? 0), validated: Number(r.rows[0]?.validated ?? 0) };
    },
    async purgeObserved(before) {
      const r = await sql.query<{ n: string | number }>(
        `WITH p AS (DELETE FROM catalog_producers WHERE last_seen < to_timestamp($1 / 1000.0) RETURNING 1),
              c AS (DELETE FROM catalog_consumers WHERE last_seen < to_timestamp($1 / 1000.0) RETURNING 1)
         SELECT (SELECT count(*) FROM p) + (SELECT count(*) FROM c) AS n`,
        [before],
      );
      return Number(r.rows[0]?.n ?? 0);
    },
    async delete(sender, type) {
      const r = await sql.query<{ n: string | number }>(
        `WITH e AS (DELETE FROM catalog_entries WHERE sender = $1 AND type = $2 RETURNING 1),
              p AS (DELETE FROM catalog_producers WHERE sender = $1 AND type = $2 RETURNING 1),
              c AS (DELETE FROM catalog_consumers WHERE sender = $1 AND type = $2 RETURNING 1)
         SELECT (SELECT count(*) FROM e) + (SELECT count(*) FROM p) + (SELECT count(*) FROM c) AS n`,
        [sender, type],
      );
      return Number(r.rows[0]?.n ?? 0) > 0;
    },
    async validated() {
      const r = await sql.query<{ sender: string; type: string; version: number }>(
        `SELECT e.sender, e.type, max(v.version) AS version FROM catalog_entries e
         JOIN catalog_schemas v ON v.sender = e.sender AND v.type = e.type
         WHERE e.validate GROUP BY e.sender, e.type ORDER BY e.sender, e.type`,
      );
      return r.rows.map((v) => ({ sender: v.sender, type: v.type, version: Number(v.version) }));
    },
    async schema(sender, type, version) {
      const r = await sql.query<{ schema: unknown }>(
        'SELECT schema FROM catalog_schemas WHERE sender = $1 AND type = $2 AND version = $3',
        [sender, type, version],
      );
      return r.rows[0] ? json(r.rows[0].schema) : undefined;
    },
    async recordProducers(rows, maxTypes) {
      if (rows.length === 0) return;
      await sql.query(
        `INSERT INTO catalog_producers (sender, type, user_id, events, first_seen, last_seen)
         SELECT s, t, u, n, to_timestamp(f / 1000.0), to_timestamp(l / 1000.0)
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::float8[], $6::float8[]) AS x(s, t, u, n, f, l)
         WHERE EXISTS (SELECT 1 FROM catalog_producers p WHERE p.sender = x.s AND p.type = x.t)
            OR (SELECT count(*) FROM (SELECT DISTINCT sender, type FROM catalog_producers) d) < $7::bigint
         ON CONFLICT (sender, type, user_id) DO UPDATE SET events = catalog_producers.events + EXCLUDED.events,
           first_seen = LEAST(catalog_producers.first_seen, EXCLUDED.first_seen),
           last_seen = GREATEST(catalog_producers.last_seen, EXCLUDED.last_seen)`,
        [
          rows.map((r) => r.sender),
          rows.map((r) => r.type),
          rows.map((r) => r.userId),
          rows.map((r) => String(r.events)),
          rows.map((r) => r.firstSeen),
          rows.map((r) => r.lastSeen),
          maxTypes,
        ],
      );
    },
    async recordConsumers(rows) {
      if (rows.length === 0) return;
      await sql.query(
        `INSERT INTO catalog_consumers (sender, type, kind, name, first_seen, last_seen)
         SELECT s, t, k, n, to_timestamp(f / 1000.0), to_timestamp(l / 1000.0)
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[]) AS x(s, t, k, n, f, l)
         WHERE EXISTS (SELECT 1 FROM catalog_producers p WHERE p.sender = x.s AND p.type = x.t)
         ON CONFLICT (sender, type, kind, name) DO UPDATE SET first_seen = LEAST(catalog_consumers.first_seen, EXCLUDED.first_seen),
           last_seen = GREATEST(catalog_consumers.last_seen, EXCLUDED.last_seen)`,
        [
          rows.map((r) => r.sender),
          rows.map((r) => r.type),
          rows.map((r) => r.kind),
          rows.map((r) => r.name),
          rows.map((r) => r.firstSeen),
          rows.map((r) => r.lastSeen),
        ],
      );
    },
  };
}
