import type { Logger } from 'pino';
import type { SubscriptionStore } from '../store/index.ts';
import type { Sub } from './consumer.ts';

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Acknowledged offsets: raised in memory at once (acked), saved every `flushMs` in one UPDATE for
 * all the subscriptions that moved. A failed save is retried on the next flush, so after a crash a
 * subscription re-delivers what was acknowledged but not saved, and never skips.
 */
export class AckFlusher {
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly subStore: Pick<SubscriptionStore, 'saveAcked'>,
    private readonly subs: () => Iterable<Sub>,
    private readonly log: Logger,
    private readonly flushMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush().catch(() => undefined), this.flushMs);
    this.timer.unref();
  }

  /** Stops the timer; the caller flushes what is left. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  acked(sub: Sub, offset: bigint): void {
    if (offset > sub.acked) sub.acked = offset;
  }

  /** Saves every acknowledged offset not yet saved, in one UPDATE; one flush at a time. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    const dirty: { sub: Sub; acked: bigint }[] = [];
    for (const sub of this.subs()) if (sub.acked > sub.saved) dirty.push({ sub, acked: sub.acked });
    if (dirty.length === 0) return Promise.resolve();
    this.flushing = this.subStore
      .saveAcked(dirty.map((d) => ({ name: d.sub.name, acked: d.acked })))
      .then(
        () => {
          for (const d of dirty) if (d.acked > d.sub.saved) d.sub.saved = d.acked;
        },
        (err) => {
          this.log.warn({ err: errText(err), subscriptions: dirty.length }, 'could not save acknowledged offsets; will retry');
          throw err;
        },
      )
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }
}
