import type * as grpc from '@grpc/grpc-js';
import { createEvent, ErrorCodes, type HeraldEvent, type WirePublishRequest } from '@herald/core';
import type { Auth } from '../auth/auth.ts';
import type { Principal } from '../auth/types.ts';
import { type GrpcStatus, heraldStatus } from './status.ts';

// What the handlers read of a call: its caller, its decoded requests, the event of a PublishRequest.

/**
 * A request whose protobuf bytes do not decode (cut short, garbled). grpc-js would end the call
 * with INTERNAL, which says the hub failed and invites a retry of the same bytes; the handlers
 * answer INVALID_ARGUMENT (INVALID_REQUEST) instead.
 */
export class Undecodable {
  constructor(readonly reason: string) {}
}

/** `service` with request decoders that return an Undecodable instead of throwing; `custom` replaces a method's decoder. */
export function tolerantDecoding(
  service: grpc.ServiceDefinition,
  custom: Record<string, (bytes: Buffer) => unknown> = {},
): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = custom[name] ?? method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          return new Undecodable(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

export const undecodableStatus = (what: string, u: Undecodable): GrpcStatus =>
  heraldStatus(ErrorCodes.INVALID_REQUEST, `the ${what} message is not valid protobuf for herald.v1: ${u.reason.slice(0, 200)}`);

/**
 * The event a PublishRequest stands for, checked as every publish is (sender, type, id, time,
 * headers, trace context, `maxEventBytes`); throws a ValidationError. The caller checks first that
 * the principal may publish as the sender.
 */
export function eventOfRequest(r: WirePublishRequest, maxEventBytes: number): HeraldEvent {
  return createEvent(
    {
      id: r.id || undefined,
      sender: r.sender,
      type: r.type,
      data: r.data,
      contentType: r.contentType || undefined,
      time: r.timeMs === undefined ? undefined : Number(r.timeMs),
      subject: r.subject,
      correlationId: r.correlationId,
      causationId: r.causationId,
      headers: r.headers,
      traceparent: r.traceparent,
      tracestate: r.tracestate,
    },
    { maxBytes: maxEventBytes },
  );
}

/** The client address of a call, `ipv4:127.0.0.1:5555` → `127.0.0.1`, for the failed-authentication limit. */
function clientOf(call: { getPeer(): string }): string {
  return call
    .getPeer()
    .replace(/^ipv[46]:/, '')
    .replace(/:\d+$/, '')
    .replace(/^\[|\]$/g, '');
}

/** Who makes a call: from its `authorization` metadata. Rejects UNAUTHENTICATED (or LIMIT_EXCEEDED after too many failures). */
export function principalOfCall(auth: Auth, call: { metadata: grpc.Metadata; getPeer(): string }): Promise<Principal> {
  const value = call.metadata.get('authorization')[0];
  return auth.authenticate(typeof value === 'string' ? value : undefined, clientOf(call));
}
