import { ErrorCodes, HeraldError, type HeraldEvent, INGEST_EXCHANGE, toAmqp, ValidationError } from '@herald/core';
import type { ConfirmChannel } from 'amqplib';
import { BUDGETS } from '../caps/index.ts';
import type { Store } from '../store/types.ts';
import { isEncodingError } from './amqp-table.ts';
import { type AppendHooks, appendAll, appendRun } from './append-run.ts';
import type { IngestOutlet } from './mode-setup.ts';
import type { DirectOutcome } from './types.ts';
import { errText } from './unreachable.ts';

/** What the direct path works with: ingest's store, hooks, outlet, checks and serial line. */
export interface DirectContext {
  readonly store: Pick<Store, 'append' | 'ping'>;
  readonly hooks: AppendHooks<unknown>;
  readonly outlet: IngestOutlet | undefined;
  /** Throws when the event may not be stored (the catalog's inspection); `producer` names who sent it. */
  check(event: HeraldEvent, producer: string | undefined): void;
  /** Runs `fn` in ingest's serial line, after the batch in progress. */
  serially<T>(fn: () => Promise<T>): Promise<T>;
  /** Whether the store answered the last write (readiness). */
  storeAnswered(ok: boolean): void;
  /**
   * Events the direct path may have stored and not out on herald.events yet, per outlet
   * (HERALD_PUBLISH_MAX_UNFORWARDED); past it append() refuses with UNAVAILABLE. Default the
   * table's (BUDGETS.publishUnforwarded).
   */
  readonly maxUnforwarded?: number | undefined;
  /** Events the direct path handed the outlet whose appended() has not settled: what waits for the flow. */
  readonly unforwarded: { events: number };
}

/**
 * The refusal of the events past the bound, once `waiting` wait for the outlet: UNAVAILABLE, since the flow cannot keep up (RabbitMQ
 * unreachable or slow) and the caller sends them again later.
 */
function noRoom(waiting: number, max: number): HeraldError {
  const setting = BUDGETS.publishUnforwarded.setting;
  return new HeraldError(
    ErrorCodes.UNAVAILABLE,
    `${waiting} events stored through the direct path are not out on herald.events yet (RabbitMQ unreachable or slow): this hub stores no more of them until the flow catches up (at most ${max}, ${setting}); try again shortly`,
    { details: { budget: 'publishUnforwarded', setting, max } },
  );
}

/**
 * Counts `n` events in `backlog` until `out` settles. A function of its own, so that what waits
 * holds the count alone, not the call's events (their bodies are the flow's to keep or read back).
 */
function track(backlog: { events: number }, n: number, out: Promise<void>): void {
  backlog.events += n;
  const settled = () => {
    backlog.events -= n;
  };
  out.then(settled, settled);
}

/** A refusal as the direct path answers it: a HeraldError as it is, anything else INVALID_EVENT. */
function asHeraldError(err: unknown): HeraldError {
  if (err instanceof HeraldError) return err;
  return new ValidationError(ErrorCodes.INVALID_EVENT, errText(err), { cause: err });
}

/**
 * Ingest.append(): see its contract in types.ts. Of the events the outlet has no room for (it has
 * `maxUnforwarded` of this path's events still to get out), the first ones that fit are stored and
 * the rest refused UNAVAILABLE, in order.
 */
export async function directAppend(
  c: DirectContext,
  events: readonly HeraldEvent[],
  producer: string | undefined,
): Promise<DirectOutcome[]> {
  const outcomes: DirectOutcome[] = new Array(events.length);
  const accepted: HeraldEvent[] = [];
  const sources: number[] = [];
  events.forEach((event, i) => {
    try {
      c.check(event, producer);
      accepted.push(event);
      sources.push(i);
    } catch (err) {
      outcomes[i] = { error: asHeraldError(err) };
    }
  });
  const backlog = c.outlet && c.unforwarded;
  const max = c.maxUnforwarded ?? BUDGETS.publishUnforwarded.default;
  let run = appendRun<number>([], []);
  await c.serially(async () => {
    // In the serial line, so what the calls before this one stored is counted.
    const room = backlog ? Math.max(0, max - backlog.events) : accepted.length;
    if (room < accepted.length) {
      const error = noRoom((backlog?.events ?? 0) + room, max);
      for (const i of sources.slice(room)) outcomes[i] = { error };
      accepted.length = room;
      sources.length = room;
    }
    run = appendRun(accepted, sources);
    try {
      await appendAll(c.store, run, {
        ...c.hooks,
        refused: (_event, i, err) => {
          outcomes[i] = { error: err };
        },
      });
    } catch (err) {
      c.storeAnswered(false);
      throw new HeraldError(ErrorCodes.UNAVAILABLE, `the store is unavailable; try again shortly (${errText(err)})`, { cause: err });
    }
    c.storeAnswered(true);
    // Handed over in the serial line, so the outlet sees runs in offset order; not awaited, counted until settled.
    if (run.stored.length > 0 && c.outlet && backlog) track(backlog, run.stored.length, c.outlet.appended(run.stored));
  });
  const offsets = new Map<string, bigint>();
  for (const e of run.stored) offsets.set(e.id, e.offset);
  const answered = new Set<string>();
  for (const [n, i] of sources.entries()) {
    if (outcomes[i] !== undefined) continue;
    const id = (accepted[n] as HeraldEvent).id;
    const offset = offsets.get(id);
    // The same id twice in one call: the second is a duplicate of the first, whose offset it names.
    if (offset === undefined || answered.has(id)) outcomes[i] = { offset, duplicate: true };
    else {
      answered.add(id);
      outcomes[i] = { offset, duplicate: false };
    }
  }
  return outcomes;
}

/**
 * Publishes an event to `herald.ingest` on `ch`; resolves when RabbitMQ confirmed it. Rejects with
 * PUBLISH_FAILED on a nack, UNAVAILABLE when the channel is closed, INVALID_EVENT (a
 * ValidationError) when amqplib cannot encode the event.
 */
export function publishToIngest(ch: ConfirmChannel, event: HeraldEvent): Promise<void> {
  const { routingKey, content, properties } = toAmqp(event);
  return new Promise<void>((resolve, reject) => {
    try {
      ch.publish(INGEST_EXCHANGE, routingKey, content, properties, (err) => {
        if (err) reject(new HeraldError(ErrorCodes.PUBLISH_FAILED, 'RabbitMQ refused the publish (nack)', { cause: err }));
        else resolve();
      });
    } catch (err) {
      // amqplib refusing to encode the event is the event's fault, and retrying cannot help.
      if (isEncodingError(err))
        reject(
          new ValidationError(ErrorCodes.INVALID_EVENT, `the event cannot be encoded as an AMQP message: ${errText(err)}`, {
            cause: err,
          }),
        );
      else reject(new HeraldError(ErrorCodes.UNAVAILABLE, 'RabbitMQ channel closed; try again shortly', { cause: err }));
    }
  });
}
