import { ErrorCodes, HeraldError, INGEST_EXCHANGE, type QueueType } from '@herald/core';
import { connect, type Options } from 'amqplib';
import type { Logger } from 'pino';
import type { DeadLetterFilter, DeadLetterStore, StoredDeadLetter } from '../store/index.ts';
import { createDeadLetterIntake, type DeadLetterIntake, type DeadLetterIntakeStats } from './intake.ts';

/** Dead letters one bulk redrive re-sends at most (call again for more). */
export const MAX_BULK_REDRIVE = 10_000;
/** The header a re-sent message carries: the id of the dead letter it came from. */
export const REDRIVEN_HEADER = 'x-herald-redriven';
/** Queue names a redrive may target (printable, as RabbitMQ names them). */
const QUEUE_RE = /^[A-Za-z0-9_.:-]{1,255}$/;

/**
 * The AMQP properties to publish a dead letter again with: what the row kept, without the
 * sanitizing note, without `user_id` (RabbitMQ refuses one that is not the hub's own user: the
 * redrive is the hub's, on an admin's word), marked with the dead letter's id.
 */
export function redriveProperties(letter: StoredDeadLetter): Options.Publish {
  const {
    sanitized: _note,
    userId: _user,
    headers,
    ...rest
  } = letter.properties as Record<string, unknown> & {
    headers?: Record<string, unknown>;
  };
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined && v !== null) props[k] = v;
  return { ...props, persistent: true, headers: { ...(headers ?? {}), [REDRIVEN_HEADER]: letter.id.toString() } };
}

/**
 * Dead letters one can act on (seed 004), from every source: the hub's own (ingest) and those
 * that reach `herald.dead` from subscribers, kept by the intake (./intake.ts) from start() to
 * stop(). List and inspect them, re-send them to `herald.ingest` (with their routing key and
 * properties, so an event keeps its id and is stored once however often it is re-sent) or to one
 * queue, and purge them. A redrive publishes with confirms on a short connection of its own, then
 * records the redrive; a message that fails again comes back as a new dead letter.
 */
export class DeadLetters {
  private readonly intake: DeadLetterIntake;

  constructor(
    private readonly store: DeadLetterStore,
    private readonly amqpUrl: string,
    private readonly log: Logger,
    options: { queueType?: QueueType | undefined } = {},
  ) {
    this.intake = createDeadLetterIntake({ amqpUrl, store, logger: log, queueType: options.queueType });
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
   * Re-sends one, to herald.ingest or to `queue`. A subscriber's dead letter goes to herald.ingest
   * only when its event is in the log (CONFLICT otherwise, see notInLog).
   */
  async redrive(id: bigint, queue?: string): Promise<void> {
    if (queue !== undefined && !QUEUE_RE.test(queue))
      throw new HeraldError(ErrorCodes.INVALID_REQUEST, `invalid queue name ${JSON.stringify(queue.slice(0, 80))}`, {
        details: { parameter: 'queue' },
      });
    const letter = await this.get(id);
    if (queue === undefined && (await this.notInLog([letter])).length > 0)
      throw new HeraldError(
        ErrorCodes.CONFLICT,
        `dead letter ${id} came from a subscriber and its event ${JSON.stringify(letter.messageId ?? null)} is not in the log: ` +
          `only events of the log are re-sent to ${INGEST_EXCHANGE}; re-send it to its queue with {"queue": ${JSON.stringify(letter.queue ?? '<name>')}}`,
        { details: { id: id.toString() } },
      );
    await this.send([letter], queue);
  }

  /**
   * Re-sends those the filter selects (at most MAX_BULK_REDRIVE, oldest first) to herald.ingest:
   * how many went, and how many subscribers' dead letters were skipped (see notInLog).
   */
  async redriveMany(filter: DeadLetterFilter): Promise<{ redriven: number; skipped: number }> {
    const letters = await this.store.list(filter, 0n, MAX_BULK_REDRIVE);
    const held = new Set(await this.notInLog(letters));
    const send = letters.filter((l) => !held.has(l));
    await this.send(send);
    return { redriven: send.length, skipped: held.size };
  }

  /**
   * The subscribers' dead letters among `letters` whose event the log does not hold. Anyone who may
   * write to herald.dead can put a message there under any routing key, and a redrive to
   * herald.ingest publishes as the hub: were it sent, a forged `billing.*` message would be stored
   * as billing's event, past the topic permissions that keep that service from publishing it. A
   * subscriber's genuine dead letter is of an event the hub delivered, so of the log: re-sent to
   * herald.ingest, it is recognised by its id and stored once (to deliver it again, re-send it to
   * its queue).
   */
  private async notInLog(letters: readonly StoredDeadLetter[]): Promise<StoredDeadLetter[]> {
    const subs = letters.filter((l) => l.source === 'subscriber');
    if (subs.length === 0) return [];
    const inLog = await this.store.eventsInLog(subs.flatMap((l) => (l.messageId === undefined ? [] : [l.messageId])));
    return subs.filter((l) => l.messageId === undefined || !inLog.has(l.messageId.toLowerCase()));
  }

  async delete(id: bigint): Promise<void> {
    if (!(await this.store.delete(id))) throw new HeraldError(ErrorCodes.NOT_FOUND, `no dead letter ${id}`);
  }

  purge(filter: DeadLetterFilter): Promise<number> {
    return this.store.purge(filter);
  }

  private async send(letters: readonly StoredDeadLetter[], queue?: string): Promise<void> {
    if (letters.length === 0) return;
    let conn: Awaited<ReturnType<typeof connect>>;
    try {
      conn = await connect(this.amqpUrl, { noDelay: true });
    } catch (err) {
      throw new HeraldError(ErrorCodes.UNAVAILABLE, `cannot reach RabbitMQ to redrive: ${(err as Error).message}`, { cause: err });
    }
    conn.on('error', () => undefined);
    try {
      const ch = await conn.createConfirmChannel();
      ch.on('error', () => undefined);
      if (queue !== undefined) await ch.checkQueue(queue);
      await Promise.all(
        letters.map(
          (l) =>
            new Promise<void>((resolve, reject) => {
              const exchange = queue === undefined ? INGEST_EXCHANGE : '';
              const key = queue ?? l.routingKey;
              ch.publish(exchange, key, l.body, redriveProperties(l), (err) => (err ? reject(err) : resolve()));
            }),
        ),
      );
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 404) throw new HeraldError(ErrorCodes.NOT_FOUND, `no queue ${queue}`, { details: { parameter: 'queue' } });
      throw new HeraldError(ErrorCodes.PUBLISH_FAILED, `the redrive was not confirmed: ${(err as Error).message}`, { cause: err });
    } finally {
      await conn.close().catch(() => undefined);
    }
    await this.store.redriven(letters.map((l) => l.id));
    this.log.info({ count: letters.length, to: queue ?? INGEST_EXCHANGE }, 'dead letters redriven');
  }
}
