import { redactSecrets } from '@herald/core';
import { type DestinationStream, type Logger, pino } from 'pino';
import { isPretty, type LogFormat, prettyDestination } from './log-format.ts';

/** How deep a logged object is searched for secrets: the hub's log lines are shallow. */
const MAX_DEPTH = 4;

/**
 * A copy of `value` with every password in its strings redacted (redactSecrets): strings, arrays,
 * plain objects and errors (their message, stack and cause), to MAX_DEPTH. An Error becomes what
 * pino's error serializer would print: type, message, stack and its own fields.
 */
function redacted(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (typeof value !== 'object' || value === null || depth >= MAX_DEPTH) return value;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: redactSecrets(value.message) };
    if (value.stack !== undefined) out.stack = redactSecrets(value.stack);
    for (const [k, v] of Object.entries(value)) out[k] = redacted(v, depth + 1);
    if (value.cause !== undefined) out.cause = redacted(value.cause, depth + 1);
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => redacted(v, depth + 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redacted(v, depth + 1);
  return out;
}

/**
 * The hub's logger: JSON lines (pino) in which no password of a URL (or a `password=` parameter)
 * ever appears, whichever part of the hub or of a driver wrote the text: every argument of every
 * log call is redacted before it is written. Levels below `level` cost nothing (pino skips them
 * before this hook). With no destination, `format` decides what goes to stdout: JSON, or readable
 * lines (log-format.ts; `auto`: on a terminal).
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = 'json'): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'herald-hub' },
    hooks: {
      logMethod(args, method) {
        return method.apply(this, args.map((a) => redacted(a, 0)) as Parameters<typeof method>);
      },
    },
  };
  if (destination) return pino(options, destination);
  return isPretty(format) ? pino(options, prettyDestination()) : pino(options);
}
