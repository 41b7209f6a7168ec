import { ErrorCodes, ValidationError } from './errors.ts';
import { preview } from './limits.ts';

/** The units a duration may use, largest first: a combination names each at most once, in this order. */
const UNITS = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
] as const;

/** The longest duration anything accepts: longer is a typo, not a setting. */
const MAX_MS = 365 * 86_400_000;

/** Longer text is no duration (`1d23h59m59s999ms` is 16 characters); refused before any parsing. */
const MAX_TEXT = 64;

const EXAMPLES = '500ms, 30s, 5m, 1h or 1h30m';

/** How parseDuration reads one setting. */
export interface DurationOptions {
  /**
   * What a bare number means, for settings that took one before units existed: `s` (seconds) or
   * `ms`. Default: none, a unit is required.
   */
  bare?: 's' | 'ms' | undefined;
  /** The shortest duration accepted, ms. Default 1: zero is refused; 0 allows it. */
  min?: number | undefined;
  /** The longest duration accepted, ms. Default and ceiling 365 days. */
  max?: number | undefined;
}

/** A duration in the largest units that give it exactly: 90000 → `1m30s`, 0 → `0s`. */
function format(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let text = '';
  for (const [unit, size] of UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0) text += `${n}${unit}`;
    rest -= n * size;
  }
  return text;
}

/**
 * Reads a duration such as `500ms`, `30s`, `5m`, `1h`, `2d` or a combination, largest unit first
 * (`1h30m`, `1m30s500ms`), and returns milliseconds. Whole numbers only; surrounding whitespace is
 * ignored, none is allowed inside. A bare number is read in `options.bare` units when given.
 *
 * Throws a ValidationError (INVALID_CONFIG) whose one-line message names `what` (the flag or
 * variable, e.g. `--ttl`) and shows an example, for: empty text, a sign, a fraction, an exponent,
 * an unknown or repeated unit, trailing text, zero (unless `min` is 0), and anything outside
 * `min`…`max` (at most 365 days).
 */
export function parseDuration(text: string, what: string, options: DurationOptions = {}): number {
  const min = options.min ?? 1;
  const max = Math.min(options.max ?? MAX_MS, MAX_MS);
  const refuse = (expected: string): never => {
    throw new ValidationError(ErrorCodes.INVALID_CONFIG, `invalid ${what} ${preview(text)}: ${expected}`, {
      details: { setting: what, value: preview(text) },
    });
  };
  const bareNote = options.bare === 's' ? ', or a number of seconds' : options.bare === 'ms' ? ', or a number of milliseconds' : '';
  const malformed = `expected a duration such as ${EXAMPLES}${bareNote}`;

  if (typeof text !== 'string' || text.length > MAX_TEXT) return refuse(malformed);
  const t = text.trim();
  let ms: number;
  if (/^\d+$/.test(t) && options.bare !== undefined) {
    ms = Number(t) * (options.bare === 's' ? 1000 : 1);
  } else {
    const parts = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(t);
    if (parts === null || t === '') return refuse(malformed);
    ms = 0;
    UNITS.forEach(([, size], i) => {
      const n = parts[i + 1];
      if (n !== undefined) ms += Number(n) * size;
    });
  }
  if (!Number.isSafeInteger(ms) || ms > max) return refuse(`expected at most ${format(max)}, e.g. ${format(Math.min(max, 30_000))}`);
  if (ms === 0 && min > 0) return refuse(`must be more than 0, e.g. ${format(Math.min(max, Math.max(min, 30_000)))}`);
  if (ms < min) return refuse(`expected at least ${format(min)}, e.g. ${format(Math.min(max, Math.max(min, 30_000)))}`);
  return ms;
}
