/**
 * The catalogue of error codes. Every error Herald raises carries one of these codes; the API edge
 * (REST problem documents, gRPC statuses, dead-letter reasons) maps them in one place.
 */
export const ErrorCodes = {
  /** A sender name breaks the rule `[A-Za-z0-9_-]{1,64}`. */
  INVALID_SENDER: 'INVALID_SENDER',
  /** A type breaks the rule: dotted segments of `[A-Za-z0-9_-]+`, routing key ≤ 255 bytes. */
  INVALID_TYPE: 'INVALID_TYPE',
  /** A selector or one of its patterns cannot be parsed. */
  INVALID_SELECTOR: 'INVALID_SELECTOR',
  /** An event envelope is malformed: a bad id, time, header or a routing key that disagrees. */
  INVALID_EVENT: 'INVALID_EVENT',
  /** An event body is larger than the configured limit. */
  EVENT_TOO_LARGE: 'EVENT_TOO_LARGE',
  /** A configuration value or option is invalid. */
  INVALID_CONFIG: 'INVALID_CONFIG',
  /** A request parameter or body is invalid. */
  INVALID_REQUEST: 'INVALID_REQUEST',
  /** The thing asked for does not exist. */
  NOT_FOUND: 'NOT_FOUND',
  /** The thing to create exists already, or the request conflicts with the current state. */
  CONFLICT: 'CONFLICT',
  /** RabbitMQ refused or lost a publish (nack, closed channel, returned message). */
  PUBLISH_FAILED: 'PUBLISH_FAILED',
  /** The client or hub was closed while the operation was pending. */
  CLOSED: 'CLOSED',
  /** A dependency (RabbitMQ, the database) cannot be reached. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** An operation took longer than allowed. */
  TIMEOUT: 'TIMEOUT',
  /**
   * A configured cap of the hub is reached (pauses, subscriptions, replays, streams, long polls):
   * the message names the cap and its setting. Retry once one is freed (REST 429, gRPC RESOURCE_EXHAUSTED).
   */
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  /** The caller's AbortSignal fired before the operation finished; `cause` is the signal's reason. */
  ABORTED: 'ABORTED',
  /** The request carries no valid credentials: no token, an unknown or revoked one (REST 401, gRPC UNAUTHENTICATED). */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /** The credentials are valid but their roles do not allow this (REST 403, gRPC PERMISSION_DENIED). */
  FORBIDDEN: 'FORBIDDEN',
  /**
   * An event's data does not match the JSON Schema its type has in the event catalog (a dead letter
   * at the hub, whose reason is the validator's; a rejected publish in the SDK, before anything is sent).
   */
  SCHEMA_VIOLATION: 'SCHEMA_VIOLATION',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class of every error Herald raises on purpose: a stable `code`, a message, an optional cause. */
export class HeraldError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable detail: the parameter, field or value that is wrong. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HeraldError';
    this.code = code;
    this.details = options.details;
  }
}

/** Input that breaks a rule of the contract: a name, a selector, an envelope, a request. */
export class ValidationError extends HeraldError {
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, message, options);
    this.name = 'ValidationError';
  }
}

/** True when `err` is a HeraldError with the given code. */
export function hasCode(err: unknown, code: ErrorCode): err is HeraldError {
  return err instanceof HeraldError && err.code === code;
}
