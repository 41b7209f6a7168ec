import { assertSender, assertType, ErrorCodes, HeraldError } from '@herald/core';
import type { CatalogPage, CatalogSchemaVersion, CatalogStore, CatalogType } from '../store/index.ts';
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

/**
 * The event catalog (docs/catalog.md): what the routes and the CLI see. `changed` is called after
 * every write through this hub (the ingest validation re-reads the set at once).
 *
 * Failure: rejects with a ValidationError (400) for a bad sender, type, schema or example; CONFLICT
 * (409) for a version that is not above the latest, or taken meanwhile; NOT_FOUND (404) for a
 * delete of nothing; what the store rejects with otherwise.
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
    return { ...found, versions: await this.store.versions(sender, type) };
  }

  /**
   * Types with an entry or observations, by sender and type: a page of up to `limit` (default
   * CATALOG_LIMITS.pageTypes, at most maxPageTypes) after `after`, ending early once its schemas
   * and examples reach pageBytes. `next` is where the next page starts; undefined at the end.
   */
  list(page: { after?: { sender: string; type: string } | undefined; limit?: number | undefined } = {}): Promise<CatalogPage> {
    const limit = Math.min(Math.max(1, page.limit ?? CATALOG_LIMITS.pageTypes), CATALOG_LIMITS.maxPageTypes);
    return this.store.list({ limit, after: page.after, maxBytes: CATALOG_LIMITS.pageBytes });
  }

  /**
   * Every type (as many as fit asyncApiTypes and asyncApiBytes), for a document that needs them all:
   * `cut` when some were left out.
   */
  async all(filter: (t: CatalogType) => boolean): Promise<{ types: CatalogType[]; cut: boolean }> {
    const types: CatalogType[] = [];
    let bytes = 0;
    let after: { sender: string; type: string } | undefined;
    for (;;) {
      const page = await this.list({ after, limit: CATALOG_LIMITS.maxPageTypes });
      for (const t of page.types) {
        if (!filter(t)) continue;
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
