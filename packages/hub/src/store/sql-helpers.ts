/** Epoch milliseconds of a timestamptz column, as a plain number on both drivers. */
export function epochMs(column: string): string {
  return `(extract(epoch from ${column}) * 1000)::float8`;
}

/** A number, bigint or numeric string from a row, as a bigint. */
export function toBigInt(value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' || typeof value === 'string') return BigInt(value);
  throw new TypeError(`expected an integer, got ${typeof value}`);
}

/** An epoch-ms column that may be null. */
export function optionalMs(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : Number(value);
}

/** `$n` as a timestamptz from epoch milliseconds. */
export const tsParam = (n: number) => `to_timestamp($${n}::float8 / 1000)`;
