import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '@herald/testing';
import { parse } from 'yaml';
import { CAPS } from './caps/index.ts';
import { normalizeConfig } from './config/index.ts';
import { DEFAULT_DATA_DIR } from './store/index.ts';

// The deployment files at the root (Dockerfile, .dockerignore, docker-compose.yml) and the
// configuration reference in docs/operations.md, checked against the code they describe. Docker
// is used when it is there (`docker compose config`, `docker build`); without it the files are
// checked by the rules below, and the test says which it did.

const read = (path: string) => readFileSync(join(repoRoot, path), 'utf8');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never rejects (a missing program is code 127). */
function run(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: repoRoot, env: options.env ?? process.env, timeout: options.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
        resolve({ code, stdout, stderr: stderr || (err && code === 127 ? err.message : '') });
      },
    );
  });
}

const firstLine = (r: Run) => (r.stderr.trim() || r.stdout.trim()).split('\n')[0] ?? `exit ${r.code}`;

// ---- the settings, from packages/hub/src/config/config.ts ----

const configSource = read('packages/hub/src/config/config.ts');

/** Each option of NAMES in config.ts: its key in HubOptions, its flag and its variable. */
function configNames(): { key: string; flag: string; env: string }[] {
  const names = [...configSource.matchAll(/(\w+): \{ flag: '(--[a-z-]+)', env: (?:'(HERALD_\w+)'|CAPS\.(\w+)\.setting) \}/g)].map(
    ([, key, flag, env, cap]) => ({ key: key!, flag: flag!, env: env ?? CAPS[cap as keyof typeof CAPS].setting }),
  );
  assert.ok(names.length >= 20, `found only ${names.length} options in config.ts: has the NAMES table changed shape?`);
  return names;
}

/** Every HERALD_* variable normalizeConfig reads (recorded by a proxy) or config.ts names. */
function configVariables(): Set<string> {
  const seen = new Set<string>();
  const env = new Proxy({} as NodeJS.ProcessEnv, {
    get: (_, key) => {
      if (typeof key === 'string') seen.add(key);
      return undefined;
    },
  });
  normalizeConfig({}, env);
  for (const [, name] of configSource.matchAll(/\b(HERALD_[A-Z0-9_]+)\b/g)) seen.add(name!);
  for (const [, cap] of configSource.matchAll(/CAPS\.(\w+)\.setting/g)) seen.add(CAPS[cap as keyof typeof CAPS].setting);
  return new Set([...seen].filter((k) => k.startsWith('HERALD_')));
}

// ---- docker-compose.yml ----

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Mapping = { [key: string]: Json };

const isMapping = (v: unknown): v is Mapping => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Compose's interpolation with an empty environment, so the file must work without an .env: `$$`
 * is a dollar, `${NAME:-default}` its default. Anything else with a `$` is an error here (a bare
 * `$NAME` or `${NAME}` would be empty without an .env; compose would warn, not fail).
 */
function interpolate(value: string, where: string, variables: Set<string>): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*):-([^${}]*)\}|\$[\s\S]{0,20}/g,
    (match, name: string | undefined, fallback: string) => {
      if (match === '$$') return '$';
      assert.ok(name !== undefined, `${where}: ${JSON.stringify(match)} is not \${NAME:-default} (nor $$ for a dollar)`);
      variables.add(name);
      return fallback;
    },
  );
}

function interpolateAll(value: Json, where: string, variables: Set<string>): Json {
  if (typeof value === 'string') return interpolate(value, where, variables);
  if (Array.isArray(value)) return value.map((v, i) => interpolateAll(v, `${where}[${i}]`, variables));
  if (isMapping(value)) {
    const out: Mapping = {};
    for (const [k, v] of Object.entries(value)) out[interpolate(k, where, variables)] = interpolateAll(v, `${where}.${k}`, variables);
    return out;
  }
  return value;
}

const TOP_LEVEL = new Set(['version', 'name', 'include', 'services', 'networks', 'volumes', 'secrets', 'configs']);
// The service keys of the compose specification (https://github.com/compose-spec/compose-spec, spec.md).
const SERVICE_KEYS = new Set(
  (
    'annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs container_name cpu_count ' +
    'cpu_percent cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares cpus cpuset credential_spec depends_on deploy ' +
    'develop device_cgroup_rules devices dns dns_opt dns_search domainname driver_opts entrypoint env_file environment expose ' +
    'extends external_links extra_hosts gpus group_add healthcheck hostname image init ipc isolation labels label_file links ' +
    'logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit models network_mode networks oom_kill_disable ' +
    'oom_score_adj pid pids_limit platform ports post_start pre_stop privileged profiles provider pull_policy read_only restart ' +
    'runtime scale secrets security_opt shm_size stdin_open stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits ' +
    'use_api_socket user userns_mode uts volumes volumes_from working_dir'
  ).split(' '),
);
const DURATION = /^(\d+(\.\d+)?(us|ms|s|m|h))+$/;
const CONDITIONS = new Set(['service_started', 'service_healthy', 'service_completed_successfully']);
const PORT = /^(?:(?<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]+\]):)?(?:(?<host>\d+(?:-\d+)?):)?(?<container>\d+(?:-\d+)?)(?:\/(?:tcp|udp))?$/;

/** The rules of the compose file schema this file relies on; throws naming the first one broken. */
function checkComposeShape(doc: Mapping): void {
  for (const key of Object.keys(doc)) assert.ok(TOP_LEVEL.has(key) || key.startsWith('x-'), `unknown top-level key ${key}`);
  if (doc.name !== undefined) assert.match(String(doc.name), /^[a-z0-9][a-z0-9_-]*$/, 'project name');
  assert.ok(isMapping(doc.services) && Object.keys(doc.services).length > 0, 'services: a mapping of services');
  const volumes = isMapping(doc.volumes) ? doc.volumes : {};
  for (const [name, volume] of Object.entries(volumes)) assert.ok(volume === null || isMapping(volume), `volume ${name}`);
  for (const [name, service] of Object.entries(doc.services)) {
    const where = `services.${name}`;
    assert.match(name, /^[a-zA-Z0-9._-]+$/, `${where}: service name`);
    assert.ok(isMapping(service), `${where}: a mapping`);
    for (const key of Object.keys(service)) assert.ok(SERVICE_KEYS.has(key) || key.startsWith('x-'), `${where}: unknown key ${key}`);
    assert.ok(service.image !== undefined || service.build !== undefined, `${where}: needs image or build`);
    if (service.image !== undefined) assert.equal(typeof service.image, 'string', `${where}.image`);
    if (service.build !== undefined) {
      const context = typeof service.build === 'string' ? service.build : isMapping(service.build) ? service.build.context : undefined;
      assert.equal(typeof context, 'string', `${where}.build: a path, or a mapping with context`);
    }
    const env = service.environment;
    if (Array.isArray(env)) for (const e of env) assert.match(String(e), /^[^=\s]+(=.*)?$/, `${where}.environment: NAME=value`);
    else if (env !== undefined) {
      assert.ok(isMapping(env), `${where}.environment: a mapping or a list`);
      for (const [k, v] of Object.entries(env)) assert.ok(v === null || typeof v !== 'object', `${where}.environment.${k}: a scalar`);
    }
    if (service.healthcheck !== undefined) {
      const hc = service.healthcheck;
      assert.ok(isMapping(hc), `${where}.healthcheck: a mapping`);
      const t = hc.test;
      assert.ok(
        typeof t === 'string' || (Array.isArray(t) && ['CMD', 'CMD-SHELL', 'NONE'].includes(String(t[0]))),
        `${where}.healthcheck.test: a string or [CMD | CMD-SHELL | NONE, …]`,
      );
      for (const d of ['interval', 'timeout', 'start_period', 'start_interval'])
        if (hc[d] !== undefined) assert.match(String(hc[d]), DURATION, `${where}.healthcheck.${d}: a duration`);
      if (hc.retries !== undefined) assert.ok(Number.isInteger(hc.retries), `${where}.healthcheck.retries: an integer`);
    }
    const deps = service.depends_on;
    if (deps !== undefined) {
      assert.ok(Array.isArray(deps) || isMapping(deps), `${where}.depends_on: a list or a mapping`);
      const entries: [string, Json][] = Array.isArray(deps)
        ? deps.map((d) => [String(d), { condition: 'service_started' }])
        : Object.entries(deps);
      for (const [dep, spec] of entries) {
        assert.ok(dep in doc.services && dep !== name, `${where}.depends_on: ${dep} is not another service`);
        assert.ok(isMapping(spec) && CONDITIONS.has(String(spec.condition)), `${where}.depends_on.${dep}.condition`);
      }
    }
    for (const p of (service.ports ?? []) as Json[]) {
      if (isMapping(p)) assert.ok(Number.isInteger(Number(p.target)), `${where}.ports: target`);
      else assert.match(String(p), PORT, `${where}.ports: [ip:][host:]container`);
    }
    for (const v of (service.volumes ?? []) as Json[]) {
      if (isMapping(v)) continue;
      const [source, target] = String(v).split(':');
      assert.ok(target?.startsWith('/'), `${where}.volumes: ${v}: source:/target`);
      if (!/^[./~]/.test(source!)) assert.ok(source! in volumes, `${where}.volumes: named volume ${source} is not declared`);
    }
    if (service.restart !== undefined)
      assert.match(String(service.restart), /^(no|always|unless-stopped|on-failure(:\d+)?)$/, `${where}.restart`);
    if (service.stop_grace_period !== undefined) assert.match(String(service.stop_grace_period), DURATION, `${where}.stop_grace_period`);
    if (service.init !== undefined) assert.equal(typeof service.init, 'boolean', `${where}.init`);
  }
}

// ---- Dockerfile ----

interface Instruction {
  op: string;
  args: string;
}

/** Instructions, continuation lines joined, comments dropped; one array per stage. */
function dockerStages(text: string): Instruction[][] {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  const stages: Instruction[][] = [];
  for (const line of lines.map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    const [, op, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const ins = { op: op!.toUpperCase(), args: args!.replace(/\s+/g, ' ') };
    if (ins.op === 'FROM') stages.push([]);
    assert.ok(stages.length > 0, `Dockerfile: ${ins.op} before the first FROM`);
    stages.at(-1)!.push(ins);
  }
  return stages;
}

/** `ENV A=b C=d` of a stage, in order. */
function dockerEnv(stage: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of stage.filter((i) => i.op === 'ENV'))
    for (const [, k, v] of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) env[k!] = v!.replace(/^"|"$/g, '');
  return env;
}

const dockerfile = read('Dockerfile');
const stages = dockerStages(dockerfile);
const runtime = stages.at(-1) ?? [];
const only = (stage: Instruction[], op: string) => stage.filter((i) => i.op === op);
const last = (stage: Instruction[], op: string) => only(stage, op).at(-1);

describe('deployment: Dockerfile, docker-compose.yml, docs/operations.md', { timeout: 1_200_000 }, () => {
  test('the Dockerfile: a build stage that packs, a runtime stage of production dependencies as node', () => {
    assert.ok(stages.length >= 2, 'multi-stage: a build stage and a runtime stage');
    for (const s of stages) assert.match(s[0]!.args, /^node:20-bookworm-slim( AS \w+)?$/i, 'every stage FROM node:20-bookworm-slim');
    const build = stages[0]!;
    assert.match(build[0]!.args, / AS build$/i);
    const buildRun = only(build, 'RUN')
      .map((i) => i.args)
      .join(' ');
    assert.match(buildRun, /\bnpm ci\b/, 'the build stage runs npm ci (which builds, through prepare)');
    for (const p of ['core', 'client', 'hub', 'cli']) assert.match(buildRun, new RegExp(`npm pack .*--workspace packages/${p}\\b`));

    const runs = only(runtime, 'RUN').map((i) => i.args);
    assert.ok(!runs.some((r) => /\bnpm ci\b/.test(r)), 'the runtime stage does not install the workspace');
    const installs = runs.flatMap((r) => r.split(/&&|;/)).filter((c) => /\bnpm (install|i)\b/.test(c));
    assert.ok(installs.length > 0, 'the runtime stage installs the tarballs');
    for (const c of installs) {
      assert.match(c, /--omit=dev\b/, `no devDependencies: ${c}`);
      assert.match(c, /--ignore-scripts\b/, c);
      assert.match(c, /\.\/\*\.tgz/, c);
    }
    for (const { args } of only(runtime, 'COPY').concat(only(runtime, 'ADD'))) {
      assert.match(args, /--from=build\b/, `the runtime stage copies only from the build stage: ${args}`);
      assert.match(args, /\.tgz /, `only the tarballs: ${args}`);
    }

    const user = last(runtime, 'USER')?.args;
    assert.ok(user !== undefined && !/^(root|0)(:|$)/.test(user), `runs as a non-root user, not ${user}`);
    assert.equal(user, 'node');
    assert.deepEqual(last(runtime, 'EXPOSE')?.args.split(' ').sort(), ['50051', '8080']);
    assert.equal(last(runtime, 'ENTRYPOINT')?.args, '["node", "/app/node_modules/@herald/cli/dist/main.js"]');
    const bin = (JSON.parse(read('packages/cli/package.json')) as { bin: { herald: string } }).bin.herald;
    assert.equal(bin.replace(/^\.\//, ''), 'dist/main.js', 'the entrypoint is the herald bin of @herald/cli');
    assert.equal(last(runtime, 'CMD')?.args, '["hub"]');

    const env = dockerEnv(runtime);
    assert.equal(env.HERALD_HTTP_HOST, '0.0.0.0', 'reachable from outside the container');
    const volume = JSON.parse(last(runtime, 'VOLUME')?.args ?? '[]') as string[];
    assert.ok(env.HERALD_DATABASE_URL && volume.includes(env.HERALD_DATABASE_URL), 'the embedded store lives in a volume');
    const config = normalizeConfig({}, env);
    assert.equal(config.dataDir, env.HERALD_DATABASE_URL);
    assert.deepEqual([config.httpPort, config.grpcPort], [8080, 50051], 'the exposed ports are the ports the hub uses');
    const known = configVariables();
    for (const name of Object.keys(env).filter((k) => k.startsWith('HERALD_')))
      assert.ok(known.has(name), `the image sets ${name}, which the hub does not read`);
  });

  test('the HEALTHCHECK asks /readyz with node: exit 0 on 200, 1 on 503 and when nothing answers', async () => {
    const hc = last(runtime, 'HEALTHCHECK')?.args ?? '';
    assert.match(hc, /\/readyz/);
    assert.doesNotMatch(hc, /\b(curl|wget)\b/, 'the slim image has neither');
    const cmd = JSON.parse(hc.slice(hc.indexOf('CMD ') + 4)) as string[];
    assert.deepEqual(cmd.slice(0, 2), ['node', '-e']);
    let status = 200;
    const server = createServer((req, res) => res.writeHead(req.url === '/readyz' ? status : 404).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = String((server.address() as AddressInfo).port);
    const check = () => run(process.execPath, cmd.slice(1), { env: { PATH: process.env.PATH, HERALD_HTTP_PORT: port } });
    try {
      assert.equal((await check()).code, 0, 'ready');
      status = 503;
      assert.equal((await check()).code, 1, 'not ready');
    } finally {
      await new Promise((r) => server.close(r));
    }
    assert.equal((await check()).code, 1, 'nothing listening');
  });

  test('.dockerignore keeps installed, built and local state out of the build context', () => {
    const lines = new Set(
      read('.dockerignore')
        .split('\n')
        .map((l) => l.trim().replace(/^\*\*\//, ''))
        .filter((l) => l && !l.startsWith('#')),
    );
    for (const p of ['node_modules', 'dist', '.herald', '.git', '*.tgz', '.tmp*']) assert.ok(lines.has(p), `.dockerignore lacks ${p}`);
  });

  test('docker-compose.yml: RabbitMQ, PostgreSQL and the hub, wired, healthy first, on 127.0.0.1 only', async (t) => {
    const raw = read('docker-compose.yml');
    const parsed = parse(raw) as Json;
    assert.ok(isMapping(parsed), 'a mapping at the top');
    const variables = new Set<string>();
    const doc = interpolateAll(parsed, 'docker-compose.yml', variables) as Mapping;
    checkComposeShape(doc);
    const services = doc.services as Record<string, Mapping>;
    assert.deepEqual(Object.keys(services).sort(), ['hub', 'postgres', 'rabbitmq']);
    const { rabbitmq, postgres, hub } = services as Record<'rabbitmq' | 'postgres' | 'hub', Mapping>;
    const envOf = (s: Mapping) => s.environment as Record<string, string>;

    assert.match(String(rabbitmq.image), /^rabbitmq:3(\.\d+)*-management$/);
    assert.match(JSON.stringify((rabbitmq.healthcheck as Mapping).test), /rabbitmq-diagnostics.*ping/);
    assert.match(String(postgres.image), /^postgres:16\b/);
    assert.match(JSON.stringify((postgres.healthcheck as Mapping).test), /pg_isready/);
    const pgVolume = (postgres.volumes as string[]).find((v) => v.endsWith(':/var/lib/postgresql/data'));
    assert.ok(pgVolume && pgVolume.split(':')[0]! in (doc.volumes as Mapping), 'PostgreSQL keeps its data in a named volume');

    // The hub: built from the Dockerfile here; its health check is the image's HEALTHCHECK.
    assert.equal(hub.build, '.');
    assert.ok(existsSync(join(repoRoot, 'Dockerfile')));
    assert.ok(hub.healthcheck !== undefined || last(runtime, 'HEALTHCHECK'), 'the hub has a health check');
    assert.deepEqual(hub.depends_on, { rabbitmq: { condition: 'service_healthy' }, postgres: { condition: 'service_healthy' } });
    const env = envOf(hub);
    const amqp = new URL(env.HERALD_AMQP_URL!);
    assert.deepEqual([amqp.protocol, amqp.hostname], ['amqp:', 'rabbitmq'], 'HERALD_AMQP_URL names the rabbitmq service');
    assert.deepEqual([amqp.username, amqp.password], [envOf(rabbitmq).RABBITMQ_DEFAULT_USER, envOf(rabbitmq).RABBITMQ_DEFAULT_PASS]);
    const db = new URL(env.HERALD_DATABASE_URL!);
    assert.deepEqual([db.protocol, db.hostname], ['postgres:', 'postgres'], 'HERALD_DATABASE_URL names the postgres service');
    const pg = envOf(postgres);
    assert.deepEqual([db.username, db.password, db.pathname], [pg.POSTGRES_USER, pg.POSTGRES_PASSWORD, `/${pg.POSTGRES_DB}`]);
    assert.equal(env.HERALD_HTTP_HOST, '0.0.0.0');
    const config = normalizeConfig({}, { ...dockerEnv(runtime), ...env });
    assert.equal(config.databaseUrl, env.HERALD_DATABASE_URL, 'the hub uses PostgreSQL, not the embedded store');
    assert.equal(config.authEnabled, true, 'a hub reachable beyond its container requires tokens');
    assert.equal(config.adminToken, undefined, 'no admin token by default: the operator sets one');
    const api = new URL(env.HERALD_RABBITMQ_API!);
    assert.deepEqual([api.hostname, api.port, api.username], ['rabbitmq', '15672', envOf(rabbitmq).RABBITMQ_DEFAULT_USER]);
    const published = (hub.ports as string[]).map((p) => p.split(':'));
    assert.deepEqual(published.map((p) => Number(p.at(-1))).sort(), [config.httpPort, config.grpcPort].sort());

    for (const [name, s] of Object.entries(services)) {
      assert.equal(s.restart, 'unless-stopped', `${name}.restart`);
      assert.ok(s.image !== undefined || s.build !== undefined);
      for (const p of (s.ports ?? []) as string[]) assert.match(p, /^127\.0\.0\.1:/, `${name} publishes ${p} beyond 127.0.0.1`);
    }
    // The passwords are variables with defaults, and the file says to change them.
    assert.match(raw, /RABBITMQ_DEFAULT_PASS: \$\{\w+:-[^}]+\}/);
    assert.match(raw, /POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:-[^}]+\}/);
    assert.ok(variables.has('POSTGRES_PASSWORD'));
    const comments = raw
      .split('\n')
      .filter((l) => l.trim().startsWith('#'))
      .join(' ');
    assert.match(comments, /\bpasswords?\b[\s\S]*\bchange\b/i, 'a comment says the passwords must be changed');

    const compose = await run('docker', ['compose', 'version']);
    if (compose.code !== 0) {
      t.diagnostic(`docker compose is unavailable (${firstLine(compose)}): checked by this file's compose schema rules only`);
      return;
    }
    const config2 = await run('docker', ['compose', '-f', 'docker-compose.yml', 'config', '-q'], { timeoutMs: 60_000 });
    assert.equal(config2.code, 0, `docker compose config -q: ${config2.stderr}`);
    t.diagnostic(`checked by the schema rules and by docker compose config -q (${compose.stdout.trim()})`);
  });

  test('docs/operations.md lists every setting of config.ts, with its flag and default', () => {
    const doc = read('docs/operations.md');
    const section = /^## Configuration$([\s\S]*?)^## /m.exec(doc)?.[1];
    assert.ok(section, 'docs/operations.md has a "## Configuration" section');
    const rows = new Map<string, string[]>();
    for (const line of section.split('\n').filter((l) => /^\|\s*[^-\s]/.test(l))) {
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim());
      for (const [, name] of (cells[1] ?? '').matchAll(/`(HERALD_\w+)`/g)) rows.set(name!, cells);
    }
    const expected = configVariables();
    assert.deepEqual([...expected].filter((v) => !rows.has(v)).sort(), [], 'settings missing from the table');
    assert.deepEqual([...rows.keys()].filter((v) => !expected.has(v)).sort(), [], 'rows for variables the hub does not read');

    const defaults = normalizeConfig({}, {}) as unknown as Record<string, unknown>;
    for (const { key, flag, env } of configNames()) {
      const [flagCell, , defaultCell] = rows.get(env)!;
      assert.ok(
        flagCell!.includes(`\`${flag}\``) || /environment only/.test(flagCell!),
        `${env}: the flag column says ${flagCell}, config.ts says ${flag}`,
      );
      const value = key === 'databaseUrl' ? DEFAULT_DATA_DIR : defaults[key] === undefined ? 'none' : String(defaults[key]);
      // The value as a whole token: the default of 4 is not found in "1048576".
      const token = new RegExp(`(?<![\\w.])${value.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(?![\\d])`);
      assert.match(defaultCell!, token, `${env}: the default column says ${defaultCell}, the hub's default is ${value}`);
    }
  });

  test('the image builds, runs as node, and its herald starts with production dependencies only', async (t) => {
    const info = await run('docker', ['info', '--format', '{{.ServerVersion}}']);
    if (info.code !== 0) {
      t.skip(`no Docker daemon (docker info: ${firstLine(info)}): the image was not built`);
      return;
    }
    const tag = `herald-deploy-test:${process.pid}`;
    const built = await run('docker', ['build', '-t', tag, '.'], { timeoutMs: 1_100_000 });
    assert.equal(built.code, 0, `docker build:\n${built.stderr.slice(-4000)}`);
    try {
      const inspect = await run('docker', ['image', 'inspect', '--format', '{{json .Config}}', tag]);
      const config = JSON.parse(inspect.stdout) as { User: string; ExposedPorts: Record<string, object>; Healthcheck?: { Test: string[] } };
      assert.equal(config.User, 'node');
      assert.deepEqual(Object.keys(config.ExposedPorts).sort(), ['50051/tcp', '8080/tcp']);
      assert.match(JSON.stringify(config.Healthcheck?.Test), /\/readyz/);
      // A configuration error needs no broker: the CLI and the hub load from the installed tarballs.
      const bad = await run('docker', ['run', '--rm', tag, 'hub', '--http-port', 'abc'], { timeoutMs: 120_000 });
      assert.equal(bad.code, 2, `${bad.stdout}\n${bad.stderr}`);
      assert.match(bad.stderr, /invalid --http-port "abc"/);
      const devOnly = await run('docker', ['run', '--rm', '--entrypoint', 'ls', tag, '/app/node_modules']);
      for (const dev of ['typescript', 'tsx', '@biomejs', 'fast-check', 'yaml'])
        assert.ok(!devOnly.stdout.split('\n').includes(dev), `${dev} is in the image`);
      t.diagnostic(`built and ran ${tag} on Docker ${info.stdout.trim()}`);
    } finally {
      await run('docker', ['image', 'rm', '-f', tag]);
    }
  });
});
