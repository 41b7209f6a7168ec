/**
 * Durable subscriptions (DESIGN.md §1, §3.5): named consumers with a selector and an acknowledged
 * offset kept in the store, one shared in-memory receiver per canonical selector, catch-up from the
 * log and then live, without gap or repeat. See docs/subscriptions.md.
 */

export { receiverQueue } from '../store/index.ts';
export type { SubscriptionManagerOptions } from './manager.ts';
export { createSubscriptionManager } from './manager.ts';
export { assertSubscriptionName, normalizeStart } from './start-position.ts';
export type {
  AttachRequest,
  Consumer,
  DeliveredEvent,
  StartPosition,
  SubscriptionInput,
  SubscriptionManager,
  SubscriptionReplay,
  SubscriptionView,
} from './types.ts';
