import type { FastifyInstance } from 'fastify';
import type { SubscriptionManager } from '../subscriptions/types.ts';

/** What the subscription routes need from the hub. */
export interface SubscriptionRoutesDeps {
  /** The manager; undefined on a standby hub, in archive mode, or while stopping (then 503/409). */
  manager: () => SubscriptionManager | undefined;
  /** `archive` makes the answer 409 rather than 503. */
  mode: string;
}

/** `/api/v1/subscriptions`: create, list, get, delete, pull, ack, SSE stream. */
export function subscriptionsRoutes(_app: FastifyInstance, _deps: SubscriptionRoutesDeps): void {
  // filled in by the HTTP subscriptions work
}
