import { fileURLToPath } from 'node:url';
import type { DeliveredEvent, HeraldEvent } from './envelope.ts';

/**
 * The gRPC API's contract, `herald.v1.Herald`: the path of the .proto file and the TypeScript shapes
 * of its messages as @grpc/proto-loader hands them over with PROTO_LOADER_OPTIONS (camelCase field
 * names, 64-bit integers as decimal strings so no offset loses precision, bytes as Buffers). The hub
 * and the SDK both load the proto from here, so they cannot disagree.
 */

/** Absolute path of `herald/v1/herald.proto` (in this package's `proto/` folder). */
export const PROTO_PATH: string = fileURLToPath(new URL('../proto/herald/v1/herald.proto', import.meta.url));

/** The fully qualified service name. */
export const GRPC_SERVICE = 'herald.v1.Herald';

/** The trailing metadata key carrying Herald's error code (ErrorCodes) next to the gRPC status. */
export const GRPC_ERROR_CODE_KEY = 'herald-code';

/** The gRPC port when HERALD_GRPC_PORT does not say otherwise. */
export const DEFAULT_GRPC_PORT = 50051;

/** Options for `protoLoader.load(PROTO_PATH, PROTO_LOADER_OPTIONS)`; the wire types below assume them. */
export const PROTO_LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
} as const;

/** A 64-bit integer on the wire: proto-loader reads it as a decimal string and writes a string or a number. */
export type WireLong = string;

/** `herald.v1.Event`. */
export interface WireEvent {
  offset: WireLong;
  id: string;
  sender: string;
  type: string;
  timeMs: WireLong;
  data: Buffer;
  contentType: string;
  subject?: string | undefined;
  correlationId?: string | undefined;
  causationId?: string | undefined;
  headers: Record<string, string>;
  replay?: string | undefined;
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** `herald.v1.PublishRequest`. */
export interface WirePublishRequest {
  id?: string | undefined;
  sender: string;
  type: string;
  data: Buffer;
  contentType?: string | undefined;
  timeMs?: WireLong | undefined;
  subject?: string | undefined;
  correlationId?: string | undefined;
  causationId?: string | undefined;
  headers: Record<string, string>;
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** `herald.v1.PublishResponse`. */
export interface WirePublishResponse {
  id: string;
}

/** `herald.v1.PublishStreamRequest`. */
export interface WirePublishStreamRequest {
  seq: WireLong;
  events: WirePublishRequest[];
}

/** `herald.v1.PublishStreamResponse.Ack`: one event's outcome (exactly one of stored, duplicate, refused). */
export interface WirePublishAck {
  seq: WireLong;
  id: string;
  stored?: { offset?: WireLong | undefined } | null | undefined;
  duplicate?: { offset?: WireLong | undefined } | null | undefined;
  refused?: { code: string; message: string } | null | undefined;
  /** Which one is set (proto-loader's `oneofs: true`). */
  outcome?: 'stored' | 'duplicate' | 'refused';
}

/** `herald.v1.PublishStreamResponse`. */
export interface WirePublishStreamResponse {
  acks: WirePublishAck[];
}

/** `herald.v1.Start`: one of the positions (none = resume). */
export interface WireStart {
  resume?: boolean;
  new?: boolean;
  earliest?: boolean;
  offset?: WireLong;
  timeMs?: WireLong;
  last?: number;
  /** Which one is set (proto-loader's `oneofs: true`). */
  position?: 'resume' | 'new' | 'earliest' | 'offset' | 'timeMs' | 'last';
}

/** `herald.v1.SubscribeRequest.Open`. */
export interface WireOpen {
  name: string;
  selector: string[];
  start?: WireStart | null | undefined;
  maxInFlight: number;
}

/** `herald.v1.SubscribeRequest`. */
export interface WireSubscribeRequest {
  open?: WireOpen | null | undefined;
  ack?: { offset: WireLong } | null | undefined;
  kind?: 'open' | 'ack';
}

/** `herald.v1.SubscribeResponse`. */
export interface WireSubscribeResponse {
  opened?: { subscription: string; ackedOffset: WireLong; state: string } | null | undefined;
  events?: { events: WireEvent[] } | null | undefined;
  kind?: 'opened' | 'events';
}

/** An event with its offset as a subscription delivers it (hub side: a stored event). */
export type OffsetEvent = HeraldEvent & { readonly offset: bigint; readonly replay?: string | undefined };

/** The wire form of a delivered event. Optional fields absent stay absent. */
export function toWireEvent(event: OffsetEvent): WireEvent {
  const wire: WireEvent = {
    offset: event.offset.toString(),
    id: event.id,
    sender: event.sender,
    type: event.type,
    timeMs: String(event.time),
    data: event.data,
    contentType: event.contentType,
    headers: event.headers,
  };
  if (event.subject !== undefined) wire.subject = event.subject;
  if (event.correlationId !== undefined) wire.correlationId = event.correlationId;
  if (event.causationId !== undefined) wire.causationId = event.causationId;
  if (event.replay !== undefined) wire.replay = event.replay;
  if (event.traceparent !== undefined) wire.traceparent = event.traceparent;
  if (event.tracestate !== undefined) wire.tracestate = event.tracestate;
  return wire;
}

/** An event read from the wire; `offset` is exact (a bigint from the decimal string). */
export function fromWireEvent(wire: WireEvent): DeliveredEvent & { readonly offset: bigint } {
  return {
    offset: BigInt(wire.offset),
    id: wire.id,
    sender: wire.sender,
    type: wire.type,
    time: Number(wire.timeMs),
    data: wire.data,
    contentType: wire.contentType,
    subject: wire.subject ?? undefined,
    correlationId: wire.correlationId ?? undefined,
    causationId: wire.causationId ?? undefined,
    headers: wire.headers ?? {},
    replay: wire.replay ?? undefined,
    traceparent: wire.traceparent ?? undefined,
    tracestate: wire.tracestate ?? undefined,
  };
}
