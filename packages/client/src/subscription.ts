import { RELEASE, SubscriberEngine } from './subscriber.ts';
import type { AnyEvents, EventMap, EventOf, ReceivedEvent, SubscriberOptions } from './types.ts';

/** A subscription read with `for await`; see subscribe(). */
export interface Subscription<E extends EventMap = AnyEvents> extends AsyncIterable<ReceivedEvent<E>> {
  /** The queue being consumed (resolved once the first connection is set up). */
  readonly queue: Promise<string>;
  /**
   * Stops taking deliveries and ends the iteration. Events yielded and not yet settled, and events
   * buffered but not yet yielded, are left unacknowledged: RabbitMQ redelivers them later.
   * Idempotent; aborting `options.signal` does the same.
   */
  close(): Promise<void>;
  /** close(), for `await using events = subscribe(…)`. */
  [Symbol.asyncDispose](): Promise<void>;
}

interface Slot {
  readonly event: ReceivedEvent;
  settled: boolean;
}

/**
 * Subscribes as an async iterator: `for await (const e of subscribe({ selector })) { …; e.ack() }`.
 * Same options, queue, retry, dead-letter and reconnect behaviour as createSubscriber, whose
 * handler here is "yield the event and wait until it is settled":
 *
 * - `e.ack()` acknowledges; `e.nack(reason)` counts a failed attempt: the same event is yielded
 *   again after `retryDelayMs` (with `attempt` + 1), and after `maxAttempts` it is dead-lettered.
 * - With concurrency 1 (the default) the loop body is the handler: asking for the next event acks
 *   the previous one if it was not settled, so a plain `for await` loop needs no `ack()`. With more
 *   concurrency up to that many events are yielded unsettled and each must be settled explicitly.
 * - Leaving the loop (`break`, `return`, a throw) closes the subscription; the unsettled event is
 *   not acked and comes back on redelivery (named queues) — at least once, never lost.
 *
 * Failure: bad options throw a ValidationError at once; connection trouble goes to `onError` and
 * the subscription recovers by itself.
 */
export function subscribe<E extends EventMap = AnyEvents>(options: SubscriberOptions): Subscription<E> {
  const concurrency = options.concurrency ?? 1;
  const buffer: Slot[] = [];
  let pullers: ((r: IteratorResult<ReceivedEvent>) => void)[] = [];
  let last: Slot | undefined;
  let ended = false;
  const releases = new Set<() => void>();

  const engine = new SubscriberEngine(options, (event: EventOf, attempt: number) => {
    if (ended) throw RELEASE;
    return new Promise<void>((resolve, reject) => {
      const release = () => reject(RELEASE);
      releases.add(release);
      const slot: Slot = {
        settled: false,
        event: {
          ...event,
          attempt,
          ack() {
            if (slot.settled) return;
            slot.settled = true;
            releases.delete(release);
            resolve();
          },
          nack(reason?: unknown) {
            if (slot.settled) return;
            slot.settled = true;
            releases.delete(release);
            reject(reason ?? new Error('nacked by the subscriber'));
          },
        },
      };
      const puller = pullers.shift();
      if (puller) {
        last = slot;
        puller({ value: slot.event, done: false });
      } else {
        buffer.push(slot);
      }
    });
  });

  const close = async () => {
    if (!ended) {
      ended = true;
      for (const p of pullers) p({ value: undefined, done: true });
      pullers = [];
      buffer.length = 0;
      // Unsettled events hold their handler open; release them so the engine can stop.
      for (const r of [...releases]) r();
      releases.clear();
    }
    await engine.close();
  };

  const iterator: AsyncIterator<ReceivedEvent> = {
    next() {
      if (concurrency === 1 && last && !last.settled) last.event.ack();
      last = undefined;
      if (ended) return Promise.resolve({ value: undefined, done: true });
      const slot = buffer.shift();
      if (slot) {
        last = slot;
        return Promise.resolve({ value: slot.event, done: false });
      }
      return new Promise((resolve) => pullers.push(resolve));
    },
    async return() {
      await close();
      return { value: undefined, done: true };
    },
  };

  // Aborting the signal closes the engine; the iteration must end with it.
  if (options.signal?.aborted) void close();
  else options.signal?.addEventListener('abort', () => void close(), { once: true });

  // The map is compile-time only: the events are ReceivedEvent<E> as far as the caller said.
  return {
    queue: engine.queue,
    close,
    [Symbol.asyncDispose]: close,
    [Symbol.asyncIterator]: () => iterator as AsyncIterator<ReceivedEvent<E>>,
  };
}
