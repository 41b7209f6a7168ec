import type { Logger } from 'pino';
import type { Store } from '../store/types.ts';

/**
 * The hub_state key of the router's checkpoint: `{ offset: "<decimal>" }`, the highest offset
 * dispatched to `herald.events`; absent or null when not in router mode.
 */
export const DISPATCHED_KEY = 'router.dispatched';

/** How often, at most, the checkpoint is written (it may lag: forwarding again is at least once). */
const CHECKPOINT_EVERY_MS = 250;

/** Reads the checkpoint: an object with a decimal string, so no JSON layer turns it into a lossy number. */
export async function readCheckpoint(store: Pick<Store, 'getState'>): Promise<bigint | undefined> {
  const saved = await store.getState<{ offset?: unknown } | null>(DISPATCHED_KEY);
  const raw = saved?.offset;
  return typeof raw === 'string' || typeof raw === 'number' ? BigInt(raw) : undefined;
}

/**
 * Writes the checkpoint now and then (at most every 250 ms), off the forwarding path: a run never
 * waits for it, and a lagging checkpoint only means forwarding again after a crash. One write at a
 * time, in order.
 */
export class Checkpoint {
  private persisted: bigint | null | undefined;
  private lastAt = 0;
  private writing: Promise<void> | undefined;

  constructor(
    private readonly store: Pick<Store, 'setState'>,
    private readonly log: Logger,
  ) {}

  /** Writes `offset` when the last write is old enough; never waits, never rejects. */
  maybeWrite(offset: bigint | undefined): void {
    if (offset === undefined || this.writing !== undefined || Date.now() - this.lastAt < CHECKPOINT_EVERY_MS) return;
    void this.write(offset);
  }

  /**
   * Writes `offset` (null: clears the checkpoint) after any write in flight, and resolves once
   * written. Rejects when the store fails (a clearing must not be lost); an offset's failed write
   * is logged and tried again with the next.
   */
  write(offset: bigint | null): Promise<void> {
    this.lastAt = Date.now();
    const run = (this.writing ?? Promise.resolve()).then(() => this.writeNow(offset));
    const settled = run.catch(() => undefined);
    this.writing = settled;
    void settled.then(() => {
      if (this.writing === settled) this.writing = undefined;
    });
    return run;
  }

  private async writeNow(offset: bigint | null): Promise<void> {
    if (offset === this.persisted) return;
    try {
      await this.store.setState(DISPATCHED_KEY, offset === null ? null : { offset: offset.toString() });
      this.persisted = offset;
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not write the router checkpoint; will retry');
      if (offset === null) throw err;
    }
  }
}
