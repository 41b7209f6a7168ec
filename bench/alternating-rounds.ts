/**
 * Rounds in which every path runs once, one after the other, the order turned by one each round,
 * so each path meets the same moments of a noisy machine; and the "median [min–max]" the benches
 * print of them.
 */

/** Runs `paths` (name → one run's events/s) `rounds` times; one record per round, name → events/s. */
export async function alternatingRounds(
  paths: Record<string, () => Promise<number>>,
  rounds: number,
  log: (line: string) => void,
): Promise<Record<string, number>[]> {
  const names = Object.keys(paths);
  const perRound: Record<string, number>[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
    const got: Record<string, number> = {};
    for (const name of order) {
      log(`round ${round + 1}: ${name}`);
      got[name] = await (paths[name] as () => Promise<number>)();
      log(`round ${round + 1}: ${name}: ${Math.round(got[name] as number)} events/s`);
    }
    perRound.push(got);
  }
  return perRound;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
}

/** "median [min–max]" with `digits` decimals. */
export function spread(xs: readonly number[], digits = 0): string {
  return `${median(xs).toFixed(digits)} [${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}]`;
}
