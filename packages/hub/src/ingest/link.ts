import type { Channel, ChannelModel, ConfirmChannel, Message } from 'amqplib';

/** Ingest's link to RabbitMQ: two connections, one generation (a batch of an older one is never acknowledged). */
export interface Link {
  /** Consumes and acknowledges. */
  conn: ChannelModel;
  /** Publishes (dead letters, API events). */
  pubConn: ChannelModel;
  /** Consumes (or gets, while draining) and acknowledges. */
  consumeCh: Channel;
  /** Publishes dead letters and API events, with confirms. */
  pubCh: ConfirmChannel;
  gen: number;
  /** The newest message whose batch is stored (and out) but not yet acknowledged. */
  ackUpTo: Message | undefined;
  /** Messages that ackUpTo covers. */
  unacked: number;
  /** Sends the coalesced ack when the window ends. */
  ackTimer: NodeJS.Timeout | undefined;
}

/**
 * Closes the channels, then the connections: closing the channels first flushes their
 * acknowledgements (a connection close can overtake frames still queued on a channel), so nothing
 * stored is redelivered needlessly. Never rejects.
 */
export async function closeLink(link: Link): Promise<void> {
  await link.consumeCh.close().catch(() => undefined);
  await link.pubCh.close().catch(() => undefined);
  await link.conn.close().catch(() => undefined);
  await link.pubConn.close().catch(() => undefined);
}
