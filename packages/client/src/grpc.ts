// @herald/client/grpc: durable subscriptions over the hub's gRPC API. A subpath of its own, so that
// a service that only publishes or consumes through RabbitMQ (`@herald/client`) never loads gRPC.

export type { DurableSubscription, DurableSubscriptionOptions, SubscriptionEvent, SubscriptionStart } from './durable-subscription.ts';
export { errorOfStatus, subscription } from './durable-subscription.ts';
export type { NormalizedDurableSubscription } from './options.ts';
export { grpcUrl, normalizeDurableSubscriptionOptions } from './options.ts';
