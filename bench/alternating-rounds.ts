import { spread as spreadOf } from '../packages/cli/src/bench/summary.ts';

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

/** "median [min–max]" with `digits` decimals (summary.ts's spread). */
export function spread(xs: readonly number[], digits = 0): string {
  const { median, min, max } = spreadOf(xs);
  return `${median.toFixed(digits)} [${min.toFixed(digits)}–${max.toFixed(digits)}]`;
}
