/** Something that counts distinct expected deliveries. */
export interface Draining {
  readonly distinct: number;
}

/**
 * Waits until every receiver has its expected count, or until none made progress for `idleMs`
 * (then the rest counts as lost). Returns whether everything arrived.
 */
export async function waitDrained(receivers: readonly { tally: Draining; expected: number }[], idleMs: number): Promise<boolean> {
  let last = -1;
  let lastChange = performance.now();
  for (;;) {
    let total = 0;
    let done = true;
    for (const r of receivers) {
      total += r.tally.distinct;
      if (r.tally.distinct < r.expected) done = false;
    }
    if (done) return true;
    if (total !== last) {
      last = total;
      lastChange = performance.now();
    } else if (performance.now() - lastChange >= idleMs) {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Events per second, rounded to 0.1; 0 for an empty window. */
export function perSecond(n: number, ms: number): number {
  return ms > 0 ? Math.round((n / ms) * 10_000) / 10 : 0;
}
