import { type ErrorCode, ErrorCodes, HeraldError } from '@herald/core';
import { type CatalogSource, catalogRequest, type JsonSchema } from './validation.ts';

/** One event type as a service describes it in the hub's catalog (docs/catalog.md, `PUT /api/v1/catalog/{sender}/{type}`). */
export interface CatalogEntry {
  readonly sender: string;
  readonly type: string;
  /** JSON Schema draft-07 of the data; a changed one becomes the next version. */
  readonly schema: JsonSchema;
  /** What the event means, at most 1,000 characters. Default none. */
  readonly description?: string | undefined;
  /** A payload that matches the schema. Default none. */
  readonly example?: unknown;
  /** The hub refuses (REST, gRPC) or dead-letters (AMQP) events of the type whose data does not match. Default false. */
  readonly validate?: boolean | undefined;
}

/** What the hub kept of an entry. */
export interface CatalogEntryVersion {
  readonly sender: string;
  readonly type: string;
  /** The schema's version: the latest one when the schema did not change. */
  readonly version: number;
}

/**
 * Puts event types in the hub's catalog, one `PUT /api/v1/catalog/{sender}/{type}` each, in order,
 * as `herald catalog put` does: a service describing what it publishes when it starts. The same
 * schema keeps its version, so doing it at every start changes nothing but the description,
 * example and `validate`. Two services putting the same new type at once: the hub answers one of
 * them 409, which is tried once more (it then finds the schema there).
 *
 * `url` and `token` as for loadCatalogSchemas (writing needs a publisher of the sender, or an
 * admin); `sender` and `validatedOnly` are not used. Rejects with a HeraldError: UNAVAILABLE when
 * the hub cannot be reached, else the problem's code (INVALID_REQUEST naming `schema` or another
 * field, UNAUTHENTICATED, FORBIDDEN, CONFLICT) with the sender and type in `details`; the entries
 * before that one are kept.
 */
export async function putCatalogEntries(
  entries: readonly CatalogEntry[],
  target: Pick<CatalogSource, 'url' | 'token' | 'signal'> = {},
): Promise<CatalogEntryVersion[]> {
  const { base, headers } = catalogRequest(target);
  const out: CatalogEntryVersion[] = [];
  for (const e of entries) {
    const path = `/api/v1/catalog/${encodeURIComponent(e.sender)}/${encodeURIComponent(e.type)}`;
    const body = JSON.stringify({ schema: e.schema, description: e.description, example: e.example, validate: e.validate ?? false });
    const put = async (): Promise<Response> => {
      try {
        return await fetch(`${base}${path}`, {
          method: 'PUT',
          headers: { ...headers, 'content-type': 'application/json' },
          body,
          signal: target.signal ?? null,
        });
      } catch (cause) {
        // fetch says only "fetch failed"; why (ECONNREFUSED, …) is its cause's.
        const inner = (cause as { cause?: { code?: unknown; message?: unknown } }).cause;
        const why = inner?.code ?? inner?.message ?? (cause instanceof Error ? cause.message : String(cause));
        throw new HeraldError(
          ErrorCodes.UNAVAILABLE,
          `cannot put ${e.sender}:${e.type} in the catalog at ${base} (${String(why)}): is the hub running?`,
          {
            cause,
            details: { sender: e.sender, type: e.type },
          },
        );
      }
    };
    let res = await put();
    if (res.status === 409) res = await put();
    const answer = (await res.json().catch(() => undefined)) as
      | { version?: number; code?: string; detail?: string; parameter?: string }
      | undefined;
    if (!res.ok || typeof answer?.version !== 'number') {
      const code: ErrorCode = Object.values(ErrorCodes).find((c) => c === answer?.code) ?? ErrorCodes.UNAVAILABLE;
      throw new HeraldError(
        code,
        `the hub refused ${e.sender}:${e.type} for its catalog: ${res.status} ${answer?.detail ?? res.statusText}`,
        {
          details: { sender: e.sender, type: e.type, ...(answer?.parameter === undefined ? {} : { parameter: answer.parameter }) },
        },
      );
    }
    out.push({ sender: e.sender, type: e.type, version: answer.version });
  }
  return out;
}
