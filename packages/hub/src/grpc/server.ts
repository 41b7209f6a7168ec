import type { HeraldEvent } from '@herald/core';
import type { Logger } from 'pino';
import type { SubscriptionManager } from '../subscriptions/types.ts';

/** What the gRPC server needs from the hub. */
export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The manager; undefined on a standby hub, in archive mode, or while stopping (UNAVAILABLE / FAILED_PRECONDITION). */
  manager: () => SubscriptionManager | undefined;
  /** Publishes to herald.ingest and resolves once RabbitMQ confirmed it. */
  publish: (event: HeraldEvent) => Promise<void>;
  logger: Logger;
}

/** The `herald.v1.Herald` service. */
export interface GrpcServer {
  /** Binds and serves; resolves with the bound port. Rejects UNAVAILABLE naming the address when it cannot bind. */
  start(): Promise<{ port: number }>;
  /** Ends open streams (consumers detach, their subscriptions sleep) and stops. Idempotent. */
  stop(): Promise<void>;
}

export function createGrpcServer(_options: GrpcServerOptions): GrpcServer {
  return {
    async start() {
      return { port: 0 };
    },
    async stop() {},
  };
}
