import { randomUUID } from 'node:crypto';
import { type ChannelModel, type ConfirmChannel, connect, type Options } from 'amqplib';

/** One message as a plain AMQP client publishes it. */
export interface RawMessage {
  routingKey: string;
  content: Buffer;
  options?: Options.Publish;
}

/**
 * A plain amqplib publisher with confirms (noDelay), as any service without the SDK would be.
 * `publish` resolves true when RabbitMQ confirmed, false when it nacked or the channel died.
 */
export interface RawPublisher {
  publish(exchange: string, message: RawMessage): Promise<boolean>;
  /** Publishes many with up to `window` unconfirmed; resolves with the indexes RabbitMQ confirmed. */
  publishMany(exchange: string, messages: readonly RawMessage[], window?: number): Promise<boolean[]>;
  close(): Promise<void>;
}

export async function createRawPublisher(url: string): Promise<RawPublisher> {
  const conn: ChannelModel = await connect(url, { noDelay: true });
  conn.on('error', () => undefined);
  const ch: ConfirmChannel = await conn.createConfirmChannel();
  ch.on('error', () => undefined);
  const publish = (exchange: string, m: RawMessage) =>
    new Promise<boolean>((resolve) => {
      try {
        ch.publish(exchange, m.routingKey, m.content, { persistent: true, ...m.options }, (err) => resolve(!err));
      } catch {
        resolve(false);
      }
    });
  return {
    publish,
    async publishMany(exchange, messages, window = 1000) {
      const results: boolean[] = new Array(messages.length).fill(false);
      let next = 0;
      const worker = async () => {
        while (next < messages.length) {
          const i = next++;
          results[i] = await publish(exchange, messages[i] as RawMessage);
        }
      };
      await Promise.all(Array.from({ length: Math.min(window, messages.length) }, worker));
      return results;
    },
    async close() {
      await conn.close().catch(() => undefined);
    },
  };
}

/** `count` event messages from `senders` × `types`, each with a fresh message_id and a body of about `size` bytes. */
export function makeEvents(count: number, options: { senders?: string[]; types?: string[]; size?: number } = {}): RawMessage[] {
  const senders = options.senders ?? ['billing', 'shipping', 'crm', 'auth'];
  const types = options.types ?? ['invoice.paid', 'parcel.sent', 'user.created'];
  const pad = 'x'.repeat(Math.max(0, (options.size ?? 200) - 60));
  const out: RawMessage[] = [];
  for (let i = 0; i < count; i++) {
    const sender = senders[i % senders.length] as string;
    const type = types[Math.floor(i / senders.length) % types.length] as string;
    out.push({
      routingKey: `${sender}.${type}`,
      content: Buffer.from(`{"i":${i},"pad":"${pad}"}`),
      options: { messageId: randomUUID(), contentType: 'application/json', appId: sender, type },
    });
  }
  return out;
}
