import { readFileSync } from 'node:fs';

/** A process's resident memory now, MiB; undefined once it has ended. */
export function rssMiB(pid: number): number | undefined {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
    return Number.isFinite(kb) ? Math.round(kb / 1024) : undefined;
  } catch {
    return undefined; // the process ended
  }
}

/** Samples a process's resident memory every 250 ms for the benchmarks; `stop()` gives the peak in MiB. */
export function sampleRss(pid: number): { stop(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMiB(pid) ?? 0);
  }, 250);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}
