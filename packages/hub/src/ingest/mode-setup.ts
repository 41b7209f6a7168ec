import { EVENTS_EXCHANGE, INGEST_EXCHANGE } from '@herald/core';
import type { Channel, ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import type { HubConfig } from '../config/index.ts';
import type { StoredEvent } from '../store/types.ts';
import { onBroker } from './steps.ts';
import { ALL, ARCHIVE_QUEUE, declareArchive, declareRouterQueue, ROUTER_QUEUE, removeArchiveBinding } from './topology.ts';
import { errText } from './unreachable.ts';

/**
 * Where ingest hands what it stored: the dispatcher's flow to `herald.events` (dispatcher/flow.ts),
 * in router mode, and in archive mode while it finishes what router mode left.
 */
export interface IngestOutlet {
  /**
   * A run just stored (ascending offsets, newer than any run before). Resolves once it is out
   * (confirmed on herald.events, or held by a pause), at once when not forwarding; ingest
   * acknowledges the run's messages only then. Rejects only when the outlet stops first.
   */
  appended(events: readonly StoredEvent[]): Promise<void>;
  /** The highest offset dispatched to herald.events (or held); undefined when not forwarding. */
  horizon(): bigint | undefined;
  /** Finishes forwarding what the log holds, then forwards nothing until resume() or moveTo() (the checkpoint stays). */
  suspend(): Promise<void>;
  /** After suspend(): forwarding resumes above everything appended meanwhile; the checkpoint is written at once. */
  resume(): Promise<void>;
  /** Forwarding resumes after `offset`; the checkpoint is written at once. */
  moveTo(offset: bigint): Promise<void>;
  /** Finishes forwarding what the log holds, stops, and clears the checkpoint (archive mode). */
  clear(): Promise<void>;
  /** The log may hold events never handed over (a commit whose answer was lost): forward up to its head. */
  recheckHead(): void;
}

/** What the mode setup works with: the consuming connection, the outlet, and ingest's own drain. */
export interface ModeContext {
  readonly config: HubConfig;
  readonly log: Logger;
  readonly conn: ChannelModel;
  readonly ch: Channel;
  readonly outlet: IngestOutlet | undefined;
  /** The head of the log as ingest knows it (read from the store the first time). */
  head(): Promise<bigint>;
  /** Takes every message of `queue` through the ingest pipeline; resolves with how many. */
  drain(queue: string): Promise<number>;
}

/**
 * Router: queue herald.ingest is bound before the archive binding is removed, so no message falls
 * between the two; a herald.store queue left by archive mode is unbound, drained into the log
 * (those events were delivered already: not forwarded again) and deleted once empty.
 */
export async function setupRouter(m: ModeContext): Promise<void> {
  await onBroker(() => declareRouterQueue(m.ch, m.config.queueType));
  await onBroker(() => removeArchiveBinding(m.ch));
  const { outlet } = m;
  if (await queueExists(m.conn, ARCHIVE_QUEUE)) {
    await onBroker(() => m.ch.unbindQueue(ARCHIVE_QUEUE, EVENTS_EXCHANGE, ALL));
    // Drained events were delivered by the archive binding: not forwarded again. Nothing else is
    // appended meanwhile (ingest does not consume yet, and refuses the direct path during setup).
    // A drain cut short resumes too: what it took was delivered, the rest is left to the next setup.
    await outlet?.suspend();
    let n = 0;
    try {
      n = await m.drain(ARCHIVE_QUEUE);
    } finally {
      await outlet?.resume();
    }
    await deleteIfEmpty(m, ARCHIVE_QUEUE, n);
  }
  if (outlet && outlet.horizon() === undefined) await outlet.moveTo(await m.head());
}

/**
 * Archive: herald.store is bound, then the exchange-to-exchange binding added; a herald.ingest
 * queue left by router mode is unbound, drained with router semantics (stored, then forwarded
 * with offsets, since nothing delivered them yet) and deleted once empty. Messages published in
 * the instant between binding and unbinding may be delivered twice (at least once). Then the
 * router checkpoint is cleared.
 */
export async function setupArchive(m: ModeContext): Promise<void> {
  await onBroker(() => declareArchive(m.ch, m.config.queueType));
  const { outlet } = m;
  if (await queueExists(m.conn, ROUTER_QUEUE)) {
    if (outlet && outlet.horizon() === undefined) await outlet.moveTo(await m.head());
    await onBroker(() => m.ch.unbindQueue(ROUTER_QUEUE, INGEST_EXCHANGE, ALL));
    const n = await m.drain(ROUTER_QUEUE);
    await deleteIfEmpty(m, ROUTER_QUEUE, n);
  }
  await outlet?.clear();
}

async function queueExists(conn: ChannelModel, queue: string): Promise<boolean> {
  // A passive declare of a missing queue closes the channel: use a throwaway one.
  const ch = await onBroker(() => conn.createChannel());
  ch.on('error', () => undefined);
  try {
    await ch.checkQueue(queue);
    return true;
  } catch {
    return false;
  } finally {
    await ch.close().catch(() => undefined);
  }
}

async function deleteIfEmpty(m: ModeContext, queue: string, drained: number): Promise<void> {
  const ch = await onBroker(() => m.conn.createChannel());
  ch.on('error', () => undefined);
  try {
    await ch.deleteQueue(queue, { ifEmpty: true, ifUnused: true });
    m.log.info({ queue, drained }, 'moved the other mode’s queue into the log and deleted it');
  } catch (err) {
    m.log.warn({ queue, err: errText(err) }, 'could not delete the other mode’s queue (not empty or in use); will drain it on next start');
  } finally {
    await ch.close().catch(() => undefined);
  }
}
