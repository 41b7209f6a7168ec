import type { ChannelModel } from 'amqplib';

/** The part of amqplib's socket (a net.Socket) the batching uses. */
interface CorkableStream {
  cork(): void;
  uncork(): void;
  prependListener(event: 'drain', listener: () => void): unknown;
}

const batchers = new WeakMap<ChannelModel, () => void>();

/**
 * A function to call after publishing: it holds the connection's socket writes until the end of
 * this turn of the event loop, so that the publishes of one turn leave in one `writev` instead of
 * one `write` system call each. amqplib writes every message to the socket separately, and on
 * loopback each write costs the publishing process (and RabbitMQ) a kernel round of its own; the
 * frames, their order and when they leave the process stay as they were. amqplib's multiplexer
 * writes until the socket's buffer is full and refills it on 'drain': the refill is held the same
 * way. Undefined when the connection has no such socket (nothing is batched then).
 */
export function writeBatcher(model: ChannelModel): (() => void) | undefined {
  const known = batchers.get(model);
  if (known) return known;
  const stream = (model as unknown as { connection?: { stream?: Partial<CorkableStream> } }).connection?.stream;
  if (typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function' || typeof stream.prependListener !== 'function')
    return undefined;
  const socket = stream as CorkableStream;
  let held = false;
  const release = () => {
    held = false;
    socket.uncork();
  };
  const hold = () => {
    if (held) return;
    held = true;
    socket.cork();
    // amqplib's multiplexer writes in a setImmediate scheduled from a nextTick of the publish:
    // this one, scheduled the same way but later, runs after it.
    process.nextTick(setImmediate, release);
  };
  socket.prependListener('drain', hold);
  batchers.set(model, hold);
  return hold;
}
