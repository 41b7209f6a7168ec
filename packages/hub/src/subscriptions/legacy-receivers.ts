import { connect } from 'amqplib';
import type { Logger } from 'pino';

/**
 * Deletes the receiver queues of earlier versions (`herald.sub.<hash>`, one per selector, bound to
 * `herald.events`): RabbitMQ would otherwise go on copying every matching event into them. One
 * connection, one queue after the other; a queue already gone is no error. Resolves with the queues
 * that are gone; never rejects: what cannot be deleted now is tried again at the next start, and
 * logged.
 */
export async function deleteReceiverQueues(amqpUrl: string, queues: readonly string[], log: Logger): Promise<string[]> {
  const gone: string[] = [];
  try {
    const conn = await connect(amqpUrl, { noDelay: true });
    conn.on('error', () => undefined);
    try {
      let ch = await conn.createChannel();
      ch.on('error', () => undefined);
      for (const queue of queues) {
        try {
          await ch.deleteQueue(queue);
          gone.push(queue);
        } catch (err) {
          log.warn({ err: (err as Error).message, queue }, 'could not delete a receiver queue of an earlier version');
          // A refused delete closes the channel: go on with a new one.
          ch = await conn.createChannel();
          ch.on('error', () => undefined);
        }
      }
    } finally {
      await conn.close().catch(() => undefined);
    }
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not reach RabbitMQ to delete the receiver queues of an earlier version');
  }
  if (gone.length > 0) log.debug({ deleted: gone.length }, 'receiver queues of an earlier version deleted');
  return gone;
}
