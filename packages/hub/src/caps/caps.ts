import { ErrorCodes, HeraldError } from '@herald/core';

/** One cap of the hub: how many of a thing it holds at once, the setting that changes it, its default. */
export interface CapSpec {
  /** What is counted, as the refusal names it: `active pauses`. */
  readonly what: string;
  /** The environment variable (and, in kebab case, the `herald hub` flag) that sets it. */
  readonly setting: string;
  readonly default: number;
  /** What a refused client can do, for the refusal's message. */
  readonly hint: string;
}

/**
 * The hub's caps (DESIGN.md §3.7), each per hub process: past one, the next request is refused with
 * LIMIT_EXCEEDED (REST 429, gRPC RESOURCE_EXHAUSTED) naming the cap and its setting, and nothing
 * else changes; a slot freed lets the next one in. docs/reliability.md lists this table (a unit test
 * keeps the two in step); the hub's configuration takes its defaults from here.
 */
export const CAPS = {
  /** User pauses not yet ended (a replay's own pause is not counted). */
  pauses: {
    what: 'active pauses',
    setting: 'HERALD_MAX_PAUSES',
    default: 1000,
    hint: 'resume one (DELETE /api/v1/pauses/{id}) or wait for one to expire',
  },
  /** Durable subscriptions, sleeping ones included (each is a row and a cursor; a sleeping one costs little). */
  subscriptions: {
    what: 'subscriptions',
    setting: 'HERALD_MAX_SUBSCRIPTIONS',
    default: 10_000,
    hint: 'delete one first (DELETE /api/v1/subscriptions/{name})',
  },
  /** Replays pending or running, into the flow and into subscriptions together. */
  replays: {
    what: 'active replays',
    setting: 'HERALD_MAX_REPLAYS',
    default: 16,
    hint: 'retry once one has finished, or cancel one (DELETE /api/v1/replays/{id})',
  },
  /** Open `GET /api/v1/subscriptions/{name}/stream` responses, standbys included. */
  sseStreams: { what: 'concurrent SSE streams', setting: 'HERALD_MAX_SSE_STREAMS', default: 1000, hint: 'retry later' },
  /** Pulls that wait (`wait` above 0) open at once; a pull with `wait=0` is not counted. */
  longPolls: {
    what: 'concurrent long polls',
    setting: 'HERALD_MAX_LONG_POLLS',
    default: 1000,
    hint: 'retry later, or pull with wait=0',
  },
  /** Open gRPC Subscribe streams, standbys included. */
  grpcStreams: { what: 'concurrent gRPC Subscribe streams', setting: 'HERALD_MAX_GRPC_STREAMS', default: 1000, hint: 'retry later' },
} as const satisfies Record<string, CapSpec>;

export type CapName = keyof typeof CAPS;

/** A cap no setting changes: how many of a thing the hub keeps at most. */
export interface FixedCapSpec {
  /** What is counted. */
  readonly what: string;
  readonly max: number;
}

/**
 * The hub's fixed caps, counted in the store for every hub together (not per process): the
 * catalog's bounds (docs/catalog.md). The part that keeps each refuses past it with LIMIT_EXCEEDED
 * in its own words (the catalog: `details.limit` the CATALOG_LIMITS key, `details.max`), or, for
 * observed types, records no more. docs/reliability.md lists this table too (a unit test keeps the
 * two in step).
 */
export const FIXED_CAPS = {
  /** Schema versions one catalog type keeps (CATALOG_LIMITS.maxVersions). */
  catalogVersions: { what: 'schema versions per catalog type', max: 100 },
  /** Catalog entries, types with a PUT (CATALOG_LIMITS.maxEntries). */
  catalogEntries: { what: 'catalog entries', max: 10_000 },
  /** Catalog types that validate at ingest, each compiled into every hub's memory (CATALOG_LIMITS.maxValidated). */
  catalogValidated: { what: 'catalog types validated at ingest', max: 1000 },
  /** Types only observed that the catalog records (CATALOG_LIMITS.maxObservedTypes). */
  catalogObservedTypes: { what: 'catalog types observed', max: 100_000 },
} as const satisfies Record<string, FixedCapSpec>;

/** A budget of the direct publish path: a setting and its default, counted per hub process. */
export interface BudgetSpec {
  /** What is counted. */
  readonly what: string;
  /** The environment variable (and, in kebab case, the `herald hub` flag) that sets it. */
  readonly setting: string;
  readonly default: number;
}

/**
 * The budgets of the direct publish path (gRPC PublishStream), each per hub process. Unlike a cap,
 * reaching one refuses nothing for good: past the first two the hub reads no more of the streams
 * (HTTP/2 flow control holds their clients) until answers free room, streams taking it in the order
 * they asked; the events past the third are answered UNAVAILABLE (the SDK sends them again) until
 * the flow has the stored events out on `herald.events`. docs/reliability.md lists this table too
 * (a unit test keeps the two in step); the hub's configuration takes its defaults from here.
 */
export const BUDGETS = {
  /** Bytes of events read from every PublishStream and not answered yet (bodies, headers, 256 per event). */
  publishBytes: {
    what: 'bytes of PublishStream events waiting for their answers, all streams together',
    setting: 'HERALD_PUBLISH_MAX_BYTES',
    default: 256 * 1024 * 1024,
  },
  /** The same in events. */
  publishEvents: {
    what: 'PublishStream events waiting for their answers, all streams together',
    setting: 'HERALD_PUBLISH_MAX_EVENTS',
    default: 50_000,
  },
  /** Events the direct path stored whose run the flow has not out on herald.events yet (nor held by a pause). */
  publishUnforwarded: {
    what: 'events stored by the direct path and not yet out on herald.events',
    setting: 'HERALD_PUBLISH_MAX_UNFORWARDED',
    default: 100_000,
  },
} as const satisfies Record<string, BudgetSpec>;

export type BudgetName = keyof typeof BUDGETS;

/**
 * The refusal when a cap is reached: LIMIT_EXCEEDED, e.g. `too many active replays: this hub holds
 * at most 16 at once (HERALD_MAX_REPLAYS); retry once one has finished, …`, with `details` naming
 * the cap, its setting and its value.
 */
export function capReached(name: CapName, max: number): HeraldError {
  const c: CapSpec = CAPS[name];
  return new HeraldError(ErrorCodes.LIMIT_EXCEEDED, `too many ${c.what}: this hub holds at most ${max} at once (${c.setting}); ${c.hint}`, {
    details: { cap: name, setting: c.setting, max },
  });
}

/** Slots of one cap, counted in memory: synchronous, so two requests at once cannot both take the last one. */
export interface Cap {
  readonly name: CapName;
  readonly max: number;
  /** Slots in use: those taken, plus what `held` counts. */
  readonly used: number;
  /**
   * Takes a slot, or throws LIMIT_EXCEEDED (capReached) when none is left. Returns the function that
   * gives it back; calling that again does nothing.
   */
  take(): () => void;
}

/**
 * A cap of `max` slots (default the table's). `held` counts slots held elsewhere (replays the
 * dispatcher and the subscription manager run): a slot taken while one is being created and
 * given back once it runs, when `held` counts it, bounds creations in flight too.
 */
export function createCap(name: CapName, max: number = CAPS[name].default, held: () => number = () => 0): Cap {
  let taken = 0;
  return {
    name,
    max,
    get used() {
      return taken + held();
    },
    take() {
      if (taken + held() >= max) throw capReached(name, max);
      taken++;
      let given = false;
      return () => {
        if (given) return;
        given = true;
        taken--;
      };
    },
  };
}
