import { randomFillSync } from 'node:crypto';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let lastMs = 0;
let seq = 0;

/** Random bytes are drawn from the CSPRNG in blocks: one syscall and no allocation per id. */
const POOL_SIZE = 8 * 1024;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let poolOffset = POOL_SIZE;
/** Two hex digits per byte value. */
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

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
  const ms = lastMs;
  const h = HEX as readonly string[];
  const p = pool;
  return (
    (h[Math.floor(ms / 2 ** 40) & 0xff] as string) +
    h[Math.floor(ms / 2 ** 32) & 0xff] +
    h[(ms >>> 24) & 0xff] +
    h[(ms >>> 16) & 0xff] +
    '-' +
    h[(ms >>> 8) & 0xff] +
    h[ms & 0xff] +
    '-' +
    h[0x70 | ((seq >>> 8) & 0x0f)] +
    h[seq & 0xff] +
    '-' +
    h[0x80 | ((p[r] as number) & 0x3f)] +
    h[p[r + 1] as number] +
    '-' +
    h[p[r + 2] as number] +
    h[p[r + 3] as number] +
    h[p[r + 4] as number] +
    h[p[r + 5] as number] +
    h[p[r + 6] as number] +
    h[p[r + 7] as number]
  );
}

/** True for any RFC 9562 UUID string (any version), in either case. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}
