import { ErrorCodes, HeraldError, type HeraldEvent, INGEST_EXCHANGE, toAmqp, ValidationError } from '@herald/core';
import type { ConfirmChannel } from 'amqplib';
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
}

/** A refusal as the direct path answers it: a HeraldError as it is, anything else INVALID_EVENT. */
function asHeraldError(err: unknown): HeraldError {
  if (err instanceof HeraldError) return err;
  return new ValidationError(ErrorCodes.INVALID_EVENT, errText(err), { cause: err });
}

/** Ingest.append(): see its contract in types.ts. */
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
  const run = appendRun(accepted, sources);
  await c.serially(async () => {
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
    // Handed over in the serial line, so the outlet sees runs in offset order; not awaited.
    if (run.stored.length > 0) c.outlet?.appended(run.stored).catch(() => undefined);
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
