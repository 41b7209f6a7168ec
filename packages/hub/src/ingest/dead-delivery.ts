import { DEAD_EXCHANGE } from '@herald/core';
import type { ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import type { Store } from '../store/types.ts';
import { isEncodingError } from './amqp-table.ts';
import { type DeadLetterPublish, deadLetterForms, type PendingDeadLetter } from './dead-letters.ts';
import { onBroker, StepError } from './steps.ts';
import { isEncodingFailure, storeFailure } from './store-errors.ts';
import { errText } from './unreachable.ts';

/** A dead letter of the batch in flight, and how far it got (a retried batch does not redo a step). */
export interface DeadDelivery {
  readonly pending: PendingDeadLetter;
  /** The row was written, or refused for its data (then `notStored` says why). */
  settled: boolean;
  notStored?: string | undefined;
  /** RabbitMQ confirmed it on herald.dead, or it could not be encoded in any form. */
  published: boolean;
}

/** A dead letter not yet delivered. */
export function deadDelivery(pending: PendingDeadLetter): DeadDelivery {
  return { pending, settled: false, published: false };
}

/**
 * Delivers the dead letters of ingest's batches: a row in `dead_letters` and a message on
 * `herald.dead`, each step once, so a retried batch goes on from where it stopped.
 */
export class DeadLetterDelivery {
  constructor(
    private readonly store: Pick<Store, 'addDeadLetters' | 'ping'>,
    private readonly log: Logger,
    /** The hub's own RabbitMQ user: its dead letters carry it as user_id. */
    private readonly user: string,
    /** Called once per dead letter settled, with its code (counters and metrics). */
    private readonly counted: (code: string) => void,
  ) {}

  /** True when the store answers: a TypeError from a driver is the data's fault only if it does. */
  private async storeAnswers(): Promise<boolean> {
    return this.store.ping().then(
      () => true,
      () => false,
    );
  }

  /**
   * Writes the batch's dead letters that are not written yet, then publishes those not yet on
   * `herald.dead`. A dead letter the store refuses even sanitized is logged and published with
   * that reason, so nothing waits on it. Throws a StepError when the store is unavailable or
   * RabbitMQ fails (the batch is retried from the step that failed).
   */
  async deliver(ch: ConfirmChannel, dead: DeadDelivery[]): Promise<void> {
    if (dead.length === 0) return;
    const toStore = dead.filter((d) => !d.settled);
    if (toStore.length > 0) await this.storeDead(toStore);
    const toPublish = dead.filter((d) => !d.published);
    if (toPublish.length > 0) await onBroker(() => Promise.all(toPublish.map((d) => this.publishDead(ch, d))));
  }

  /** One INSERT for the lot; when the store refuses it for its data, halves, down to the one it refuses. */
  private async storeDead(items: DeadDelivery[]): Promise<void> {
    try {
      await this.store.addDeadLetters(items.map((d) => d.pending.letter));
      for (const d of items) this.deadSettled(d);
    } catch (err) {
      if (storeFailure(err) === 'unavailable') throw new StepError('store', err);
      if (items.length > 1) {
        const mid = items.length >> 1;
        await this.storeDead(items.slice(0, mid));
        await this.storeDead(items.slice(mid));
        return;
      }
      if (isEncodingFailure(err) && !(await this.storeAnswers())) throw new StepError('store', err);
      const d = items[0] as DeadDelivery;
      d.notStored = errText(err);
      this.log.error(
        { reason: d.pending.letter.reason, messageId: d.pending.letter.messageId, err: d.notStored },
        `the store refused a dead letter: it goes to ${DEAD_EXCHANGE} only`,
      );
      this.deadSettled(d);
    }
  }

  private deadSettled(d: DeadDelivery): void {
    d.settled = true;
    const l = d.pending.letter;
    this.counted(l.code);
    this.log.warn({ reason: l.reason, code: l.code, routingKey: l.routingKey, messageId: l.messageId }, 'dead letter');
  }

  /**
   * Publishes one dead letter to `herald.dead` and resolves when RabbitMQ confirmed it. The full
   * form (deadLetterPublish) is measured so that amqplib takes it; should it throw all the same, the
   * minimal form goes; should that throw too, the dead letter is only in the store (logged).
   * Rejects on a nack or a closed channel.
   */
  private publishDead(ch: ConfirmChannel, d: DeadDelivery): Promise<void> {
    const forms: DeadLetterPublish[] = deadLetterForms(d.pending, d.notStored, this.user);
    for (const form of forms) {
      let settle: ((err: unknown) => void) | undefined;
      const confirmed = new Promise<void>((resolve, reject) => {
        settle = (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve());
      });
      try {
        ch.publish(DEAD_EXCHANGE, form.routingKey, form.content, form.options, settle);
      } catch (err) {
        if (!isEncodingError(err)) return Promise.reject(err);
        this.log.warn({ messageId: d.pending.letter.messageId, err: errText(err) }, `a dead letter would not encode for ${DEAD_EXCHANGE}`);
        continue;
      }
      if (form.headersDropped)
        this.log.warn(
          { messageId: d.pending.letter.messageId },
          `dead letter published to ${DEAD_EXCHANGE} without its original headers, which RabbitMQ cannot take again (they are in dead_letters)`,
        );
      return confirmed.then(() => {
        d.published = true;
      });
    }
    this.log.error(
      { messageId: d.pending.letter.messageId },
      `a dead letter cannot be published to ${DEAD_EXCHANGE}: it is in dead_letters only`,
    );
    d.published = true;
    return Promise.resolve();
  }
}
