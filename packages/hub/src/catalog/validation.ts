import { ErrorCodes, type HeraldEvent, isJsonContentType, ValidationError } from '@herald/core';
import type { Logger } from 'pino';
import type { CatalogStore } from '../store/index.ts';
import { CATALOG_LIMITS, compileSchema, type PayloadCheck } from './schemas.ts';

/** A validated type's compiled schema, for one version. */
interface Compiled {
  readonly version: number;
  readonly check: PayloadCheck;
}

/**
 * Validation at ingest (docs/catalog.md): events of a type whose catalog entry says `validate` are
 * checked against the latest schema version, compiled once per version and kept here. The set is
 * read from the store every `pollMs` and at once by refresh() (the hub that took a PUT calls it),
 * so a change made through another hub takes effect within `pollMs`.
 *
 * Cost when no type validates: one size check per event. Otherwise: two map lookups, and for an
 * event of a validated type, parsing its data and running the validator.
 *
 * Failure: a refresh that fails (store down) keeps the set as it was and is logged; a stored
 * schema that no longer compiles (a newer ajv) is logged and that type goes unchecked.
 */
export class IngestValidation {
  /** sender → type → compiled latest schema. Replaced whole on refresh, never mutated. */
  private bySender = new Map<string, Map<string, Compiled>>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly store: CatalogStore,
    private readonly log: Logger,
    private readonly pollMs = 10_000,
  ) {}

  /** Reads the set once, then every pollMs. Resolves after the first read (a failed one is logged, not thrown). */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** How many types validate on this hub now. */
  get size(): number {
    let n = 0;
    for (const m of this.bySender.values()) n += m.size;
    return n;
  }

  /**
   * Throws a ValidationError (SCHEMA_VIOLATION) when the event is of a validated type and its data
   * does not conform: not JSON (by content type, or unparsable) or against the schema. The message
   * names the type, the version and ajv's errors (bounded).
   */
  check(event: HeraldEvent): void {
    if (this.bySender.size === 0) return;
    const compiled = this.bySender.get(event.sender)?.get(event.type);
    if (compiled === undefined) return;
    const what = `${event.sender}:${event.type} (schema version ${compiled.version})`;
    if (!isJsonContentType(event.contentType)) violation(what, `its content type is ${event.contentType.slice(0, 100)}, not JSON`);
    let data: unknown;
    try {
      data = JSON.parse(event.data.toString('utf8'));
    } catch (err) {
      violation(what, `its data is not JSON: ${err instanceof Error ? err.message.slice(0, 200) : String(err)}`);
    }
    const why = compiled.check(data);
    if (why !== undefined) violation(what, why);
  }

  /** Reads which types validate and compiles the versions not compiled yet. One at a time; a call during one runs once more after. */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.again = false;
        await this.load().catch((err: unknown) =>
          this.log.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'could not read the catalog; validation goes on as it was',
          ),
        );
      } while (this.again);
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async load(): Promise<void> {
    const next = new Map<string, Map<string, Compiled>>();
    const validated = await this.store.validated();
    // PUTs bound the set; PUTs at the same moment can pass the bound, this hub's memory does not.
    if (validated.length > CATALOG_LIMITS.maxValidated)
      this.log.warn(
        { validated: validated.length, compiled: CATALOG_LIMITS.maxValidated },
        'more types validate than the hub compiles: the last ones by name are not validated',
      );
    for (const t of validated.slice(0, CATALOG_LIMITS.maxValidated)) {
      let compiled = this.bySender.get(t.sender)?.get(t.type);
      if (compiled?.version !== t.version) {
        const schema = await this.store.schema(t.sender, t.type, t.version);
        if (schema === undefined) continue; // deleted meanwhile
        try {
          compiled = { version: t.version, check: compileSchema(schema) };
        } catch (err) {
          this.log.error(
            { sender: t.sender, type: t.type, version: t.version, err: err instanceof Error ? err.message : String(err) },
            'a schema of the catalog does not compile: events of the type are not validated',
          );
          continue;
        }
      }
      let types = next.get(t.sender);
      if (types === undefined) {
        types = new Map();
        next.set(t.sender, types);
      }
      types.set(t.type, compiled);
    }
    this.bySender = next;
  }
}

function violation(what: string, why: string): never {
  throw new ValidationError(ErrorCodes.SCHEMA_VIOLATION, `the data does not match the catalog's schema of ${what}: ${why}`);
}
