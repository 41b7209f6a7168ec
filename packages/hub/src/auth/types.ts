import type { Selector } from '@herald/core';

/**
 * What a user may do (DESIGN.md §8). A user holds one or more roles; what it may do is the union.
 * - `admin`: everything, including users, pauses, replays and every subscription.
 * - `publisher`: publish as one of `senders`.
 * - `subscriber`: read events inside `selector` (the log, durable subscriptions over REST, SSE and
 *   gRPC): a request is allowed when each pattern it asks for lies inside one of these patterns.
 */
export type Role =
  | { readonly role: 'admin' }
  | { readonly role: 'publisher'; readonly senders: readonly string[] }
  | { readonly role: 'subscriber'; readonly selector: Selector };

/** A user as the store keeps it, without any secret. */
export interface User {
  /** `[A-Za-z0-9_.-]{1,64}`, unique. */
  readonly name: string;
  readonly roles: readonly Role[];
  /** Epoch ms. */
  readonly createdAt: number;
  /** The RabbitMQ user the hub made for it (HERALD_RABBITMQ_API), if any. */
  readonly amqpUsername: string | undefined;
}

/** An API token as listed: never the secret, which exists only in the answer that created it. */
export interface TokenInfo {
  /** A UUIDv7. */
  readonly id: string;
  readonly user: string;
  /** `[A-Za-z0-9_.-]{1,64}`, unique per user. */
  readonly name: string;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms of the last request it authenticated (updated at most once a minute), else undefined. */
  readonly lastUsedAt: number | undefined;
}

/**
 * Who a request is. `anonymous` stands for every request while authentication is off (a loopback
 * hub under HERALD_AUTH=auto, or HERALD_AUTH=off): it may do everything an admin may. `bootstrap`
 * is HERALD_ADMIN_TOKEN: an admin that is not a user of the store.
 */
export type Principal =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'bootstrap' }
  | { readonly kind: 'user'; readonly user: User; readonly tokenId: string };
