// @herald/client: the SDK services import. Everything public is exported here, by name.

// The error classes and codes every SDK call rejects with, so a service needs no second import.
export { type ErrorCode, ErrorCodes, HeraldError, hasCode, ValidationError } from '@herald/core';
export type { CatalogEntry, CatalogEntryVersion } from './catalog-entries.ts';
export { putCatalogEntries } from './catalog-entries.ts';
// Durable subscriptions over gRPC are in `@herald/client/grpc` (./grpc.ts), so that importing this
// entry never loads gRPC.
// createHubPublisher publishes over the hub's gRPC PublishStream; it loads gRPC at its first publish.
export type { HubPublisher, HubPublisherOptions, HubPublishReceipt } from './hub-publisher.ts';
export { createHubPublisher } from './hub-publisher.ts';
export type { NormalizedHubPublisher } from './options.ts';
export { DEFAULT_AMQP_URL, normalizeHubPublisherOptions, normalizePublisherOptions, normalizeSubscriberOptions } from './options.ts';
export { payloadOf } from './payload.ts';
export { createPublisher } from './publisher.ts';
export { createSubscriber } from './subscriber.ts';
export type { Subscription } from './subscription.ts';
export { subscribe } from './subscription.ts';
export type { DeclareTopologyOptions } from './topology.ts';
export { declareTopology } from './topology.ts';
export type {
  AnyEvents,
  ConnectionOptions,
  EventMap,
  EventOf,
  Handler,
  PublishArgs,
  Publisher,
  PublisherOptions,
  PublishOptions,
  PublishReceipt,
  ReceivedEvent,
  Subscriber,
  SubscriberOptions,
} from './types.ts';
export type { CatalogSource, JsonSchema, PublishValidator } from './validation.ts';
export { loadCatalogSchemas, schemaValidator } from './validation.ts';
