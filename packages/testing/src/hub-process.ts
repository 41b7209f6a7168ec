import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (where `packages/` is). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 0;
}

/** A hub (or any `herald` command) running as a child process. */
export interface HeraldProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  readonly exited: Promise<number | string>;
  /** Resolves when the output contains `pattern`; rejects after `timeoutMs` or if the process exits first. */
  waitFor(pattern: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<number | string>;
  /** The gRPC port from the last "hub running" line (`"grpc":<port>`); undefined before it. */
  grpcPort(): number | undefined;
}

/**
 * Node's arguments to run the repository's TypeScript sources: tsx, and the `herald-source`
 * condition, under which each @herald package resolves to its `src/` instead of its built `dist/`.
 */
export const SOURCE_NODE_ARGS: readonly string[] = ['--conditions=herald-source', '--import', 'tsx'];

/**
 * Runs `node --conditions=herald-source --import tsx packages/cli/src/main.ts <args>` from the repository root with `env` added
 * to the environment. HERALD_* variables of the parent are removed first so the test decides.
 * HERALD_GRPC_PORT defaults to 0 (any free port) so that hubs of parallel tests do not collide;
 * `grpcPort()` tells the port a hub bound. HERALD_TEST_NODE_ARGS adds node arguments (space-separated,
 * e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the hubs of a bench).
 */
export function spawnHerald(args: string[], env: Record<string, string>): HeraldProcess {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(base)) if (k.startsWith('HERALD_') && !k.startsWith('HERALD_TEST_')) delete base[k];
  const extra = (process.env.HERALD_TEST_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const child = spawn(process.execPath, [...extra, ...SOURCE_NODE_ARGS, 'packages/cli/src/main.ts', ...args], {
    cwd: repoRoot,
    env: { ...base, HERALD_GRPC_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
  };
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    notify();
  });
  child.stderr?.on('data', (d: Buffer) => {
    const s = d.toString();
    err += s;
    out += s;
    notify();
  });
  let done: number | string | undefined;
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      done = code ?? signal ?? 'unknown';
      resolve(done);
      notify();
    });
  });
  return {
    child,
    output: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      const test = () => (typeof pattern === 'string' ? out.includes(pattern) : pattern.test(out));
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (test()) finish();
          else if (done !== undefined)
            finish(new Error(`process exited (${done}) before printing ${String(pattern)}:\n${out.slice(-3000)}`));
        };
        const timer = setTimeout(
          () => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${String(pattern)}:\n${out.slice(-3000)}`)),
          timeoutMs,
        );
        const finish = (e?: Error) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (e) reject(e);
          else resolve();
        };
        waiters.add(check);
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (done === undefined) child.kill(signal);
      return exited;
    },
    grpcPort() {
      let port: number | undefined;
      for (const line of out.split('\n')) {
        if (!line.includes('"msg":"hub running"')) continue;
        const m = /"grpc":(\d+)/.exec(line);
        if (m) port = Number(m[1]);
      }
      return port;
    },
  };
}

/** Spawns `herald hub` and waits until it logs "hub running". */
export async function startHubProcess(env: Record<string, string>, args: string[] = [], timeoutMs = 60_000): Promise<HeraldProcess> {
  const hub = spawnHerald(['hub', ...args], env);
  try {
    await hub.waitFor('"msg":"hub running"', timeoutMs);
  } catch (err) {
    await hub.kill('SIGKILL');
    throw err;
  }
  return hub;
}

/**
 * Runs `herald bench --json --quiet <args>` and resolves with the report it printed and its exit
 * code (a run that saw loss exits non-zero and still reports). Rejects, with the end of the
 * output, when the process printed no report.
 */
export async function runHeraldBench<T>(args: string[], env: Record<string, string>): Promise<{ report: T; code: number | string }> {
  const p = spawnHerald(['bench', '--json', '--quiet', ...args], env);
  const code = await p.exited;
  const out = p.output();
  // The report is the one JSON document on stdout, and it opens with its run id.
  const start = out.indexOf('{"run"');
  if (start < 0) throw new Error(`herald bench ${args.join(' ')} printed no report (exit ${code}):\n${out.slice(-2000)}`);
  return { report: JSON.parse(out.slice(start, out.lastIndexOf('}') + 1)) as T, code };
}
