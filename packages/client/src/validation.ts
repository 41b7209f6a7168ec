import { createRequire } from 'node:module';
import { ErrorCodes, HeraldError, type HeraldEvent, isJsonContentType, ValidationError } from '@herald/core';

/** A JSON Schema (draft-07, as ajv 8 reads it): an object, or true/false. */
export type JsonSchema = Record<string, unknown> | boolean;

/**
 * A check of the payload before it is published: return a reason (one line) to refuse the event,
 * undefined to let it go. `data` is the payload as the hub will see it: the JSON value when the
 * content type is JSON, else the body's bytes (a Buffer).
 */
export type PublishValidator = (type: string, data: unknown) => string | undefined;

/** Checks one event before it is sent; throws a ValidationError (SCHEMA_VIOLATION). */
export type EventCheck = (event: HeraldEvent) => void;

interface AjvLike {
  compile(schema: unknown): ((data: unknown) => boolean) & { errors?: { instancePath?: string; message?: string }[] | null };
}

const require = createRequire(import.meta.url);

/** Loads ajv (an optional peer of @herald/client) on first use; ajv-formats too, when installed. */
function newAjv(): AjvLike {
  let Ajv: new (options: Record<string, unknown>) => AjvLike;
  try {
    const mod = require('ajv') as { Ajv?: typeof Ajv; default?: typeof Ajv };
    Ajv = (mod.Ajv ?? mod.default) as typeof Ajv;
  } catch (cause) {
    throw new ValidationError(
      ErrorCodes.INVALID_CONFIG,
      'invalid option schemas: validating against JSON Schemas needs the ajv package (npm install ajv@8; ajv-formats too for `format`)',
      { cause, details: { field: 'schemas' } },
    );
  }
  let addFormats: ((ajv: AjvLike) => void) | undefined;
  try {
    const mod: unknown = require('ajv-formats');
    const fn = typeof mod === 'function' ? mod : (mod as { default?: unknown }).default;
    addFormats = typeof fn === 'function' ? (fn as (ajv: AjvLike) => void) : undefined;
  } catch {
    addFormats = undefined;
  }
  // Without ajv-formats, `format` is not checked here (the hub checks it when the type validates).
  const ajv = new Ajv({
    strictSchema: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    logger: false,
    validateFormats: addFormats !== undefined,
  });
  addFormats?.(ajv);
  return ajv;
}

/** ajv's errors as one line, bounded. */
function errorsText(errors: { instancePath?: string; message?: string }[] | null | undefined): string {
  const text = (errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || '(root)'} ${e.message ?? 'is invalid'}`)
    .join('; ');
  return text.length > 900 ? `${text.slice(0, 900)}…` : text;
}

/**
 * Compiles `schemas` ({ [type]: JSON Schema }) with ajv into a PublishValidator; types without a
 * schema pass. Throws a ValidationError (INVALID_CONFIG) naming `schemas.<type>` when a schema does
 * not compile, or when ajv is not installed.
 */
export function schemaValidator(schemas: Readonly<Record<string, JsonSchema>>): PublishValidator {
  if (typeof schemas !== 'object' || schemas === null || Array.isArray(schemas))
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, 'invalid option schemas: expected { [type]: JSON Schema }', {
      details: { field: 'schemas' },
    });
  const ajv = newAjv();
  const checks = new Map<string, ReturnType<AjvLike['compile']>>();
  for (const [type, schema] of Object.entries(schemas)) {
    try {
      checks.set(type, ajv.compile(schema));
    } catch (cause) {
      throw new ValidationError(
        ErrorCodes.INVALID_CONFIG,
        `invalid option schemas.${type}: ${cause instanceof Error ? cause.message.slice(0, 500) : String(cause)}`,
        { cause, details: { field: `schemas.${type}` } },
      );
    }
  }
  return (type, data) => {
    const check = checks.get(type);
    if (check === undefined) return undefined;
    if (Buffer.isBuffer(data)) return 'its content type is not JSON';
    return check(data) ? undefined : errorsText(check.errors);
  };
}

/**
 * The check a publisher runs on each event before sending it, from its `schemas` and `validate`
 * options (both when both are given); undefined when neither is, so publishing costs nothing more.
 */
export function eventCheck(
  schemas: Readonly<Record<string, JsonSchema>> | undefined,
  validate: PublishValidator | undefined,
): EventCheck | undefined {
  const checks = [schemas === undefined ? undefined : schemaValidator(schemas), validate].filter((c) => c !== undefined);
  if (checks.length === 0) return undefined;
  return (event) => {
    let data: unknown = event.data;
    if (isJsonContentType(event.contentType)) {
      try {
        data = JSON.parse(event.data.toString('utf8'));
      } catch {
        data = event.data;
      }
    }
    for (const check of checks) {
      let why: string | undefined;
      try {
        why = check(event.type, data);
      } catch (err) {
        why = `the validator threw: ${err instanceof Error ? err.message : String(err)}`;
      }
      if (why !== undefined)
        throw new ValidationError(ErrorCodes.SCHEMA_VIOLATION, `event ${event.sender}:${event.type} does not match its schema: ${why}`, {
          details: { sender: event.sender, type: event.type, reason: why },
        });
    }
  };
}

/** Where and how to read the catalog. */
export interface CatalogSource {
  /** The hub's REST API. Default HERALD_HUB_URL, else http://127.0.0.1:8080. */
  url?: string | undefined;
  /** An API token (any user: the catalog shows the types its roles cover). Default HERALD_TOKEN, else none. */
  token?: string | undefined;
  /** Only the types of this sender (a publisher's own). Default: every sender's; a type two senders describe takes the first. */
  sender?: string | undefined;
  /** Only the types the hub validates at ingest. Default false: every type with a schema. */
  validatedOnly?: boolean | undefined;
  signal?: AbortSignal | undefined;
}

/** Where a catalog request goes and its headers: `url`, else HERALD_HUB_URL, else :8080; `token`, else HERALD_TOKEN. */
export function catalogRequest(source: Pick<CatalogSource, 'url' | 'token'>): { base: string; headers: Record<string, string> } {
  const base = (source.url ?? process.env.HERALD_HUB_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
  const token = source.token ?? process.env.HERALD_TOKEN;
  return { base, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } };
}

/**
 * Reads the hub's event catalog (`GET /api/v1/catalog`, every page) into `{ [type]: JSON Schema }`
 * for a publisher's `schemas` option: the latest schema of each type. Rejects with a HeraldError:
 * UNAVAILABLE when the hub cannot be reached, the problem's code (UNAUTHENTICATED, FORBIDDEN, …)
 * when it refuses.
 */
export async function loadCatalogSchemas(source: CatalogSource = {}): Promise<Record<string, JsonSchema>> {
  const { base, headers } = catalogRequest(source);
  // No prototype: a type may be named __proto__.
  const schemas: Record<string, JsonSchema> = Object.create(null);
  let after: string | null = null;
  // The catalog comes a page at a time; a hub answers at most a few thousand pages for any catalog.
  for (let pages = 0; pages < 10_000; pages++) {
    const query = after === null ? '' : `?after=${encodeURIComponent(after)}`;
    let res: Response;
    try {
      res = await fetch(`${base}/api/v1/catalog${query}`, { headers, signal: source.signal ?? null });
    } catch (cause) {
      throw new HeraldError(
        ErrorCodes.UNAVAILABLE,
        `cannot read the catalog from ${base}: ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause },
      );
    }
    const body = (await res.json().catch(() => undefined)) as
      | {
          items?: { sender: string; type: string; schema: unknown; validate: boolean }[];
          next?: string | null;
          code?: string;
          detail?: string;
        }
      | undefined;
    if (!res.ok || !Array.isArray(body?.items)) {
      const code = Object.values(ErrorCodes).find((c) => c === body?.code) ?? ErrorCodes.UNAVAILABLE;
      throw new HeraldError(code, `the hub refused GET /api/v1/catalog: ${res.status} ${body?.detail ?? res.statusText}`);
    }
    for (const t of body.items) {
      if (t.schema === null || t.schema === undefined) continue;
      if (source.sender !== undefined && t.sender !== source.sender) continue;
      if (source.validatedOnly === true && !t.validate) continue;
      if (!(t.type in schemas)) schemas[t.type] = t.schema as JsonSchema;
    }
    if (typeof body.next !== 'string') break;
    after = body.next;
  }
  return schemas;
}
