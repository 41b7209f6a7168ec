import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { repoRoot, SOURCE_NODE_ARGS } from '@herald/testing';

const main = 'packages/cli/src/main.ts';
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/**
 * Runs the real `herald` from the sources with only `env` for HERALD_* (the parent's are dropped),
 * and returns its exit code, stdout and stderr.
 */
function herald(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(base)) if (k.startsWith('HERALD_')) delete base[k];
  return new Promise((resolve) => {
    execFile(process.execPath, [...SOURCE_NODE_ARGS, main, ...args], { cwd: repoRoot, env: { ...base, ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** What a request to the stand-in hub carried. */
interface Seen {
  method: string;
  path: string;
  authorization: string | undefined;
}

// Each test starts the CLI from its sources (tsx): several seconds apiece when the suite runs
// files side by side on two cores.
describe('herald: flags, environment, exit codes, --version (e2e, the CLI process)', { timeout: 120_000 }, () => {
  // A stand-in for the hub's REST API: answers GET /api/v1/pauses like the hub with no pause.
  let server: Server;
  let hubUrl: string;
  let seen: Seen[] = [];

  before(async () => {
    server = createServer((req, res) => {
      seen.push({ method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization });
      if (req.method === 'GET' && req.url === '/api/v1/pauses') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"items":[]}');
        return;
      }
      res.writeHead(404, { 'content-type': 'application/problem+json' }).end('{"title":"Not Found","code":"NOT_FOUND","detail":"nothing"}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    hubUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    seen = [];
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  test('--version and -V print the version of the cli package.json', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await herald([flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
    }
  });

  test('--help documents the exit codes and the environment variables', async () => {
    const r = await herald(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Exit codes:\n {2}0 {2}success\n {2}1 {2}failure.*\n {2}2 {2}usage error/);
    for (const name of ['HERALD_AMQP_URL', 'HERALD_HUB_URL', 'HERALD_GRPC_URL', 'HERALD_TOKEN']) assert.ok(r.stdout.includes(name), name);
  });

  test('an unknown option, an old flag, a missing argument, an unknown command: exit 2, the message and the help hint', async () => {
    for (const [args, message] of [
      [['pauses', '--frobnicate'], "herald: unknown option '--frobnicate'"],
      [['pauses', '--hub', hubUrl], "herald: unknown option '--hub'"],
      [['publish', 'billing', 'invoice.paid', '--url', 'amqp://x'], "herald: unknown option '--url'"],
      [['pause'], "herald: missing required argument 'selector'"],
      [['frobnicate'], "herald: unknown command 'frobnicate'"],
    ] as const) {
      const r = await herald([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines[0], message);
      assert.match(lines[1] ?? '', /^\(see herald( [a-z-]+)? --help\)$/);
      assert.equal(lines.length, 2, r.stderr);
    }
  });

  test('a bad duration exits 2 naming the flag, before any request', async () => {
    const r = await herald(['pause', 'x:*', '--ttl', '5parsecs'], { HERALD_HUB_URL: hubUrl });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      'herald: invalid --ttl "5parsecs": expected a duration such as 500ms, 30s, 5m, 1h or 1h30m, or a number of seconds\n(see herald pause --help)\n',
    );
    assert.deepEqual(seen, []);
    const bench = await herald(['bench', '--duration', '-5s']);
    assert.equal(bench.code, 2, bench.stderr);
    assert.match(bench.stderr, /^herald: invalid --duration "-5s"/);
  });

  test('an unreachable hub exits 1 with one line', async () => {
    const r = await herald(['events', '--hub-url', 'http://127.0.0.1:1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^herald: cannot reach the hub at http:\/\/127\.0\.0\.1:1 \(.+\): start it with `herald hub`.*\n$/);
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
  });

  test('HERALD_HUB_URL is honoured the same as --hub-url; no token, no Authorization', async () => {
    const byEnv = await herald(['pauses'], { HERALD_HUB_URL: hubUrl });
    const byFlag = await herald(['pauses', '--hub-url', `${hubUrl}/api/v1`], { HERALD_HUB_URL: 'http://127.0.0.1:1' });
    for (const r of [byEnv, byFlag]) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'no pauses\n');
    }
    assert.deepEqual(seen, [
      { method: 'GET', path: '/api/v1/pauses', authorization: undefined },
      { method: 'GET', path: '/api/v1/pauses', authorization: undefined },
    ]);
  });

  test('--token and HERALD_TOKEN both arrive as Authorization: Bearer; the flag wins', async () => {
    const runs = [
      await herald(['pauses', '--hub-url', hubUrl, '--token', 'flag-token']),
      await herald(['pauses', '--hub-url', hubUrl], { HERALD_TOKEN: 'env-token' }),
      await herald(['pauses', '--hub-url', hubUrl, '--token', 'flag-token'], { HERALD_TOKEN: 'env-token' }),
    ];
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      seen.map((s) => s.authorization),
      ['Bearer flag-token', 'Bearer env-token', 'Bearer flag-token'],
    );
    const bad = await herald(['pauses', '--hub-url', hubUrl], { HERALD_TOKEN: 'two words' });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /^herald: invalid HERALD_TOKEN: expected up to 4096 printable ASCII characters/);
    assert.ok(!bad.stderr.includes('two words'));
    assert.equal(seen.length, 3, 'no request with a bad token');
  });

  test('the hub refusing is a failure (1), not a usage error', async () => {
    const r = await herald(['replay-status', 'r-1', '--hub-url', hubUrl]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, 'herald: the hub refused GET /api/v1/replays/r-1: 404 NOT_FOUND: nothing\n');
  });
});
