import { ErrorCodes, HeraldError, redactUrl } from '@herald/core';
import { type ChannelModel, connect, type RecoveringChannelModel } from 'amqplib';

import type { NormalizedConnection } from './options.ts';

/** What a client does as its connection comes and goes. */
export interface ConnectionHooks {
  /** A connection is up (the first, or one after an outage): open channels and consumers on it. */
  onConnect(model: ChannelModel): void;
  /**
   * Something worth telling the user that is not a single operation's failure (UNAVAILABLE): the
   * connection was lost (its channels are closed already; recovery is under way), or an attempt
   * to connect failed.
   */
  report(err: HeraldError): void;
}

/** A connection that recovers by itself, with backoff, until closed. */
export interface ManagedConnection {
  /** The connection currently up, or undefined during an outage. */
  readonly current: ChannelModel | undefined;
  /** Stops recovering and closes the connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens a connection with amqplib's built-in recovery. amqplib reconnects (backoff with jitter,
 * forever) but recovers no channels, so `hooks.onConnect` runs on every connect to rebuild them.
 * Always `noDelay`: with Nagle on, a confirm waits for the next packet and latency doubles.
 */
export function openConnection(settings: NormalizedConnection, hooks: ConnectionHooks): ManagedConnection {
  let current: ChannelModel | undefined;
  let closed = false;
  const recovering: Promise<RecoveringChannelModel> = connect(settings.url, {
    noDelay: true,
    clientProperties: { connection_name: settings.connectionName },
    recovery: {
      initialDelay: settings.reconnectInitialDelayMs,
      maxDelay: settings.reconnectMaxDelayMs,
      maxRetries: Number.POSITIVE_INFINITY,
      waitForConnect: false,
    },
  }).then((model) => {
    model.on('connect', (m: ChannelModel) => {
      current = m;
      hooks.onConnect(m);
    });
    const failed = (err: Error) =>
      hooks.report(new HeraldError(ErrorCodes.UNAVAILABLE, `RabbitMQ at ${redactUrl(settings.url)}: ${err.message}`, { cause: err }));
    model.on('disconnect', (err: Error) => {
      current = undefined;
      hooks.report(new HeraldError(ErrorCodes.UNAVAILABLE, `lost RabbitMQ connection: ${err.message}`, { cause: err }));
    });
    model.on('connect-failed', failed);
    // Without a listener an 'error' event would throw; amqplib follows it with 'disconnect'.
    model.on('error', failed);
    return model;
  });
  return {
    get current() {
      return current;
    },
    async close() {
      if (closed) return;
      closed = true;
      current = undefined;
      await (await recovering).close();
    },
  };
}

/** Runs `fn` after `ms` unless the process would otherwise exit: retries must not keep it alive. */
export function later(ms: number, fn: () => void): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref?.();
  return t;
}
