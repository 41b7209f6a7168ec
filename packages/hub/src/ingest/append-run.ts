import { ErrorCodes, HeraldError, type HeraldEvent } from '@herald/core';
import type { Store, StoredEvent } from '../store/types.ts';
import { StepError } from './steps.ts';
import { isEncodingFailure, storeFailure } from './store-errors.ts';
import type { IngestMetrics, IngestStats } from './types.ts';
import { errText } from './unreachable.ts';

/** The events of a batch still to store, in order, each with where it came from (`S`: a message, a caller). */
export interface AppendRun<S> {
  /** Runs of events still to append; a run the store refuses for its data is split in two. */
  chunks: { events: HeraldEvent[]; sources: S[] }[];
  /** What was stored so far, in offset order. */
  stored: StoredEvent[];
  /** Ids the log had already (or twice in the batch). */
  duplicates: string[];
}

export function appendRun<S>(events: HeraldEvent[], sources: S[]): AppendRun<S> {
  return { chunks: events.length > 0 ? [{ events, sources }] : [], stored: [], duplicates: [] };
}

/** What appendAll reports as it goes. */
export interface AppendHooks<S> {
  /** The store refused this one event for its data: it is the caller's to dead-letter or refuse. */
  refused(event: HeraldEvent, source: S, err: HeraldError): void;
  /** One append committed, taking `seconds`, for `events` events. */
  appended(seconds: number, events: number, stored: readonly StoredEvent[], duplicates: number): void;
  /** An append failed with the store unavailable: it may have committed all the same. */
  unavailable?(): void;
}

/** True when the store answers: a TypeError from a driver is the data's fault only if it does. */
async function storeAnswers(store: Pick<Store, 'ping'>): Promise<boolean> {
  return store.ping().then(
    () => true,
    () => false,
  );
}

/**
 * Appends what is left of `run`, in order, moving the stored events to `run.stored`. The common
 * case is one append of the whole batch. When the store refuses a run of events for their data
 * (storeFailure: refused), the run is split in two and each half appended on its own, down to the
 * single events it refuses, which go to `hooks.refused`. Throws a StepError('store') when the store
 * is unavailable; what was stored so far stays in `run`, so the retry goes on from there.
 */
export async function appendAll<S>(store: Pick<Store, 'append' | 'ping'>, run: AppendRun<S>, hooks: AppendHooks<S>): Promise<void> {
  while (run.chunks.length > 0) {
    const chunk = run.chunks[0] as AppendRun<S>['chunks'][number];
    let result: Awaited<ReturnType<Store['append']>>;
    const started = performance.now();
    try {
      result = await store.append(chunk.events);
    } catch (err) {
      if (storeFailure(err) === 'unavailable') {
        hooks.unavailable?.();
        throw new StepError('store', err);
      }
      if (chunk.events.length > 1) {
        const mid = chunk.events.length >> 1;
        run.chunks.splice(
          0,
          1,
          { events: chunk.events.slice(0, mid), sources: chunk.sources.slice(0, mid) },
          { events: chunk.events.slice(mid), sources: chunk.sources.slice(mid) },
        );
        continue;
      }
      if (isEncodingFailure(err) && !(await storeAnswers(store))) throw new StepError('store', err);
      const refused = new HeraldError(ErrorCodes.INVALID_EVENT, `the store refused the event: ${errText(err)}`, { cause: err });
      hooks.refused(chunk.events[0] as HeraldEvent, chunk.sources[0] as S, refused);
      run.chunks.shift();
      continue;
    }
    run.chunks.shift();
    hooks.appended((performance.now() - started) / 1000, chunk.events.length, result.stored, result.duplicates.length);
    for (const e of result.stored) run.stored.push(e);
    for (const id of result.duplicates) run.duplicates.push(id);
  }
}

/**
 * Hooks that count each append in `counters` and `metrics` and report the newest offset stored.
 * After an append that failed with the store unavailable, the next one that commits calls
 * `uncertain`: the failed one may have committed, its answer lost, so its events are in the log
 * without having been reported (the retry sees them as duplicates).
 */
export function countingHooks(
  counters: IngestStats,
  metrics: IngestMetrics | undefined,
  stored: (offset: bigint) => void,
  uncertain: () => void = () => undefined,
): AppendHooks<unknown> {
  let failed = false;
  return {
    refused: () => undefined,
    unavailable: () => {
      failed = true;
    },
    appended: (seconds, n, events, duplicates) => {
      if (failed) {
        failed = false;
        uncertain();
      }
      metrics?.appended(seconds, n);
      counters.batches++;
      counters.stored += events.length;
      if (events.length > 0) metrics?.stored(events);
      counters.duplicates += duplicates;
      const last = events[events.length - 1];
      if (last) stored(last.offset);
    },
  };
}
