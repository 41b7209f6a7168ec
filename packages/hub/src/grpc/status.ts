import { Metadata, type ServiceError, status as Status } from '@grpc/grpc-js';
import { type ErrorCode, GRPC_ERROR_CODE_KEY, HeraldError } from '@herald/core';

/**
 * Herald error code → gRPC status: the one place the gRPC edge translates errors (STYLE rule 3).
 * Permanent problems of the request are INVALID_ARGUMENT / NOT_FOUND / ALREADY_EXISTS (a client
 * must not retry them); trouble of the hub is UNAVAILABLE (retry with backoff).
 */
export const GRPC_STATUS_OF: Readonly<Record<ErrorCode, Status>> = {
  INVALID_SENDER: Status.INVALID_ARGUMENT,
  INVALID_TYPE: Status.INVALID_ARGUMENT,
  INVALID_SELECTOR: Status.INVALID_ARGUMENT,
  INVALID_EVENT: Status.INVALID_ARGUMENT,
  EVENT_TOO_LARGE: Status.INVALID_ARGUMENT,
  INVALID_CONFIG: Status.INVALID_ARGUMENT,
  INVALID_REQUEST: Status.INVALID_ARGUMENT,
  SCHEMA_VIOLATION: Status.INVALID_ARGUMENT,
  NOT_FOUND: Status.NOT_FOUND,
  // The subscription exists with another selector, or the request conflicts with its state.
  CONFLICT: Status.ALREADY_EXISTS,
  // RabbitMQ refused or lost the publish: nothing was stored, a retry is safe (ids de-duplicate).
  PUBLISH_FAILED: Status.UNAVAILABLE,
  // The hub is stopping: another hub, or this one restarted, will serve the retry.
  CLOSED: Status.UNAVAILABLE,
  UNAVAILABLE: Status.UNAVAILABLE,
  TIMEOUT: Status.DEADLINE_EXCEEDED,
  // A cap of the hub is reached: a retry may fit once one is freed (the SDK retries with backoff).
  LIMIT_EXCEEDED: Status.RESOURCE_EXHAUSTED,
  // Raised only by the SDK, when a caller's AbortSignal fires; never by the hub.
  ABORTED: Status.CANCELLED,
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
  FORBIDDEN: Status.PERMISSION_DENIED,
};

/**
 * The longest `details` a status carries. They travel percent-encoded in the `grpc-message`
 * trailer (up to 9 bytes per character); past what node's HTTP/2 sends in one header block (64 KiB)
 * the trailers never go out, and that call and every later one on the same connection hang to
 * their deadlines (a 50,000-character sender echoed in "invalid sender …" did that).
 */
const MAX_DETAILS_CHARS = 500;

const clip = (details: string) => (details.length > MAX_DETAILS_CHARS ? `${details.slice(0, MAX_DETAILS_CHARS)}…` : details);

/** The status a call ends with: `code`, one-line `details`, and the Herald code in trailing metadata. */
export type GrpcStatus = Pick<ServiceError, 'code' | 'details' | 'metadata'>;

/**
 * Turns anything thrown into the status to end a call with. A HeraldError keeps its message and
 * its code (metadata `herald-code`); anything else is INTERNAL ("internal error: …"): a bug, logged
 * by the caller.
 */
export function toGrpcStatus(err: unknown): GrpcStatus & { internal: boolean } {
  const metadata = new Metadata();
  if (err instanceof HeraldError) {
    metadata.set(GRPC_ERROR_CODE_KEY, err.code);
    return { code: GRPC_STATUS_OF[err.code] ?? Status.UNKNOWN, details: clip(err.message), metadata, internal: false };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: Status.INTERNAL, details: clip(`internal error: ${message}`), metadata, internal: true };
}

/** A HeraldError for a status the server decides itself (not from a thrown error). */
export function heraldStatus(code: ErrorCode, message: string): GrpcStatus {
  return toGrpcStatus(new HeraldError(code, message));
}
