import { isUtf8 } from 'node:buffer';
import { ErrorCodes, ValidationError } from './errors.ts';
import { LIMITS, preview } from './limits.ts';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) on an event: `traceparent` and
 * `tracestate` travel as AMQP headers of those names, from the publisher through the log to every
 * consumer. Two rules, one per way a trace context arrives:
 * - set by name (the SDK's publish option, a REST or gRPC field, a CloudEvent attribute): checked,
 *   and a bad one refuses the event with INVALID_EVENT naming the field (`checkTraceContext`);
 * - carried along (an AMQP header at ingest or delivery, an HTTP request's own headers, the active
 *   OpenTelemetry context): a bad one is dropped, as the W3C rules say a receiver does, and the event
 *   goes on without it (`validTraceContext`). A bad trace header alone never dead-letters an event.
 */

/** The AMQP header names (and the names everywhere else) of the trace context. */
export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

/** A trace context: both optional; a tracestate only ever comes with a traceparent. */
export interface TraceContext {
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** Version 00: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase. */
const TRACEPARENT_FORMAT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_PARENT_ID = '0'.repeat(16);
/** One tracestate list member: a key (`vendor` or `tenant@vendor`) and a value of printable ASCII but `,` and `=`. */
const TRACESTATE_MEMBER = /^[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
/** The W3C limit on list members. */
const TRACESTATE_MEMBERS = 32;

/** Why `value` is not a traceparent, or undefined when it is one. */
export function traceparentProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string, got ${value === null ? 'null' : typeof value}`;
  if (value.length !== 55 || !TRACEPARENT_FORMAT.test(value))
    return `${preview(value)} is not 00-<32 hex digits>-<16 hex digits>-<2 hex digits> (lowercase)`;
  if (value.startsWith(ZERO_TRACE_ID, 3)) return 'its trace id is all zeros';
  if (value.startsWith(ZERO_PARENT_ID, 36)) return 'its parent id is all zeros';
  return undefined;
}

/** Why `value` is not a tracestate, or undefined when it is one. */
export function tracestateProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string, got ${value === null ? 'null' : typeof value}`;
  const max = LIMITS.tracestateBytes.value;
  if (value.length > max) return `must be at most ${max} bytes, got ${Buffer.byteLength(value)}`;
  if (!/^[\x20-\x7e]*$/.test(value)) return 'must be printable ASCII';
  const members = value.split(',');
  if (members.length > TRACESTATE_MEMBERS) return `must have at most ${TRACESTATE_MEMBERS} list members, got ${members.length}`;
  for (const member of members) {
    const m = member.trim();
    if (m !== '' && !TRACESTATE_MEMBER.test(m)) return `list member ${preview(m)} is not key=value`;
  }
  return undefined;
}

function refuse(field: string, problem: string): never {
  throw new ValidationError(ErrorCodes.INVALID_EVENT, `invalid ${field}: ${problem}`, { details: { parameter: field } });
}

/** The rule for a trace context set by name: throws INVALID_EVENT naming the bad field. */
export function checkTraceContext(trace: TraceContext): void {
  if (trace.traceparent !== undefined) {
    const problem = traceparentProblem(trace.traceparent);
    if (problem !== undefined) refuse(TRACEPARENT, problem);
  }
  if (trace.tracestate !== undefined) {
    if (trace.traceparent === undefined) refuse(TRACESTATE, 'a tracestate needs a traceparent');
    const problem = tracestateProblem(trace.tracestate);
    if (problem !== undefined) refuse(TRACESTATE, problem);
  }
}

/** A header value as text when it is ASCII text (a string, or bytes amqplib handed over); else undefined. */
function asText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value) && value.length <= 1024 && isUtf8(value)) return value.toString('utf8');
  return undefined;
}

/**
 * The rule for a trace context carried along: the valid parts of `traceparent` and `tracestate`
 * (strings or bytes of any origin), the rest dropped. A tracestate without a valid traceparent is
 * dropped too. Never throws.
 */
export function validTraceContext(traceparent: unknown, tracestate: unknown): TraceContext {
  const parent = asText(traceparent);
  if (parent === undefined || traceparentProblem(parent) !== undefined) return {};
  const state = asText(tracestate);
  // W3C: an empty tracestate is the same as none.
  if (state === undefined || state.trim() === '' || tracestateProblem(state) !== undefined) return { traceparent: parent };
  return { traceparent: parent, tracestate: state };
}

/**
 * Headers with the trace context taken out, and that trace context (carried along: invalid parts
 * dropped), for a log written with the trace context among its headers.
 */
export function splitTraceHeaders(headers: Record<string, string>): { headers: Record<string, string> } & TraceContext {
  if (!(TRACEPARENT in headers) && !(TRACESTATE in headers)) return { headers };
  const { [TRACEPARENT]: traceparent, [TRACESTATE]: tracestate, ...rest } = headers;
  return { headers: rest, ...validTraceContext(traceparent, tracestate) };
}

/** An event's headers with its trace context among them, as the log keeps them (the reverse of splitTraceHeaders). */
export function joinTraceHeaders(
  event: { readonly headers: Readonly<Record<string, string>> } & TraceContext,
): Readonly<Record<string, string>> {
  if (event.traceparent === undefined) return event.headers;
  const out: Record<string, string> = { ...event.headers, [TRACEPARENT]: event.traceparent };
  if (event.tracestate !== undefined) out[TRACESTATE] = event.tracestate;
  return out;
}
