// For the examples' tests: runs an example as a child process, the way a user would, and reads
// what it prints.
import { type ChildProcess, spawn } from 'node:child_process';
import { repoRoot, SOURCE_NODE_ARGS } from '@herald/testing';

export interface ExampleProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code, or the signal's name. */
  readonly exited: Promise<number | string>;
  /** Resolves once stdout or stderr matches; rejects after `timeoutMs` or when the process exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Starts `examples/<name>/main.ts <args>` with the repository's sources, HERALD_* and ORDERS_* of
 * this process removed and `env` added. `launcher: true` goes through `scripts/example.mjs`, as
 * `npm run example` does; without it the example is the child itself, so a signal reaches it.
 */
export function startExample(name: string, args: string[], env: Record<string, string>, launcher = false): ExampleProcess {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(base)) if (/^(HERALD_|ORDERS_)/.test(k) && !k.startsWith('HERALD_TEST_')) delete base[k];
  const argv = launcher ? ['scripts/example.mjs', name, ...args] : [...SOURCE_NODE_ARGS, `examples/${name}/main.ts`, ...args];
  const child = spawn(process.execPath, argv, { cwd: repoRoot, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of waiters) w();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters) w();
  });
  let done: number | string | undefined;
  const exited = new Promise<number | string>((resolve) =>
    child.on('close', (code, signal) => {
      done = code ?? signal ?? 'unknown';
      resolve(done);
      for (const w of waiters) w();
    }),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise<void>((resolve, reject) => {
        const finish = (e?: Error) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (e) reject(e);
          else resolve();
        };
        const check = () => {
          if (pattern.test(out) || pattern.test(err)) finish();
          else if (done !== undefined) finish(new Error(`${name} exited (${done}) before printing ${pattern}:\n${out}${err}`.slice(-4000)));
        };
        const timer = setTimeout(
          () => finish(new Error(`timed out waiting for ${pattern} from ${name}:\n${out}${err}`.slice(-4000))),
          timeoutMs,
        );
        waiters.add(check);
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (done === undefined) child.kill(signal);
      return exited;
    },
  };
}

/** Runs an example through the launcher to its end. */
export async function runExample(
  name: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = startExample(name, args, env, true);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}
