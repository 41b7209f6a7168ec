import { ErrorCodes, HeraldError, INGEST_EXCHANGE, isUuid, type QueueType } from '@herald/core';
import type { ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import type { DeadLetterFilter, DeadLetterStore, StoredDeadLetter } from '../store/index.ts';
import type { Store, StoredEvent } from '../store/types.ts';
import { createDeadLetterIntake, type DeadLetterIntake, type DeadLetterIntakeStats } from './intake.ts';
import { bodyCut } from './received.ts';
import { eventResend, letterResend, onConnection, publishConfirmed, queueExists, type Resend } from './redrive.ts';

/** Why `userId` may not publish as `sender`, or undefined when it may (ingest's SenderCheck). */
type SenderCheck = (userId: string, sender: string) => string | undefined;

/** Dead letters one bulk redrive reads at most (call again from its `next` for more). */
export const MAX_BULK_REDRIVE = 10_000;
/** Dead letters a bulk redrive reads at once: bounds the bodies it holds (up to 1 MiB each). */
const BULK_PAGE = 100;
/** Queue names a redrive may target (printable, as RabbitMQ names them). */
const QUEUE_RE = /^[A-Za-z0-9_.:-]{1,255}$/;

/** What a bulk redrive did: how many went, how many it skipped, and the `after` to go on from (null: none left). */
export interface BulkRedrive {
  redriven: number;
  skipped: number;
  next: string | null;
  /** The highest id this bulk redrive reads (to give back with `next`): what fails again comes back above it. */
  upTo: string;
}

/** Reads events of the log by id (the Store's getById). */
export type EventReader = Pick<Store, 'getById'>;

/**
 * Why the letter's publisher may not publish as its sender, when it may not: the check ingest makes
 * of a message's user_id (which RabbitMQ vouches for), made again, as a redrive publishes as the hub
 * without it (RabbitMQ refuses another's user_id). Without it a letter refused for its sender would
 * pass as that sender's event. The hub's own user, and no check configured (auth off), pass.
 */
function refusedSender(letter: StoredDeadLetter, amqpUrl: string, check: SenderCheck | undefined): string | undefined {
  const user = letter.properties.userId;
  if (check === undefined || user === undefined || user === null || user === '') return undefined;
  let hub = 'guest';
  try {
    hub = decodeURIComponent(new URL(amqpUrl).username) || 'guest';
  } catch {
    // an unparsable URL: the hub could not connect with it either
  }
  if (String(user) === hub) return undefined;
  const dot = letter.routingKey.indexOf('.');
  return check(String(user), dot < 0 ? letter.routingKey : letter.routingKey.slice(0, dot));
}

/**
 * Dead letters one can act on (seed 004), from every source: the hub's own (ingest) and those
 * that reach `herald.dead` from subscribers, kept by the intake (./intake.ts) from start() to
 * stop(). List and inspect them, re-send them, and purge them. The hub's own are re-sent as they
 * came, to `herald.ingest` (with their routing key and properties, so an event keeps its id and is
 * stored once however often it is re-sent) or to one queue. A subscriber's is of an event the log
 * holds: it is re-sent as that event, read from the log by its id, to its queue or one given, never
 * as its own bytes (see redriveSubscriber). A redrive publishes with confirms on a short connection
 * of its own, then records the redrive; a message that fails again comes back as a new dead letter.
 */
export class DeadLetters {
  private readonly intake: DeadLetterIntake;
  private readonly events: EventReader;

  private readonly senderCheck: SenderCheck | undefined;

  constructor(
    private readonly store: DeadLetterStore,
    private readonly amqpUrl: string,
    private readonly log: Logger,
    options: {
      events: EventReader;
      queueType?: QueueType | undefined;
      maxKept?: number | undefined;
      /** What ingest checks of a message's user_id against its sender (auth on); a redrive checks it again. */
      senderCheck?: SenderCheck | undefined;
    },
  ) {
    this.events = options.events;
    this.senderCheck = options.senderCheck;
    this.intake = createDeadLetterIntake({ amqpUrl, store, logger: log, queueType: options.queueType, maxKept: options.maxKept });
  }

  /** Starts keeping the dead letters of herald.dead, in the background (reconnecting by itself). */
  start(): void {
    this.intake.start();
  }

  /** Stops the intake (its batch in flight is finished). */
  stop(): Promise<void> {
    return this.intake.stop();
  }

  intakeStats(): DeadLetterIntakeStats & { consuming: boolean } {
    return { ...this.intake.stats(), consuming: this.intake.isConsuming() };
  }

  list(filter: DeadLetterFilter, after: bigint, limit: number): Promise<StoredDeadLetter[]> {
    return this.store.list(filter, after, limit);
  }

  async get(id: bigint): Promise<StoredDeadLetter> {
    const letter = await this.store.get(id);
    if (!letter) throw new HeraldError(ErrorCodes.NOT_FOUND, `no dead letter ${id}`, { details: { id: id.toString() } });
    return letter;
  }

  /**
   * Re-sends one: the hub's own to herald.ingest or to `queue`; a subscriber's as its logged event
   * to `queue`, else to its own queue (CONFLICT when its event is not in the log, when it names no
   * queue and none is given, and for one of the hub's whose body the intake cut; NOT_FOUND when the
   * queue does not exist).
   */
  async redrive(id: bigint, queue?: string): Promise<void> {
    if (queue !== undefined && !QUEUE_RE.test(queue))
      throw new HeraldError(ErrorCodes.INVALID_REQUEST, `invalid queue name ${JSON.stringify(queue.slice(0, 80))}`, {
        details: { parameter: 'queue' },
      });
    const letter = await this.get(id);
    if (letter.source === 'subscriber') return this.redriveSubscriber(letter, queue);
    if (bodyCut(letter.properties))
      throw new HeraldError(
        ErrorCodes.CONFLICT,
        `dead letter ${id} keeps only the start of its body (it was cut when it was kept): it cannot be re-sent as it came`,
        { details: { id: id.toString() } },
      );
    const refused = refusedSender(letter, this.amqpUrl, this.senderCheck);
    if (refused !== undefined)
      throw new HeraldError(
        ErrorCodes.CONFLICT,
        `dead letter ${id} cannot be re-sent: ${refused} (the hub would publish it as itself, past that check)`,
        { details: { id: id.toString() } },
      );
    await onConnection(this.amqpUrl, async (conn) => {
      if (queue !== undefined && !(await queueExists(conn, queue)))
        throw new HeraldError(ErrorCodes.NOT_FOUND, `no queue ${queue}`, { details: { parameter: 'queue' } });
      await this.send(conn, [letterResend(letter, queue)], queue ?? INGEST_EXCHANGE);
    });
  }

  /**
   * A subscriber's dead letter, re-sent as the event the log holds under its id. Anyone who may
   * write to herald.dead can put a message there with a real event's id but another sender's
   * routing key, bytes and headers, and a redrive publishes as the hub: were the letter's bytes
   * sent, to herald.ingest (in archive mode straight on to every receiver) or to a queue, a forged
   * `billing.*` message would pass as billing's event, past the topic permissions that keep its
   * author from publishing it. Never to herald.ingest either: the log holds the event already, so
   * it would store nothing and deliver nothing.
   */
  private async redriveSubscriber(letter: StoredDeadLetter, queue: string | undefined): Promise<void> {
    const id = letter.id.toString();
    const event = await this.loggedEvent(letter);
    if (event === undefined)
      throw new HeraldError(
        ErrorCodes.CONFLICT,
        `dead letter ${id} came from a subscriber and its event ${JSON.stringify(letter.messageId ?? null)} is not in the log: ` +
          "a subscriber's dead letter is re-sent as the event the log holds, never as its own bytes",
        { details: { id } },
      );
    const target = queue ?? letter.queue;
    if (target === undefined || !QUEUE_RE.test(target))
      throw new HeraldError(
        ErrorCodes.CONFLICT,
        `dead letter ${id} came from a subscriber and names no queue${target === undefined ? '' : ` it may be sent to (${JSON.stringify(target.slice(0, 80))})`}: ` +
          `its event is in the log already, so ${INGEST_EXCHANGE} would store nothing new; to deliver it again give {"queue": "<name>"}`,
        { details: { id } },
      );
    await onConnection(this.amqpUrl, async (conn) => {
      if (!(await queueExists(conn, target)))
        throw new HeraldError(ErrorCodes.NOT_FOUND, `no queue ${target}`, { details: { parameter: 'queue' } });
      const keyIsQueue = await queueExists(conn, `${event.sender}.${event.type}`);
      await this.send(conn, [eventResend(letter, event, target, keyIsQueue)], target);
    });
  }

  /**
   * Re-sends those the filter selects, oldest first from the id `after`, reading at most
   * MAX_BULK_REDRIVE: the hub's own to herald.ingest; the subscribers' that died on `queue`, as
   * their logged events, back to it. The queue a letter names is the letter's word, as forgeable as
   * its bytes: sent wherever it says, a forged letter with a real event's id would hand that event
   * to a queue of its author's choosing. So the caller names the one queue. Skipped (counted):
   * subscribers' dead letters without `queue`, of another queue, whose event is not in the log or
   * whose queue does not exist, and the hub's own whose body was cut. `next` is the id to go on
   * from when more are left, else null.
   */
  async redriveMany(filter: DeadLetterFilter, after = 0n, queue?: string, upTo?: bigint): Promise<BulkRedrive> {
    if (queue !== undefined && !QUEUE_RE.test(queue))
      throw new HeraldError(ErrorCodes.INVALID_REQUEST, `invalid queue name ${JSON.stringify(queue.slice(0, 80))}`, {
        details: { parameter: 'queue' },
      });
    // Fixed at the first call and given back: a letter that fails again comes back with a newer id
    // that the same filter selects, and a caller following `next` would never reach the end.
    const bound = upTo ?? (await this.store.maxId());
    filter = { ...filter, upTo: bound };
    return onConnection(this.amqpUrl, async (conn) => {
      const queues = new Map<string, boolean>();
      let cursor = after;
      let read = 0;
      const done: BulkRedrive = { redriven: 0, skipped: 0, next: null, upTo: bound.toString() };
      while (read < MAX_BULK_REDRIVE) {
        const limit = Math.min(BULK_PAGE, MAX_BULK_REDRIVE - read);
        const page = await this.store.list(filter, cursor, limit);
        if (page.length === 0) return done;
        read += page.length;
        cursor = (page.at(-1) as StoredDeadLetter).id;
        const resends = await this.resendsOf(conn, page, queues, queue);
        await this.send(conn, resends, 'their targets');
        done.redriven += resends.length;
        done.skipped += page.length - resends.length;
        if (page.length < limit) return done;
      }
      if ((await this.store.list(filter, cursor, 1)).length > 0) done.next = cursor.toString();
      return done;
    });
  }

  /** What a bulk redrive sends of `page` (see redriveMany); `queues` remembers which queues exist. */
  private async resendsOf(
    conn: ChannelModel,
    page: readonly StoredDeadLetter[],
    queues: Map<string, boolean>,
    only: string | undefined,
  ): Promise<Resend[]> {
    const exists = async (name: string) => {
      let known = queues.get(name);
      if (known === undefined) {
        known = await queueExists(conn, name);
        queues.set(name, known);
      }
      return known;
    };
    const events = await Promise.all(page.map((l) => (l.source === 'subscriber' && l.queue === only ? this.loggedEvent(l) : undefined)));
    const out: Resend[] = [];
    for (const [i, letter] of page.entries()) {
      if (letter.source === 'hub') {
        if (!bodyCut(letter.properties) && refusedSender(letter, this.amqpUrl, this.senderCheck) === undefined)
          out.push(letterResend(letter));
        continue;
      }
      const event = events[i];
      const queue = letter.queue;
      if (event === undefined || queue === undefined || queue !== only || !(await exists(queue))) continue;
      out.push(eventResend(letter, event, queue, await exists(`${event.sender}.${event.type}`)));
    }
    return out;
  }

  /** The event the log holds under the dead letter's message id; undefined when none (or the id is no UUID). */
  private async loggedEvent(letter: StoredDeadLetter): Promise<StoredEvent | undefined> {
    if (letter.messageId === undefined || !isUuid(letter.messageId)) return undefined;
    return this.events.getById(letter.messageId.toLowerCase());
  }

  async delete(id: bigint): Promise<void> {
    if (!(await this.store.delete(id))) throw new HeraldError(ErrorCodes.NOT_FOUND, `no dead letter ${id}`);
  }

  purge(filter: DeadLetterFilter): Promise<number> {
    return this.store.purge(filter);
  }

  /** Publishes with confirms, then records the redrives. */
  private async send(conn: ChannelModel, resends: readonly Resend[], to: string): Promise<void> {
    if (resends.length === 0) return;
    await publishConfirmed(conn, resends);
    await this.store.redriven(resends.map((r) => r.letter.id));
    this.log.info({ count: resends.length, to }, 'dead letters redriven');
  }
}
