import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { type Finding, FUZZ_DIR, type FuzzHub, type FuzzSettings, type Violation } from './fuzz-kit.ts';

// Drives one edge: fast-check generates the inputs from the seed, the edge sends each and says what
// came back, the invariant is checked after every batch. A failure of one input (a 500, an INTERNAL)
// is recorded and the run goes on, so one run finds every distinct failure; afterwards fast-check
// replays the first input of each (by seed and path) and shrinks it. A broken invariant stops the
// edge at once: once the hub is stuck, later inputs tell nothing.

/** What one input got. */
export interface Outcome {
  /** What happened, counted for the summary: `POST /api/v1/events 202`, `INVALID_ARGUMENT`, `refused by RabbitMQ`. */
  readonly tally: string;
  /** Set when the answer broke a rule: the failure's signature; inputs with the same one are one failure. */
  readonly failure?: string | undefined;
  /** What came back, for the report: status line, problem detail, error. */
  readonly detail?: string | undefined;
}

/** One edge of the hub as the runner drives it. */
export interface Edge<T> {
  readonly name: string;
  readonly arbitrary: fc.Arbitrary<T>;
  /**
   * Sends one input and tells what came back. Never rejects: a client-side error is an outcome too.
   * `index` is the input's place in the run, or -1 when a failure is replayed to shrink it (then
   * nothing should be kept for the checks after the batch).
   */
  send(input: T, index: number): Promise<Outcome>;
  /** Runs before the invariant after each batch: undo what would hold the probe (pauses). */
  beforeCheck?(): Promise<Array<Violation | Finding>>;
  /** Runs after the invariant: the probe is stored, so everything accepted before it must be too. */
  afterCheck?(): Promise<Array<Violation | Finding>>;
}

interface Failure {
  readonly signature: string;
  readonly index: number;
  readonly input: unknown;
  readonly detail: string | undefined;
  count: number;
  shrunk?: { input: unknown; detail: string | undefined; steps: number } | undefined;
  replay?: string;
}

/** The result of one edge's run: `text` is the whole report to print, `summary` its FAILED lines, `ok` whether the edge held. */
export interface EdgeReport {
  readonly ok: boolean;
  readonly inputs: number;
  readonly text: string;
  readonly summary: string;
}

/** A per-failure shrinking budget, and one for all of them, so a failing run still ends in bounded time. */
const SHRINK_MS = 15_000;
const SHRINK_TOTAL_MS = 40_000;
/** Inputs printed inline up to this size; a larger one is abbreviated and written whole to a file. */
const INLINE_CHARS = 64 * 1024;

const dumpDir = FUZZ_DIR;

/** `input` as fast-check prints it, whole when small, else its head and the path of a file holding all of it. */
function printable(edge: string, label: string, value: unknown): string {
  const text = fc.stringify(value);
  if (text.length <= INLINE_CHARS) return text;
  mkdirSync(dumpDir, { recursive: true });
  const file = join(dumpDir, `${edge}-${label}-${process.pid}.txt`);
  writeFileSync(file, text);
  return `${text.slice(0, 4000)}… (${text.length} characters; whole input in ${file})`;
}

/**
 * Runs `settings.runs` inputs of `edge` against `hub`, checking the invariant every `settings.batch`
 * inputs and once at the end. Resolves with the report (never rejects on a finding); the caller
 * asserts `ok`.
 */
export async function fuzzEdge<T>(hub: FuzzHub, edge: Edge<T>, settings: FuzzSettings): Promise<EdgeReport> {
  const t0 = Date.now();
  const tallies = new Map<string, number>();
  /** Milliseconds spent on inputs, by tally: where an edge's time goes. */
  const spent = new Map<string, number>();
  const failures = new Map<string, Failure>();
  let calls = 0;
  let batchInputs: T[] = [];
  let broken: { index: number; violations: Violation[]; inputs: T[] } | undefined;

  /** The slowest inputs: an input the hub takes seconds over is worth a look even when it answered. */
  const slowest: { index: number; ms: number; tally: string; input: unknown }[] = [];
  const noteSlow = (index: number, ms: number, tally: string, input: unknown) => {
    if (slowest.length >= 5 && ms <= (slowest.at(-1)?.ms ?? 0)) return;
    slowest.push({ index, ms, tally, input });
    slowest.sort((a, b) => b.ms - a.ms);
    slowest.length = Math.min(slowest.length, 5);
  };
  const record = (signature: string, index: number, input: unknown, detail: string | undefined) => {
    const known = failures.get(signature);
    if (known) known.count++;
    else failures.set(signature, { signature, index, input, detail, count: 1 });
  };
  /** The invariant and the edge's own checks; findings are recorded, violations returned. */
  const checkAll = async (): Promise<Violation[]> => {
    const found = [...((await edge.beforeCheck?.()) ?? []), ...(await hub.check()), ...((await edge.afterCheck?.()) ?? [])];
    const violations: Violation[] = [];
    for (const f of found) {
      if (typeof f === 'string') violations.push(f);
      else record(f.signature, f.index, f.input, f.detail);
    }
    return violations;
  };

  const run = await fc.check(
    fc.asyncProperty(edge.arbitrary, async (input) => {
      const index = calls++;
      batchInputs.push(input);
      const sent = Date.now();
      const o = await edge.send(input, index);
      const ms = Date.now() - sent;
      noteSlow(index, ms, o.tally, input);
      spent.set(o.tally, (spent.get(o.tally) ?? 0) + ms);
      tallies.set(o.tally, (tallies.get(o.tally) ?? 0) + 1);
      if (o.failure !== undefined) record(o.failure, index, input, o.detail);
      if ((index + 1) % settings.batch === 0) {
        const violations = await checkAll();
        if (violations.length > 0) {
          broken = { index, violations, inputs: batchInputs };
          throw new Error(violations.join('; '));
        }
        batchInputs = [];
      }
      return true;
    }),
    { seed: settings.seed, numRuns: settings.runs, endOnFailure: true, interruptAfterTimeLimit: settings.timeLimitMs },
  );
  if (!broken && calls % settings.batch !== 0) {
    const violations = await checkAll();
    if (violations.length > 0) broken = { index: calls - 1, violations, inputs: batchInputs };
  }
  const runMs = Date.now() - t0;

  // Shrink the first input of each distinct failure, by replaying it from the seed and its path.
  // Not after a broken invariant: a stuck hub answers nothing that could be trusted.
  if (!broken) {
    const shrinkEnd = Date.now() + SHRINK_TOTAL_MS;
    for (const f of [...failures.values()].slice(0, settings.shrinks)) {
      const deadline = Math.min(Date.now() + SHRINK_MS, shrinkEnd);
      if (deadline <= Date.now()) break;
      let last: { input: unknown; detail: string | undefined } | undefined;
      let steps = 0;
      const replay = await fc.check(
        fc.asyncProperty(edge.arbitrary, async (input) => {
          if (Date.now() > deadline) return true;
          const o = await edge.send(input, -1);
          if (o.failure !== f.signature) return true;
          steps++;
          last = { input, detail: o.detail };
          return false;
        }),
        { seed: settings.seed, path: String(f.index) },
      );
      f.replay = replay.failed ? `path ${replay.counterexamplePath}` : 'did not fail again when replayed (it depends on what ran before)';
      if (replay.failed && last) f.shrunk = { ...last, steps: steps - 1 };
    }
  }

  const lines: string[] = [];
  const seconds = (ms: number) => (ms / 1000).toFixed(1);
  lines.push(
    `# fuzz ${edge.name}: seed ${settings.seed}, ${calls} inputs in ${seconds(runMs)} s (asked ${settings.runs}, batch ${settings.batch}); ` +
      `hub RSS peak ${hub.peakRss()} MiB (bound ${settings.rssMiB})`,
  );
  lines.push(
    `# fuzz ${edge.name} outcomes: ${[...tallies.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ×${n}`)
      .join(', ')}`,
  );
  lines.push(`# fuzz ${edge.name} slowest: ${slowest.map((x) => `#${x.index} ${x.ms} ms (${x.tally})`).join(', ')}`);
  lines.push(
    `# fuzz ${edge.name} time by outcome: ${[...spent.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6)
      .map(([k, ms]) => `${k} ${seconds(ms)} s`)
      .join(', ')}`,
  );
  const interrupted = !broken && run.interrupted;
  if (interrupted)
    lines.push(
      `FAILED ${edge.name}: the time limit (${seconds(settings.timeLimitMs)} s) ended the run after ${calls} of ${settings.runs} inputs`,
    );
  if (broken) {
    lines.push(`FAILED ${edge.name}: the invariant broke after input #${broken.index} (the edge stopped there):`);
    for (const v of broken.violations) lines.push(`  - ${v}`);
    lines.push(
      `  the ${broken.inputs.length} inputs since the last good check (the culprit is among them; ` +
        `HERALD_FUZZ_SEED=${settings.seed} HERALD_FUZZ_BATCH=1 HERALD_FUZZ_RUNS=${broken.index + 1} finds it):`,
    );
    mkdirSync(dumpDir, { recursive: true });
    const file = join(dumpDir, `${edge.name}-batch-${settings.seed}-${process.pid}.txt`);
    writeFileSync(
      file,
      `${broken.inputs.map((i, n) => `#${broken!.index + 1 - broken!.inputs.length + n} ${fc.stringify(i)}`).join('\n')}\n`,
    );
    const last = fc.stringify(broken.inputs.at(-1));
    lines.push(
      `  all of them in ${file}; the last one: ${last.length > 2000 ? `${last.slice(0, 2000)}… (${last.length} characters)` : last}`,
    );
  }
  for (const f of failures.values()) {
    lines.push(`FAILED ${edge.name}: ${f.signature} (×${f.count}; first at input #${f.index}, seed ${settings.seed})`);
    if (f.detail) lines.push(`  answer: ${f.detail}`);
    lines.push(`  input: ${printable(edge.name, `input-${f.index}`, f.input)}`);
    if (f.shrunk) {
      lines.push(`  shrunk (${f.shrunk.steps} steps, ${f.replay}): ${printable(edge.name, `shrunk-${f.index}`, f.shrunk.input)}`);
      if (f.shrunk.detail && f.shrunk.detail !== f.detail) lines.push(`  shrunk answer: ${f.shrunk.detail}`);
    } else if (f.replay) lines.push(`  not shrunk: ${f.replay}`);
  }
  const logged = [...hub.logged().entries()].filter(([k]) => k.startsWith('error') || k.startsWith('unparsed'));
  if (logged.length > 0) {
    lines.push(`# fuzz ${edge.name}: the hub logged ${logged.length} distinct error lines:`);
    for (const [k, n] of logged.slice(0, 30)) lines.push(`#   ×${n} ${k}`);
  }
  if (broken || failures.size > 0) lines.push(`# fuzz ${edge.name}: the hub's log is in ${hub.saveLog(edge.name)}`);
  const text = lines.join('\n');
  const summary = lines.filter((l) => l.startsWith('FAILED') || l.startsWith('  - ')).join('\n');
  return {
    ok: !broken && !interrupted && failures.size === 0,
    inputs: calls,
    text,
    summary: `${summary}\n(the whole report, with the inputs, is printed above)`,
  };
}
