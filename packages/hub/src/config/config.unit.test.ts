import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { normalizeConfig } from './config.ts';

test('defaults when neither flags nor environment say anything', () => {
  const c = normalizeConfig({}, {});
  assert.equal(c.amqpUrl, 'amqp://guest:guest@127.0.0.1:5672');
  assert.equal(c.databaseUrl, undefined);
  assert.equal(c.dataDir, resolve('.herald/store'));
  assert.equal(c.httpPort, 8080);
  assert.equal(c.httpHost, '127.0.0.1');
  assert.equal(c.grpcPort, 50051);
  assert.equal(c.mode, 'router');
  assert.equal(c.maxEventBytes, 1024 * 1024);
  assert.equal(c.batchSize, 500);
  assert.equal(c.prefetch, 2000);
});

test('flags win over environment, environment over defaults', () => {
  const env = { HERALD_HTTP_PORT: '9000', HERALD_MODE: 'archive', HERALD_DATABASE_URL: 'postgres://u@db:5432/herald' };
  assert.equal(normalizeConfig({}, env).httpPort, 9000);
  assert.equal(normalizeConfig({ httpPort: '9100' }, env).httpPort, 9100);
  assert.equal(normalizeConfig({}, env).mode, 'archive');
  assert.equal(normalizeConfig({}, env).databaseUrl, 'postgres://u@db:5432/herald');
});

test('a directory or file: URL selects the embedded store there', () => {
  assert.equal(normalizeConfig({ databaseUrl: '/var/lib/herald' }, {}).dataDir, '/var/lib/herald');
  assert.equal(normalizeConfig({ databaseUrl: 'file:///srv/h' }, {}).dataDir, '/srv/h');
  assert.equal(normalizeConfig({ databaseUrl: '/srv/h' }, {}).databaseUrl, undefined);
});

test('bad settings are rejected with one line naming the flag or variable', () => {
  const cases: [Parameters<typeof normalizeConfig>[0], NodeJS.ProcessEnv, string][] = [
    [{}, { HERALD_HTTP_PORT: 'eighty' }, 'invalid HERALD_HTTP_PORT "eighty": expected an integer from 0 to 65535'],
    [{ httpPort: '70000' }, {}, 'invalid --http-port "70000": expected an integer from 0 to 65535'],
    [{ mode: 'fast' }, {}, 'invalid --mode "fast": expected router or archive'],
    [{}, { HERALD_AMQP_URL: 'http://x' }, 'invalid HERALD_AMQP_URL "http://x": expected an amqp:// or amqps:// URL'],
    [
      {},
      { HERALD_DATABASE_URL: 'mysql://x' },
      'invalid HERALD_DATABASE_URL "mysql://x": expected a postgres:// URL, a file: URL or a directory path',
    ],
    [{}, { HERALD_MAX_EVENT_BYTES: '0' }, 'invalid HERALD_MAX_EVENT_BYTES "0": expected an integer from 1 to 134217728'],
    [{ batchSize: 1000, prefetch: 10 }, {}, 'invalid --prefetch "10": must be at least the batch size (1000)'],
    [{}, { HERALD_LOG_LEVEL: 'loud' }, 'invalid HERALD_LOG_LEVEL "loud": expected one of fatal, error, warn, info, debug, trace, silent'],
  ];
  for (const [opts, env, message] of cases) {
    assert.throws(
      () => normalizeConfig(opts, env),
      (err: Error & { code?: string }) => err.message === message && err.code === 'INVALID_CONFIG' && !err.message.includes('\n'),
      message,
    );
  }
});

test('receiver max length: default 10000, from the environment, validated', () => {
  assert.equal(normalizeConfig({}, {}).receiverMaxLength, 10_000);
  assert.equal(normalizeConfig({}, { HERALD_RECEIVER_MAX_LENGTH: '50' }).receiverMaxLength, 50);
  assert.equal(normalizeConfig({ grpcPort: 0 }, {}).grpcPort, 0);
  assert.throws(
    () => normalizeConfig({}, { HERALD_RECEIVER_MAX_LENGTH: '0' }),
    /invalid HERALD_RECEIVER_MAX_LENGTH "0": expected an integer from 1 to 10000000/,
  );
});
