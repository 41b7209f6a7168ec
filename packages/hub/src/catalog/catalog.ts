import { assertSender, assertType, ErrorCodes, HeraldError } from '@herald/core';
import type { CatalogKey, CatalogPage, CatalogSchemaVersion, CatalogStore, CatalogType } from '../store/index.ts';
import { CATALOG_LIMITS, canonicalJson, checkExample, compileSchema } from './schemas.ts';

/** The body of `PUT /api/v1/catalog/{sender}/{type}`. */
export interface CatalogPut {
  readonly schema: unknown;
  /** The new version's number (above the latest); default the latest + 1. Must equal the latest when the schema did not change. */
  readonly version?: number | undefined;
  readonly description?: string | undefined;
  readonly example?: unknown;
  /** Default false. */
  readonly validate?: boolean | undefined;
}

/** A type of the catalog with every version of its schema. */
export interface CatalogTypeWithVersions extends CatalogType {
  readonly versions: CatalogSchemaVersion[];
}

/** Which types a caller may see; every type by default. */
export type CatalogVisible = (key: CatalogKey) => boolean;

const everything: CatalogVisible = () => true;

/** LIMIT_EXCEEDED (429) for one of the catalog's bounds, naming it. */
function limitExceeded(limit: keyof typeof CATALOG_LIMITS, message: string): HeraldError {
  return new HeraldError(ErrorCodes.LIMIT_EXCEEDED, message, { details: { limit, max: CATALOG_LIMITS[limit] } });
}

/**
 * The event catalog (docs/catalog.md): what the routes and the CLI see. `changed` is called after
 * every write through this hub (the ingest validation re-reads the set at once).
 *
 * Failure: rejects with a ValidationError (400) for a bad sender, type, schema or example; CONFLICT
 * (409) for a version that is not above the latest, or taken meanwhile; LIMIT_EXCEEDED (429) past
 * maxVersions, maxEntries or maxValidated (checked before the write: PUTs at the same moment can
 * pass a bound by their number); NOT_FOUND (404) for a delete of nothing; what the store rejects
 * with otherwise.
 */
export class Catalog {
  constructor(
    private readonly store: CatalogStore,
    private readonly changed: () => Promise<void> | void = () => undefined,
  ) {}

  /** Writes an entry; a new schema version when the schema changed. `created` when the type had no entry. */
  async put(sender: string, type: string, body: CatalogPut): Promise<{ type: CatalogTypeWithVersions; created: boolean; version: number }> {
    assertSender(sender);
    assertType(type, sender);
    const check = compileSchema(body.schema);
    if (body.example !== undefined) checkExample(check, body.example);
    if (body.description !== undefined && body.description.length > CATALOG_LIMITS.descriptionChars)
      throw new HeraldError(ErrorCodes.INVALID_REQUEST, `description is longer than ${CATALOG_LIMITS.descriptionChars} characters`, {
        details: { parameter: 'description' },
      });
    const entry = await this.store.entry(sender, type);
    const latest = entry?.latest;
    await this.withinBounds(sender, type, entry === undefined, body.validate === true && entry?.validate !== true);
    let newVersion: { version: number; schema: unknown } | undefined;
    let version: number;
    if (latest !== undefined && canonicalJson(latest.schema) === canonicalJson(body.schema)) {
      if (body.version !== undefined && body.version !== latest.version)
        throw new HeraldError(ErrorCodes.CONFLICT, `the schema is unchanged: it is version ${latest.version}, not ${body.version}`, {
          details: { parameter: 'version', latest: latest.version },
        });
      version = latest.version;
    } else {
      version = body.version ?? (latest?.version ?? 0) + 1;
      if (latest !== undefined && version <= latest.version)
        throw new HeraldError(ErrorCodes.CONFLICT, `a changed schema needs a version above ${latest.version}, not ${version}`, {
          details: { parameter: 'version', latest: latest.version },
        });
      if ((entry?.versionCount ?? 0) >= CATALOG_LIMITS.maxVersions)
        throw limitExceeded(
          'maxVersions',
          `${sender}:${type} has ${CATALOG_LIMITS.maxVersions} schema versions, the most a type keeps: delete the type (DELETE /api/v1/catalog/${sender}/${type}) to start over`,
        );
      newVersion = { version, schema: body.schema };
    }
    await this.store.put({
      sender,
      type,
      description: body.description,
      example: body.example,
      validate: body.validate ?? false,
      newVersion,
    });
    await this.changed();
    return { type: await this.get(sender, type), created: entry === undefined, version };
  }

  /** One type with its versions; NOT_FOUND when it has neither an entry nor observations. */
  async get(sender: string, type: string): Promise<CatalogTypeWithVersions> {
    assertSender(sender);
    assertType(type, sender);
    const found = await this.store.get(sender, type);
    if (found === undefined) throw new HeraldError(ErrorCodes.NOT_FOUND, `${sender}:${type} is not in the catalog`);
    return { ...found, versions: await this.store.versions(sender, type, CATALOG_LIMITS.maxVersions) };
  }

  /** LIMIT_EXCEEDED when a PUT would make the catalog hold more entries, or validate more types, than it may. */
  private async withinBounds(sender: string, type: string, newEntry: boolean, newlyValidated: boolean): Promise<void> {
    if (!newEntry && !newlyValidated) return;
    const counts = await this.store.counts();
    if (newEntry && counts.entries >= CATALOG_LIMITS.maxEntries)
      throw limitExceeded(
        'maxEntries',
        `the catalog holds ${CATALOG_LIMITS.maxEntries} entries, the most it takes: delete one before adding ${sender}:${type}`,
      );
    if (newlyValidated && counts.validated >= CATALOG_LIMITS.maxValidated)
      throw limitExceeded(
        'maxValidated',
        `${CATALOG_LIMITS.maxValidated} types validate at ingest, the most the hub compiles: turn validate off for one before turning it on for ${sender}:${type}`,
      );
  }

  /**
   * Types with an entry or observations that `visible` lets the caller see, by sender and type: a
   * page of up to `limit` (default CATALOG_LIMITS.pageTypes, at most maxPageTypes) after `after`,
   * ending early once its schemas and examples reach pageBytes. `next` is where the next page
   * starts, the last type of this one (so it never names a type the caller may not see);
   * undefined at the end. Names are read in batches until the page is full or the catalog ends,
   * at most listScanTypes of them; content is read only for the types returned.
   */
  async list(
    page: { after?: CatalogKey | undefined; limit?: number | undefined } = {},
    visible: CatalogVisible = everything,
  ): Promise<CatalogPage> {
    const limit = Math.min(Math.max(1, page.limit ?? CATALOG_LIMITS.pageTypes), CATALOG_LIMITS.maxPageTypes);
    const keys: CatalogKey[] = [];
    let after = page.after;
    let scanned = 0;
    let more = false;
    // The first batch is enough when every type is visible; later ones are as large as a page may be.
    let batch = limit + 1;
    for (;;) {
      const names = await this.store.keys({ after, limit: batch });
      for (const k of names) {
        if (!visible(k)) continue;
        if (keys.length === limit) {
          more = true;
          break;
        }
        keys.push(k);
      }
      scanned += names.length;
      if (more || names.length < batch) break;
      if (scanned >= CATALOG_LIMITS.listScanTypes) {
        // Unreachable under the caps; the caller goes on from its last visible type, if any.
        more = keys.length > 0;
        break;
      }
      after = names[names.length - 1];
      batch = CATALOG_LIMITS.maxPageTypes;
    }
    const types = await this.store.load(keys, CATALOG_LIMITS.pageBytes);
    const last = types[types.length - 1];
    const cut = types.length < keys.length;
    return { types, next: last !== undefined && (more || cut) ? { sender: last.sender, type: last.type } : undefined };
  }

  /**
   * Every type `visible` lets the caller see (as many as fit asyncApiTypes and asyncApiBytes), for
   * a document that needs them all: `cut` when some were left out.
   */
  async all(visible: CatalogVisible = everything): Promise<{ types: CatalogType[]; cut: boolean }> {
    const types: CatalogType[] = [];
    let bytes = 0;
    let after: CatalogKey | undefined;
    for (;;) {
      const page = await this.list({ after, limit: CATALOG_LIMITS.maxPageTypes }, visible);
      for (const t of page.types) {
        bytes +=
          Buffer.byteLength(JSON.stringify(t.entry?.latest?.schema ?? null)) + Buffer.byteLength(JSON.stringify(t.entry?.example ?? null));
        if (types.length >= CATALOG_LIMITS.asyncApiTypes || bytes > CATALOG_LIMITS.asyncApiBytes) return { types, cut: true };
        types.push(t);
      }
      if (page.next === undefined) return { types, cut: false };
      after = page.next;
    }
  }

  /** Deletes the entry, its versions and its observations; NOT_FOUND when there was nothing. */
  async delete(sender: string, type: string): Promise<void> {
    assertSender(sender);
    assertType(type, sender);
    if (!(await this.store.delete(sender, type))) throw new HeraldError(ErrorCodes.NOT_FOUND, `${sender}:${type} is not in the catalog`);
    await this.changed();
  }
}
