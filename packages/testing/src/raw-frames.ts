import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { connect } from 'amqplib';

// amqplib's encoders, to write a publish whose header table amqplib itself would refuse to encode.
const require = createRequire(import.meta.url);
const amqplibDir = dirname(require.resolve('amqplib'));
const codec = require(join(amqplibDir, 'lib/codec.js')) as { encodeTable(buf: Buffer, table: unknown, offset: number): number };
const defs = require(join(amqplibDir, 'lib/defs.js')) as {
  BasicPublish: number;
  encodeMethod(id: number, ch: number, fields: unknown): Buffer;
};

/**
 * Publishes one persistent message to `exchange` with a header table of any size (RabbitMQ takes
 * up to its frame_max, 128 KiB), writing the frames on an amqplib connection's socket: amqplib
 * refuses to encode a table over 64 KiB. Resolves once RabbitMQ answered a round trip after it.
 */
export async function publishWithHugeHeaders(
  url: string,
  exchange: string,
  routingKey: string,
  headers: Record<string, unknown>,
  messageId: string,
  body: Buffer = Buffer.from('{}'),
): Promise<void> {
  const conn = await connect(url);
  try {
    const ch = await conn.createChannel();
    const channel = (ch as unknown as { ch: number }).ch;
    const socket = (conn as unknown as { connection: { stream: Socket } }).connection.stream;
    const method = defs.encodeMethod(defs.BasicPublish, channel, { ticket: 0, exchange, routingKey, mandatory: false, immediate: false });
    const scratch = Buffer.alloc(1 << 20);
    const tableLen = codec.encodeTable(scratch, headers, 0);
    const id = Buffer.from(messageId);
    // Content header payload: class 60, weight 0, body size, flags (headers, delivery mode, message id).
    const payload = Buffer.alloc(2 + 2 + 8 + 2 + tableLen + 1 + 1 + id.length);
    let o = payload.writeUInt16BE(60, 0);
    o = payload.writeUInt16BE(0, o);
    o = payload.writeBigUInt64BE(BigInt(body.length), o);
    o = payload.writeUInt16BE(0x2000 | 0x1000 | 0x0080, o);
    o += scratch.copy(payload, o, 0, tableLen);
    o = payload.writeUInt8(2, o);
    o = payload.writeUInt8(id.length, o);
    id.copy(payload, o);
    const frame = (type: number, p: Buffer) => {
      const f = Buffer.alloc(7 + p.length + 1);
      f.writeUInt8(type, 0);
      f.writeUInt16BE(channel, 1);
      f.writeUInt32BE(p.length, 3);
      p.copy(f, 7);
      f.writeUInt8(0xce, 7 + p.length);
      return f;
    };
    socket.write(Buffer.concat([method, frame(2, payload), frame(3, body)]));
    // A synchronous method after it on the same channel: RabbitMQ has taken the publish by then.
    await ch.checkExchange(exchange);
    await ch.close();
  } finally {
    await conn.close().catch(() => undefined);
  }
}
