import { randomFillSync } from 'node:crypto';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let lastMs = 0;
let seq = 0;

/** Random bytes are drawn from the CSPRNG in blocks: one syscall and no allocation per id. */
const POOL_SIZE = 8 * 1024;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let poolOffset = POOL_SIZE;
/** The character code of each hex digit. */
const HEX: readonly number[] = Array.from({ length: 16 }, (_, i) => i.toString(16).charCodeAt(0));
const DASH = 0x2d;

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter that keeps ids created
 * in the same millisecond by this process increasing, then random bits.
 */
export function uuidv7(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    seq = 0;
  } else {
    seq++;
    if (seq > 0xfff) {
      // The counter is exhausted for this millisecond: borrow the next one so order still holds.
      lastMs++;
      seq = 0;
    }
  }
  // 8 random bytes per id (62 random bits after the variant); each byte is used once only.
  if (poolOffset + 8 > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const r = poolOffset;
  poolOffset += 8;
  const hi = Math.floor(lastMs / 2 ** 32);
  const lo = lastMs >>> 0;
  const h = HEX as number[];
  const p = pool;
  const b0 = p[r] as number;
  // One flat string from 36 character codes: concatenating pieces would build a tree of strings,
  // and the id lives as long as its publish is unconfirmed.
  return String.fromCharCode(
    h[(hi >>> 12) & 15] as number,
    h[(hi >>> 8) & 15] as number,
    h[(hi >>> 4) & 15] as number,
    h[hi & 15] as number,
    h[lo >>> 28] as number,
    h[(lo >>> 24) & 15] as number,
    h[(lo >>> 20) & 15] as number,
    h[(lo >>> 16) & 15] as number,
    DASH,
    h[(lo >>> 12) & 15] as number,
    h[(lo >>> 8) & 15] as number,
    h[(lo >>> 4) & 15] as number,
    h[lo & 15] as number,
    DASH,
    h[7] as number,
    h[(seq >>> 8) & 15] as number,
    h[(seq >>> 4) & 15] as number,
    h[seq & 15] as number,
    DASH,
    h[8 | ((b0 >>> 4) & 3)] as number,
    h[b0 & 15] as number,
    hexHigh(p, r + 1),
    hexLow(p, r + 1),
    DASH,
    hexHigh(p, r + 2),
    hexLow(p, r + 2),
    hexHigh(p, r + 3),
    hexLow(p, r + 3),
    hexHigh(p, r + 4),
    hexLow(p, r + 4),
    hexHigh(p, r + 5),
    hexLow(p, r + 5),
    hexHigh(p, r + 6),
    hexLow(p, r + 6),
    hexHigh(p, r + 7),
    hexLow(p, r + 7),
  );
}

const hexHigh = (bytes: Buffer, i: number) => HEX[(bytes[i] as number) >>> 4] as number;
const hexLow = (bytes: Buffer, i: number) => HEX[(bytes[i] as number) & 15] as number;

/** True for any RFC 9562 UUID string (any version), in either case. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}
