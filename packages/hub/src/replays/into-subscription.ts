import { compileMatcher, ErrorCodes, HeraldError } from '@herald/core';
import type { Logger } from 'pino';
import { queryMayHaveMore, type ReplayStore, type SubscriptionStore } from '../store/index.ts';
import { READ_MAX_BYTES, type Store, type StoredEvent } from '../store/types.ts';
import type { ReplayJob, Sub } from '../subscriptions/consumer.ts';
import type { DeliveredEvent, SubscriptionReplay } from '../subscriptions/types.ts';

/** What replays into subscriptions need of the manager. */
export interface IntoSubscriptionOptions {
  readonly store: Pick<Store, 'query'>;
  readonly subStore: Pick<SubscriptionStore, 'countRange'>;
  readonly replayStore: ReplayStore;
  /** Events read from the log per replay step. */
  readonly chunk: number;
  readonly log: Logger;
  /** The subscription of that name now, if any (a replay whose subscription was deleted stops). */
  readonly current: (name: string) => Sub | undefined;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Replays into durable subscriptions (`target: {subscription}`): each is a job on its subscription,
 * read by whichever consumer or HTTP pull delivers next, its events marked with the replay's id and
 * never above what the subscription was already given. Its row in the replays table follows each
 * chunk handed out, so a restarted hub continues where it was.
 */
export class ReplaysIntoSubscriptions {
  constructor(private readonly o: IntoSubscriptionOptions) {}

  /**
   * Unfinished replays go back into their subscriptions' jobs and continue after their saved
   * position; one whose subscription is gone (deleted while its row was being written) is marked
   * failed. Returns how many continue.
   */
  async load(): Promise<number> {
    let n = 0;
    for (const r of await this.o.replayStore.listUnfinished('subscription')) {
      const name = r.target === 'flow' ? '' : r.target.subscription;
      const sub = this.o.current(name);
      if (!sub) {
        await this.o.replayStore.finish(r.id, 'failed', Date.now(), `subscription ${name} was deleted`);
        continue;
      }
      sub.replays.push({
        id: r.id,
        matches: compileMatcher(r.selector),
        position: r.position,
        upTo: r.upTo,
        count: r.count,
        capped: false,
        since: r.since,
        until: r.until,
      });
      n++;
    }
    return n;
  }

  /** Starts one into `sub`: how many events it will re-send. */
  async start(sub: Sub, range: SubscriptionReplay): Promise<number> {
    const name = sub.name;
    // Only what this subscription was already given (or acknowledged) is re-sent: later events come anyway.
    const reach = sub.active && sub.active.position > sub.acked ? sub.active.position : sub.acked;
    const upTo = range.upTo < reach ? range.upTo : reach;
    const count =
      upTo > range.after
        ? await this.o.subStore.countRange(sub.selector, range.selector, {
            after: range.after,
            upTo,
            since: range.since,
            until: range.until,
          })
        : 0;
    const now = Date.now();
    await this.o.replayStore.insertForSubscription({
      id: range.id,
      selector: range.selector,
      from: range.from ?? { offset: range.after + 1n },
      to: range.to ?? (range.from === undefined ? { offset: range.upTo } : undefined),
      target: { subscription: name },
      status: count > 0 ? 'pending' : 'done',
      count: 0,
      after: range.after,
      upTo,
      since: range.since,
      until: range.until,
      position: range.after,
      createdAt: now,
      finishedAt: count > 0 ? undefined : now,
      error: undefined,
    });
    if (this.o.current(name) !== sub) {
      // Deleted while the row was written.
      await this.o.replayStore.finish(range.id, 'failed', Date.now(), `subscription ${name} was deleted`);
      throw new HeraldError(ErrorCodes.NOT_FOUND, `no subscription ${name}`, { details: { name } });
    }
    if (count > 0) {
      sub.replays.push({
        id: range.id,
        matches: compileMatcher(range.selector),
        position: range.after,
        upTo,
        count: 0,
        capped: false,
        since: range.since,
        until: range.until,
      });
      sub.active?.reset();
      sub.wakeWaiters();
    }
    this.o.log.info({ subscription: name, replay: range.id, count }, 'replay into subscription');
    return count;
  }

  /** The subscription was deleted: its unfinished replays are failed. */
  async failAll(sub: Sub): Promise<void> {
    for (const job of sub.replays.splice(0))
      await this.o.replayStore
        .finish(job.id, 'failed', Date.now(), `subscription ${sub.name} was deleted`)
        .catch((err) =>
          this.o.log.warn({ err: errText(err), replay: job.id }, 'could not mark a replay into a deleted subscription failed'),
        );
  }

  cancel(sub: Sub, id: string): Promise<boolean> {
    // After the replay read in progress (serialized like read): no later read returns its events.
    const run = sub.replaying.then(async () => {
      const job = sub.replays.find((j) => j.id === id);
      if (!job) return false;
      await this.o.replayStore.finish(id, 'cancelled', Date.now());
      const i = sub.replays.indexOf(job);
      if (i >= 0) sub.replays.splice(i, 1);
      this.o.log.info({ subscription: sub.name, replay: id, count: job.count }, 'replay into subscription cancelled');
      return true;
    });
    sub.replaying = run.catch(() => undefined);
    return run;
  }

  /**
   * The next events of the first replay job, marked; never above `position` (what was delivered).
   * Each chunk's new position and count are saved before it is handed out (one UPDATE per chunk),
   * so a restarted manager continues after it; when the save fails this rejects and nothing moved.
   */
  read(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]> {
    const run = sub.replaying.then(() => this.readNow(sub, room, position));
    sub.replaying = run.catch(() => undefined);
    return run;
  }

  private async readNow(sub: Sub, room: number, position: bigint): Promise<DeliveredEvent[]> {
    const chunk = this.o.chunk;
    while (sub.replays.length > 0) {
      const job = sub.replays[0] as ReplayJob;
      const upTo = !job.capped && position < job.upTo ? position : job.upTo;
      const rows =
        job.position >= upTo
          ? []
          : await this.o.store.query({
              selector: sub.selector,
              after: job.position,
              upTo,
              since: job.since,
              until: job.until,
              limit: chunk,
              maxBytes: READ_MAX_BYTES,
            });
      const out: DeliveredEvent[] = [];
      let last = job.position;
      for (const e of rows) {
        last = e.offset;
        if (job.matches(e.sender, e.type)) out.push({ ...e, replay: job.id });
        if (out.length >= room) break;
      }
      const finished =
        !queryMayHaveMore({ limit: chunk, maxBytes: READ_MAX_BYTES }, rows) &&
        (rows.length === 0 || last === (rows[rows.length - 1] as StoredEvent).offset);
      const count = job.count + out.length;
      // Deleted meanwhile (its row is failed already), or another reader finished the job.
      if (this.o.current(sub.name) !== sub || sub.replays[0] !== job) return [];
      if (last !== job.position || upTo !== job.upTo || finished)
        await this.o.replayStore.progress(job.id, last, count, upTo !== job.upTo ? upTo : undefined);
      if (finished) await this.o.replayStore.finish(job.id, 'done', Date.now());
      job.capped = true;
      job.upTo = upTo;
      job.position = last;
      job.count = count;
      if (finished) {
        sub.replays.shift();
        this.o.log.info({ subscription: sub.name, replay: job.id, count }, 'replay into subscription done');
      }
      if (out.length > 0) return out;
    }
    return [];
  }
}
