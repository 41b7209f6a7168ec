import { AsyncLocalStorage } from 'node:async_hooks';
import type { Context, ContextManager, TextMapPropagator } from '@opentelemetry/api';

/** What a test traces with: run `fn` inside a context whose propagator injects this trace context. */
export interface TestTracing {
  inTrace<T>(traceparent: string, tracestate: string | undefined, fn: () => T): T;
  /** Unregisters the context manager and the propagator. */
  disable(): void;
}

/**
 * Registers, as a service would, a context manager and a text-map propagator on @opentelemetry/api
 * (loaded here, when a test asks: it is an optional peer of the SDK). OpenTelemetry's own W3C
 * propagator and AsyncLocalStorage context manager are in packages that are not installed
 * (@opentelemetry/core, @opentelemetry/context-async-hooks), so these are the smallest real ones:
 * the context lives in an AsyncLocalStorage, and the propagator injects the traceparent and
 * tracestate the context holds, as they are (malformed ones included, to test what the SDK does).
 */
export async function registerTestTracing(): Promise<TestTracing> {
  const { context, createContextKey, propagation, ROOT_CONTEXT } = await import('@opentelemetry/api');
  const key = createContextKey('herald test trace context');
  const als = new AsyncLocalStorage<Context>();
  const manager: ContextManager = {
    active: () => als.getStore() ?? ROOT_CONTEXT,
    with: (ctx, fn, thisArg, ...args) => als.run(ctx, () => fn.apply(thisArg, args)),
    bind: (_ctx, target) => target,
    enable() {
      return this;
    },
    disable() {
      return this;
    },
  };
  const propagator: TextMapPropagator = {
    inject(ctx, carrier, setter) {
      const v = ctx.getValue(key) as { traceparent: string; tracestate?: string } | undefined;
      if (v === undefined) return;
      setter.set(carrier, 'traceparent', v.traceparent);
      if (v.tracestate !== undefined) setter.set(carrier, 'tracestate', v.tracestate);
    },
    extract: (ctx) => ctx,
    fields: () => ['traceparent', 'tracestate'],
  };
  context.setGlobalContextManager(manager);
  propagation.setGlobalPropagator(propagator);
  return {
    inTrace: (traceparent, tracestate, fn) => context.with(ROOT_CONTEXT.setValue(key, { traceparent, tracestate }), fn),
    disable: () => {
      context.disable();
      propagation.disable();
    },
  };
}
