export { parseDuration } from './duration.ts';
export type { AmqpProperties, DeliveredEvent, EventInit, HeraldEvent } from './envelope.ts';
export {
  assertSize,
  bodyJson,
  checkEvent,
  createEvent,
  DEAD_EXCHANGE,
  DEAD_QUEUE,
  DEFAULT_CONTENT_TYPE,
  DEFAULT_MAX_EVENT_BYTES,
  EVENTS_EXCHANGE,
  forwardHeaderBytes,
  fromAmqp,
  Headers,
  INGEST_EXCHANGE,
  isJsonContentType,
  toAmqp,
} from './envelope.ts';
export type { ErrorCode } from './errors.ts';
export { ErrorCodes, HeraldError, hasCode, ValidationError } from './errors.ts';
export type { Limit } from './limits.ts';
export {
  checkEventTime,
  checkText,
  deeperThan,
  isoTime,
  jsonTextDeeperThan,
  LIMITS,
  MAX_OFFSET,
  parseOffset,
  preview,
  textProblem,
} from './limits.ts';
export { assertSender, assertType, isSubscriptionName, MAX_ROUTING_KEY_BYTES, parseRoutingKey, routingKeyOf } from './names.ts';
export type {
  OffsetEvent,
  WireEvent,
  WireLong,
  WireOpen,
  WirePublishAck,
  WirePublishRequest,
  WirePublishResponse,
  WirePublishStreamRequest,
  WirePublishStreamResponse,
  WireStart,
  WireSubscribeRequest,
  WireSubscribeResponse,
} from './proto.ts';
export {
  DEFAULT_GRPC_PORT,
  fromWireEvent,
  GRPC_ERROR_CODE_KEY,
  GRPC_SERVICE,
  PROTO_LOADER_OPTIONS,
  PROTO_PATH,
  toWireEvent,
} from './proto.ts';
export type { Matcher, Pattern, Selector, SelectorInput, SqlPredicate } from './selector.ts';
export {
  bindingKeys,
  compileMatcher,
  exactBindingKeys,
  matches,
  parsePattern,
  parseSelector,
  selectorPatterns,
  sqlPredicate,
} from './selector.ts';
export type { BindingDeclaration, ExchangeDeclaration, HubMode, QueueDeclaration, QueueType, Topology } from './topology.ts';
export {
  ARCHIVE_BINDING,
  DEAD_STORE_QUEUE,
  HUB_MODES,
  QUEUE_TYPES,
  queueTypeArguments,
  RECEIVER_TOPOLOGY,
  wireTopology,
} from './topology.ts';
export type { TraceContext } from './trace-context.ts';
export {
  checkTraceContext,
  joinTraceHeaders,
  splitTraceHeaders,
  TRACEPARENT,
  TRACESTATE,
  traceparentProblem,
  tracestateProblem,
  validTraceContext,
} from './trace-context.ts';
export { redactSecrets, redactUrl } from './url.ts';
export { isUuid, uuidv7 } from './uuid.ts';
