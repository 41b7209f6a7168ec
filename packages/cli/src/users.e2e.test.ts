// `herald users` and `herald tokens` against a real hub process (RabbitMQ with its management API,
// the embedded store) that requires authentication: the admin token manages users and tokens
// through the CLI process; the tokens it creates publish within their role, and stop working once
// revoked; a user's RabbitMQ password is printed once, by the command that made it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createTestVhost,
  freePort,
  type HeraldProcess,
  managementUrl,
  spawnHerald,
  startHubProcess,
  type TestVhost,
} from '@herald/testing';

const ADMIN_TOKEN = randomBytes(32).toString('base64url');
const run = randomBytes(3).toString('hex');
const alice = `alice-${run}`;
const bob = `bob-${run}`;

/** What a `herald` run printed and how it ended. */
interface Run {
  code: number | string;
  stdout: string;
  stderr: string;
}

describe('herald users, herald tokens, herald exchanges (e2e: hub process with HERALD_AUTH=required, the CLI process)', {
  timeout: 120_000,
}, () => {
  let vhost: TestVhost;
  let dir: string;
  let hub: HeraldProcess;
  let base: string;

  /** Runs `herald <args>` against the hub, as the admin unless `token` says otherwise ('' sends none). */
  const herald = async (args: string[], token: string = ADMIN_TOKEN): Promise<Run> => {
    const p = spawnHerald(args, { HERALD_HUB_URL: base, ...(token === '' ? {} : { HERALD_TOKEN: token }) });
    let stdout = '';
    p.child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const code = await p.exited;
    return { code, stdout, stderr: p.stderr() };
  };

  /** POST /api/v1/events with a bearer token; the status and the problem's code. */
  const publish = async (token: string, sender: string): Promise<{ status: number; code: unknown }> => {
    const res = await fetch(`${base}/api/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ sender, type: 'invoice.paid', data: { run } }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json()) as { code?: unknown };
    return { status: res.status, code: body.code };
  };

  const userStatus = async (name: string): Promise<number> => {
    const res = await fetch(`${base}/api/v1/users/${name}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await res.body?.cancel();
    return res.status;
  };

  before(async () => {
    vhost = await createTestVhost('cli-users');
    dir = await mkdtemp(join(tmpdir(), 'herald-cli-users-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: join(dir, 'store'),
      HERALD_HTTP_PORT: String(port),
      HERALD_AUTH: 'required',
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
      HERALD_RABBITMQ_API: managementUrl,
    });
  });

  after(async () => {
    for (const name of [alice, bob]) {
      await fetch(`${base}/api/v1/users/${name}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }).catch(
        () => undefined,
      );
    }
    await hub?.kill();
    await vhost?.delete();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('without a token: exit 1, one line saying authentication is required', async () => {
    const r = await herald(['users', 'list'], '');
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^herald: the hub refused GET \/api\/v1\/users: 401 UNAUTHENTICATED: authentication required: [^\n]*\n$/);
  });

  let secret = '';
  let tokenId = '';

  test('users add --publisher prints the user and its RabbitMQ credentials once; tokens create --quiet prints the secret alone, which publishes as its sender only', async () => {
    const added = await herald(['users', 'add', alice, '--publisher', 'billing']);
    assert.equal(added.code, 0, added.stderr);
    const lines = added.stdout.split('\n');
    assert.equal(lines.length, 4, added.stdout);
    const [user, usernameLine, passwordLine] = lines;
    const amqpUser = /^amqp username: (\S+)$/.exec(usernameLine ?? '')?.[1];
    assert.ok(amqpUser, added.stdout);
    assert.match(user ?? '', new RegExp(`^${alice} {2}publisher=billing {2}created \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z {2}amqp ${amqpUser}$`));
    const amqpPassword = /^amqp password: (\S+)$/.exec(passwordLine ?? '')?.[1];
    assert.ok(amqpPassword, added.stdout);
    assert.equal(added.stderr, 'herald: the RabbitMQ password is not shown again: store it now\n');

    const listed = await herald(['users', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(listed.stdout.split('\n').includes(user ?? ''), listed.stdout);
    assert.ok(!listed.stdout.includes(amqpPassword), 'users list does not show the RabbitMQ password');

    const created = await herald(['tokens', 'create', alice, '--quiet']);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stderr, '', '--quiet prints nothing on stderr');
    assert.match(created.stdout, /^hrd_[A-Za-z0-9_-]+\n$/);
    secret = created.stdout.trim();

    assert.deepEqual(await publish(secret, 'billing'), { status: 202, code: undefined });
    assert.deepEqual(await publish(secret, 'shipping'), { status: 403, code: 'FORBIDDEN' });
  });

  test('tokens create without --quiet: what it is on stderr, the secret alone on stdout; tokens list never prints a secret', async () => {
    const named = await herald(['tokens', 'create', alice, '--name', 'deploy']);
    assert.equal(named.code, 0, named.stderr);
    assert.match(named.stdout, /^hrd_[A-Za-z0-9_-]+\n$/);
    assert.match(
      named.stderr,
      new RegExp(`^herald: token deploy \\([0-9a-f-]{36}\\) of ${alice}: the secret below is not shown again\\n$`),
    );
    const other = named.stdout.trim();
    assert.notEqual(other, secret);

    const lines = await herald(['tokens', 'list', alice]);
    assert.equal(lines.code, 0, lines.stderr);
    const rows = lines.stdout.trim().split('\n');
    assert.equal(rows.length, 2, lines.stdout);
    assert.ok(
      rows.some((l) => / {2}deploy {2}created \S+ {2}last used never$/.test(l)),
      lines.stdout,
    );
    assert.ok(
      rows.some((l) => / {2}cli-\S+ {2}created \S+ {2}last used \S+$/.test(l)),
      lines.stdout,
    );

    const json = await herald(['tokens', 'list', alice, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const items = JSON.parse(json.stdout) as { id: string; name: string }[];
    assert.equal(items.length, 2, json.stdout);
    assert.ok(
      items.some((t) => t.name === 'deploy'),
      json.stdout,
    );
    for (const out of [lines.stdout, json.stdout]) {
      assert.ok(!out.includes(secret) && !out.includes(other), 'no secret in a listing');
      assert.ok(!out.includes('hrd_'), 'no secret in a listing');
    }
    const first = items.find((t) => t.name.startsWith('cli-'));
    assert.ok(first, json.stdout);
    tokenId = first.id;
  });

  test('tokens revoke: the very next request with the secret is 401', async () => {
    assert.ok(tokenId && secret, 'the earlier tests created the token');
    const r = await herald(['tokens', 'revoke', alice, tokenId]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `revoked token ${tokenId} of ${alice}\n`);
    assert.deepEqual(await publish(secret, 'billing'), { status: 401, code: 'UNAUTHENTICATED' });

    const again = await herald(['tokens', 'revoke', alice, tokenId]);
    assert.equal(again.code, 1, 'a token revoked already: the hub refuses');
    assert.match(again.stderr, /^herald: the hub refused DELETE \/api\/v1\/users\/[^ ]+\/tokens\/[^ ]+: 404 NOT_FOUND: [^\n]+\n$/);
  });

  test('users roles replaces the roles; users remove deletes the user, a second remove exits 1', async () => {
    const roles = await herald(['users', 'roles', alice, '--subscriber', 'billing:*', '--subscriber', 'crm:contact.*']);
    assert.equal(roles.code, 0, roles.stderr);
    assert.match(roles.stdout, new RegExp(`^${alice} {2}subscriber=billing:\\*,crm:contact\\.\\* {2}created \\S+ {2}amqp \\S+\\n$`));

    const removed = await herald(['users', 'remove', alice]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, `removed user ${alice}\n`);
    assert.equal(await userStatus(alice), 404);
    const listed = await herald(['users', 'list', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(!(JSON.parse(listed.stdout) as { name: string }[]).some((u) => u.name === alice), listed.stdout);

    const again = await herald(['users', 'remove', alice]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`^herald: the hub refused DELETE /api/v1/users/${alice}: 404 NOT_FOUND: [^\\n]+\\n$`));
  });

  test('exchanges add|list|remove with the admin token; without one, exit 1', async () => {
    const feed = `feed-${run}`;
    const added = await herald(['exchanges', 'add', feed, 'billing:invoice.*']);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, new RegExp(`^${feed}  billing:invoice\\.\\*  created `));
    const listed = await herald(['exchanges', 'list', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const items = JSON.parse(listed.stdout) as { name: string; bindingKeys: string[] }[];
    assert.deepEqual(items.find((e) => e.name === feed)?.bindingKeys, ['billing.invoice.*']);
    assert.equal((await herald(['exchanges', 'list'], '')).code, 1);
    assert.equal((await herald(['exchanges', 'remove', feed])).code, 0);
    const again = await herald(['exchanges', 'remove', feed]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no exchange/);
  });

  test('bad flags exit 2 before any call: no role, a bad sender, an unknown option', async () => {
    for (const [args, message] of [
      [['users', 'add', bob], 'herald: give at least one role: --admin, --publisher <senders>, --subscriber <selector>'],
      [['users', 'add', bob, '--publisher', 'bil@ing'], 'herald: invalid --publisher "bil@ing": invalid sender'],
      [['users', 'add', bob, '--frobnicate'], "herald: unknown option '--frobnicate'"],
      [['tokens', 'revoke', bob], "herald: missing required argument 'id'"],
    ] as const) {
      const r = await herald([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stderr.startsWith(message), `${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`(see herald ${args[0]} ${args[1]} --help)`), `the hint names the subcommand: ${r.stderr}`);
      assert.equal(r.stdout, '');
    }
    assert.equal(await userStatus(bob), 404, 'no user was created');
  });
});
