export { bootstrapAdmin } from './auth/bootstrap.ts';
export type { HubConfig, HubMode, HubOptions } from './config/index.ts';
export { normalizeConfig, redactUrl } from './config/index.ts';
export { DISPATCHED_KEY } from './dispatcher/index.ts';
export type { EventPathStats as IngestStats } from './event-path.ts';
export type { Hub, HubState } from './hub.ts';
export { createHub } from './hub.ts';
export { ARCHIVE_QUEUE, ROUTER_QUEUE } from './ingest/index.ts';
export { openStore } from './store/index.ts';
export type { AppendResult, DeadLetter, EventQuery, Store, StoredEvent } from './store/types.ts';
export type {
  AttachRequest,
  Consumer,
  DeliveredEvent,
  StartPosition,
  SubscriptionInput,
  SubscriptionManager,
  SubscriptionManagerOptions,
  SubscriptionView,
} from './subscriptions/index.ts';
export { createSubscriptionManager } from './subscriptions/index.ts';
