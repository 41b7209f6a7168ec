import { CATALOG_LIMITS } from './schemas.ts';

interface Cached {
  readonly generation: number;
  readonly at: number;
  readonly text: Promise<string>;
}

/**
 * AsyncAPI documents as JSON text, one per set of roles that asked (callers with the same roles see
 * the same document), so that a flood of GET /api/v1/catalog/asyncapi.json does not read the whole
 * catalog and build the document for each request. A document is built again on the request after
 * changed() (a write through this hub, a flush of observations), or once it is
 * asyncApiMaxAgeMs old (changes through another hub), and never more often than asyncApiMinAgeMs;
 * requests while one is built share it. At most asyncApiCached documents are kept, the oldest
 * asked for going first.
 *
 * Failure: a build that rejects is not kept; the requests that shared it get its error.
 */
export class AsyncApiCache {
  private readonly docs = new Map<string, Cached>();
  private generation = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** The catalog or what was observed changed: documents are built again on their next request. */
  changed(): void {
    this.generation++;
  }

  /** The document of `key`, from `build` when the one kept is stale (or there is none). */
  get(key: string, build: () => Promise<string>): Promise<string> {
    const now = this.now();
    const hit = this.docs.get(key);
    if (hit !== undefined) {
      const age = now - hit.at;
      if (age < CATALOG_LIMITS.asyncApiMinAgeMs || (hit.generation === this.generation && age < CATALOG_LIMITS.asyncApiMaxAgeMs)) {
        // Asked again: it is the newest asked for now.
        this.docs.delete(key);
        this.docs.set(key, hit);
        return hit.text;
      }
    }
    const entry: Cached = { generation: this.generation, at: now, text: build() };
    entry.text.catch(() => {
      if (this.docs.get(key) === entry) this.docs.delete(key);
    });
    this.docs.delete(key);
    if (this.docs.size >= CATALOG_LIMITS.asyncApiCached) this.docs.delete(this.docs.keys().next().value as string);
    this.docs.set(key, entry);
    return entry.text;
  }
}
