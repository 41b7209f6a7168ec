// @herald/client: the SDK services import. Everything public is exported here, by name.

export type { DurableSubscription, DurableSubscriptionOptions, SubscriptionEvent, SubscriptionStart } from './durable-subscription.ts';
export { errorOfStatus, subscription } from './durable-subscription.ts';
export type { NormalizedDurableSubscription } from './options.ts';
export {
  DEFAULT_AMQP_URL,
  grpcUrl,
  normalizeDurableSubscriptionOptions,
  normalizePublisherOptions,
  normalizeSubscriberOptions,
} from './options.ts';
export { createPublisher } from './publisher.ts';
export { createSubscriber } from './subscriber.ts';
export type { Subscription } from './subscription.ts';
export { subscribe } from './subscription.ts';
export type { DeclareTopologyOptions } from './topology.ts';
export { declareTopology } from './topology.ts';
export type {
  ConnectionOptions,
  Handler,
  Publisher,
  PublisherOptions,
  PublishOptions,
  PublishReceipt,
  ReceivedEvent,
  Subscriber,
  SubscriberOptions,
} from './types.ts';
