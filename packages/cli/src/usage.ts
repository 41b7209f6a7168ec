import { ErrorCodes, HeraldError, parseDuration } from '@herald/core';

/** What `herald` exits with. Documented in `herald --help`. */
export const EXIT_CODES = {
  /** The command did what it was asked. */
  success: 0,
  /** It could not: the hub or RabbitMQ refused or cannot be reached, a bench lost events, a replay failed. */
  failure: 1,
  /** It was asked wrongly: an unknown option or command, a missing argument, an invalid flag value or configuration. */
  usage: 2,
} as const;

/**
 * A flag given a value it cannot take (a bad duration, a number out of range, flags that exclude
 * each other), found by a command before it does anything. `herald` prints `herald: <message>` and
 * the help hint of the command, and exits 2. Code INVALID_CONFIG; `cause` is the error it wraps.
 */
export class UsageError extends HeraldError {
  constructor(message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(ErrorCodes.INVALID_CONFIG, message, options);
    this.name = 'UsageError';
  }
}

/**
 * A duration flag in milliseconds (core's parseDuration: `500ms`, `30s`, `5m`, `1h30m`; a bare
 * number in `options.bare` units). Throws a UsageError naming the flag.
 */
export function durationFlag(text: string, flag: string, options?: Parameters<typeof parseDuration>[2]): number {
  try {
    return parseDuration(text, flag, options);
  } catch (err) {
    throw new UsageError((err as Error).message, { cause: err });
  }
}
