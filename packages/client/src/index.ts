// @herald/client: the SDK services import. Everything public is exported here, by name.

// Durable subscriptions over gRPC are in `@herald/client/grpc` (./grpc.ts), so that importing this
// entry never loads gRPC.
export { DEFAULT_AMQP_URL, normalizePublisherOptions, normalizeSubscriberOptions } from './options.ts';
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
