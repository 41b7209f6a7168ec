import { type EventInit, TRACEPARENT, TRACESTATE, validTraceContext } from '@herald/core';

/** The part of `@opentelemetry/api` the publisher uses. */
type OpenTelemetryApi = Pick<typeof import('@opentelemetry/api'), 'context' | 'propagation'>;

/** The API once loaded; null when `@opentelemetry/api` is not installed; undefined while loading. */
let api: OpenTelemetryApi | null | undefined;
let loading: Promise<void> | undefined;

/**
 * Loads `@opentelemetry/api` (an optional peer of the SDK) once, on the first call: resolves when
 * it is loaded or known to be absent, never rejects. Publishes wait for it only the first time.
 */
export function loadOpenTelemetry(): Promise<void> {
  loading ??= import('@opentelemetry/api').then(
    (m) => {
      api = m;
    },
    () => {
      api = null;
    },
  );
  return loading;
}

/** True once loadOpenTelemetry() has settled. */
export function openTelemetryLoaded(): boolean {
  return api !== undefined;
}

/**
 * `init` with the active OpenTelemetry context's traceparent and tracestate (the registered
 * propagator's `inject`), unless the publish sets its own or no OpenTelemetry API is loaded. The
 * active context is carried along, not set by name: a malformed value, or a propagator that throws,
 * leaves the event without a trace context rather than failing the publish.
 */
export function withActiveTraceContext(init: EventInit): EventInit {
  if (!api || init.traceparent !== undefined || init.tracestate !== undefined) return init;
  if (init.headers !== undefined && (TRACEPARENT in init.headers || TRACESTATE in init.headers)) return init;
  const carrier: Record<string, unknown> = {};
  try {
    api.propagation.inject(api.context.active(), carrier);
  } catch {
    return init;
  }
  if (carrier[TRACEPARENT] === undefined) return init;
  const trace = validTraceContext(carrier[TRACEPARENT], carrier[TRACESTATE]);
  return trace.traceparent === undefined ? init : { ...init, ...trace };
}
