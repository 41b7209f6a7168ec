/**
 * What the bench sends: N senders × M types, each event carrying its per-sender sequence number and
 * its send time. Everything here is pure and deterministic per seed, so the expected counts can be
 * recomputed from the plan instead of remembering every event sent.
 */

/** The senders and types of one run. */
export interface EventPlan {
  /** Sender names `s1`…`sN`. */
  readonly senders: readonly string[];
  /** Type names `t1`…`tM`. */
  readonly types: readonly string[];
  /** Seed of the type choice. */
  readonly seed: number;
}

/** Builds the plan for `senders` × `types` (both ≥ 1). */
export function createPlan(senders: number, types: number, seed = 1): EventPlan {
  return {
    senders: Array.from({ length: senders }, (_, i) => `s${i + 1}`),
    types: Array.from({ length: types }, (_, i) => `t${i + 1}`),
    seed,
  };
}

/** A 32-bit integer hash (murmur3's finalizer): cheap, stateless and well spread. */
function mix32(h: number): number {
  let x = h | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * The index of the type of the `seq`-th event of sender `sender`: pseudo-random but a pure function
 * of (seed, sender, seq), so no per-event state is kept to know what was sent. Random rather than
 * round-robin so the counts per sender×type are uneven and a wrong expected count shows.
 */
export function typeIndexOf(plan: EventPlan, sender: number, seq: number): number {
  const h = mix32(mix32(mix32(plan.seed) ^ sender) ^ seq);
  return h % plan.types.length;
}

/** The `index`-th event of the run: senders take turns, so each sender's share differs by at most one. */
export function eventAt(plan: EventPlan, index: number): { sender: number; seq: number; type: number } {
  const n = plan.senders.length;
  const sender = index % n;
  const seq = Math.floor(index / n);
  return { sender, seq, type: typeIndexOf(plan, sender, seq) };
}

/** The fields the bench puts in each event's data. */
export interface Payload {
  /** The run id: receivers ignore events of other runs in the same vhost. */
  readonly run: string;
  /** The per-sender sequence number, from 0. */
  readonly seq: number;
  /** The send time in epoch milliseconds with a fractional part (performance clock). */
  readonly ts: number;
}

const PAD_MARK = ',"pad":"';

/**
 * Encodes a payload as JSON padded to `size` bytes (or the smallest size that holds it). The padding
 * comes last so a receiver can parse the short head and skip the rest.
 */
export function encodePayload(p: Payload, size: number): Buffer {
  const head = `{"run":${JSON.stringify(p.run)},"seq":${p.seq},"ts":${p.ts}${PAD_MARK}`;
  const pad = Math.max(0, size - head.length - 2);
  return Buffer.from(`${head}${'x'.repeat(pad)}"}`, 'latin1');
}

/** Decodes what encodePayload wrote; undefined for anything else (an event not made by a bench). */
export function decodePayload(data: Buffer): Payload | undefined {
  const end = data.indexOf(PAD_MARK);
  try {
    const obj = JSON.parse(end < 0 ? data.toString('latin1') : `${data.toString('latin1', 0, end)}}`) as Partial<Payload>;
    if (typeof obj.run !== 'string' || typeof obj.seq !== 'number' || typeof obj.ts !== 'number') return undefined;
    return { run: obj.run, seq: obj.seq, ts: obj.ts };
  } catch {
    return undefined;
  }
}

/** Epoch milliseconds with sub-millisecond precision, monotonic within the process. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
