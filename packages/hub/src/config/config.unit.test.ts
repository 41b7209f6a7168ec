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
  // 256 MiB of ingest memory / 1 MiB events: 256 messages in flight, batches of at most that.
  assert.equal(c.ingestMaxBytes, 256 * 1024 * 1024);
  assert.equal(c.prefetch, 256);
  assert.equal(c.batchSize, 256);
  assert.equal(c.readPoolSize, 4);
  assert.equal(c.queryTimeout, 30);
  assert.equal(c.httpRequestTimeout, 60);
  assert.equal(c.httpIdleTimeout, 120);
  assert.equal(c.httpKeepAliveTimeout, 72);
  assert.equal(c.maxGrpcStreams, 1000);
  assert.equal(c.maxPauses, 1000);
  assert.equal(c.maxSubscriptions, 10_000);
  assert.equal(c.maxReplays, 16);
  assert.equal(c.maxSseStreams, 1000);
  assert.equal(c.maxLongPolls, 1000);
});

test('the caps: flags win over environment; each is refused outside its range naming the setting', () => {
  const env = {
    HERALD_MAX_PAUSES: '5',
    HERALD_MAX_SUBSCRIPTIONS: '6',
    HERALD_MAX_REPLAYS: '7',
    HERALD_MAX_SSE_STREAMS: '8',
    HERALD_MAX_LONG_POLLS: '9',
  };
  const c = normalizeConfig({}, env);
  assert.deepEqual([c.maxPauses, c.maxSubscriptions, c.maxReplays, c.maxSseStreams, c.maxLongPolls], [5, 6, 7, 8, 9]);
  const f = normalizeConfig({ maxPauses: '1', maxSubscriptions: 2, maxReplays: '3', maxSseStreams: '4', maxLongPolls: '5' }, env);
  assert.deepEqual([f.maxPauses, f.maxSubscriptions, f.maxReplays, f.maxSseStreams, f.maxLongPolls], [1, 2, 3, 4, 5]);
  const cases: [Parameters<typeof normalizeConfig>[0], NodeJS.ProcessEnv, string][] = [
    [{}, { HERALD_MAX_PAUSES: '0' }, 'invalid HERALD_MAX_PAUSES "0": expected an integer from 1 to 100000'],
    [{}, { HERALD_MAX_SUBSCRIPTIONS: 'lots' }, 'invalid HERALD_MAX_SUBSCRIPTIONS "lots": expected an integer from 1 to 10000000'],
    [{ maxReplays: '1001' }, {}, 'invalid --max-replays "1001": expected an integer from 1 to 1000'],
    [{}, { HERALD_MAX_SSE_STREAMS: '-1' }, 'invalid HERALD_MAX_SSE_STREAMS "-1": expected an integer from 1 to 100000'],
    [{ maxLongPolls: '2.5' }, {}, 'invalid --max-long-polls "2.5": expected an integer from 1 to 100000'],
  ];
  for (const [opts, e, message] of cases) {
    assert.throws(
      () => normalizeConfig(opts, e),
      (err: Error & { code?: string }) => err.message === message && err.code === 'INVALID_CONFIG',
      message,
    );
  }
});

test('flags win over environment, environment over defaults', () => {
  const env = { HERALD_HTTP_PORT: '9000', HERALD_MODE: 'archive', HERALD_DATABASE_URL: 'postgres://u@db:5432/herald' };
  assert.equal(normalizeConfig({}, env).httpPort, 9000);
  assert.equal(normalizeConfig({ httpPort: '9100' }, env).httpPort, 9100);
  assert.equal(normalizeConfig({}, env).mode, 'archive');
  assert.equal(normalizeConfig({}, {}).queueType, 'classic');
  assert.equal(normalizeConfig({}, { HERALD_QUEUE_TYPE: 'Quorum' }).queueType, 'quorum');
  assert.equal(normalizeConfig({ queueType: 'classic' }, { HERALD_QUEUE_TYPE: 'quorum' }).queueType, 'classic');
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
    [{}, { HERALD_QUEUE_TYPE: 'stream' }, 'invalid HERALD_QUEUE_TYPE "stream": expected classic or quorum'],
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

test('a configuration error never shows a password: the URL is quoted with it redacted, in the message and the details', () => {
  const cases: NodeJS.ProcessEnv[] = [
    { HERALD_AMQP_URL: 'http://admin:hunter2@rabbit:5672' },
    { HERALD_AMQP_URL: 'amqp://admin:hunter2@rabbit:99999' },
    { HERALD_DATABASE_URL: 'mysql://app:hunter2@db/herald' },
    { HERALD_DATABASE_URL: 'postgres://app:hunter2@db:notaport/herald' },
  ];
  for (const env of cases) {
    assert.throws(
      () => normalizeConfig({}, env),
      (err: Error & { code?: string; details?: unknown }) =>
        err.code === 'INVALID_CONFIG' &&
        err.message.includes(':***@') &&
        !err.message.includes('hunter2') &&
        !JSON.stringify(err.details).includes('hunter2'),
      JSON.stringify(env),
    );
  }
});

test("dead letters max: subscribers' dead letters kept, default 100000, from a flag or the environment, validated", () => {
  assert.equal(normalizeConfig({}, {}).deadLettersMax, 100_000);
  assert.equal(normalizeConfig({}, { HERALD_DEAD_LETTERS_MAX: '50' }).deadLettersMax, 50);
  assert.equal(normalizeConfig({ deadLettersMax: '7' }, { HERALD_DEAD_LETTERS_MAX: '50' }).deadLettersMax, 7);
  assert.throws(
    () => normalizeConfig({}, { HERALD_DEAD_LETTERS_MAX: '0' }),
    /invalid HERALD_DEAD_LETTERS_MAX "0": expected an integer from 1 to 100000000/,
  );
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

test('ingest memory: the default prefetch is what fits HERALD_INGEST_MAX_BYTES, at most 2000, at least 1', () => {
  const kib = 1024;
  const mib = 1024 * kib;
  const at = (env: NodeJS.ProcessEnv) => {
    const c = normalizeConfig({}, env);
    return { prefetch: c.prefetch, batchSize: c.batchSize };
  };
  // Small events: the count cap of 2000 applies, batches keep their default of 500.
  assert.deepEqual(at({ HERALD_MAX_EVENT_BYTES: String(64 * kib) }), { prefetch: 2000, batchSize: 500 });
  assert.deepEqual(at({ HERALD_MAX_EVENT_BYTES: String(256 * kib) }), { prefetch: 1024, batchSize: 500 });
  assert.deepEqual(at({ HERALD_INGEST_MAX_BYTES: String(100 * mib) }), { prefetch: 100, batchSize: 100 });
  // The largest events: one in flight, batches of one.
  assert.deepEqual(at({ HERALD_MAX_EVENT_BYTES: String(128 * mib), HERALD_INGEST_MAX_BYTES: String(128 * mib) }), {
    prefetch: 1,
    batchSize: 1,
  });
  // Every result keeps prefetch × max event size within the bound.
  for (const [eventBytes, bound] of [
    [1, 1],
    [1000, 999_999],
    [mib, 256 * mib],
    [3 * mib, 1000 * mib],
    [128 * mib, 64 * 1024 * mib],
  ] as const) {
    const c = normalizeConfig({}, { HERALD_MAX_EVENT_BYTES: String(eventBytes), HERALD_INGEST_MAX_BYTES: String(bound) });
    assert.ok(c.prefetch >= 1 && c.prefetch <= 2000, `prefetch ${c.prefetch}`);
    assert.ok(c.prefetch * c.maxEventBytes <= c.ingestMaxBytes, `${c.prefetch} × ${eventBytes} within ${bound}`);
    assert.ok(c.batchSize >= 1 && c.batchSize <= c.prefetch);
  }
  // An explicit prefetch that fits is kept; the batch size follows it down.
  assert.deepEqual((({ prefetch, batchSize }) => ({ prefetch, batchSize }))(normalizeConfig({ prefetch: 200 }, {})), {
    prefetch: 200,
    batchSize: 200,
  });
});

test('ingest memory: a prefetch or batch size past the bound in bytes is one line naming the setting', () => {
  const cases: [Parameters<typeof normalizeConfig>[0], NodeJS.ProcessEnv, string][] = [
    [
      {},
      { HERALD_PREFETCH: '2000' },
      'invalid HERALD_PREFETCH "2000": 2000 messages of up to 1048576 bytes (HERALD_MAX_EVENT_BYTES) exceed HERALD_INGEST_MAX_BYTES (268435456 bytes): at most 256',
    ],
    [
      { prefetch: 300, ingestMaxBytes: 1024 * 1024 * 1024, maxEventBytes: 8 * 1024 * 1024 },
      {},
      'invalid --prefetch "300": 300 messages of up to 8388608 bytes (--max-event-bytes) exceed --ingest-max-bytes (1073741824 bytes): at most 128',
    ],
    [
      {},
      { HERALD_BATCH_SIZE: '500' },
      'invalid HERALD_BATCH_SIZE "500": must be at most the prefetch (256, what HERALD_INGEST_MAX_BYTES / HERALD_MAX_EVENT_BYTES allows); lower it or raise HERALD_INGEST_MAX_BYTES',
    ],
    [{ batchSize: 3000, maxEventBytes: 1024 }, {}, 'invalid --batch-size "3000": must be at most the prefetch (2000)'],
    [
      {},
      { HERALD_INGEST_MAX_BYTES: '1000', HERALD_MAX_EVENT_BYTES: '1001' },
      'invalid HERALD_INGEST_MAX_BYTES "1000": must be at least the max event size (HERALD_MAX_EVENT_BYTES, 1001 bytes)',
    ],
    [{}, { HERALD_INGEST_MAX_BYTES: '256MiB' }, 'invalid HERALD_INGEST_MAX_BYTES "256MiB": expected an integer from 1 to 68719476736'],
  ];
  for (const [opts, env, message] of cases) {
    assert.throws(
      () => normalizeConfig(opts, env),
      (err: Error & { code?: string }) => err.message === message && err.code === 'INVALID_CONFIG' && !err.message.includes('\n'),
      message,
    );
  }
});

/** The one line a malformed time setting gets. */
function expectedDuration(settingAndValue: string): string {
  return `invalid ${settingAndValue}: expected a duration such as 500ms, 30s, 5m, 1h or 1h30m, or a number of seconds`;
}

test('read pool, query timeout, HTTP timeouts (durations or seconds) and the gRPC stream cap: from flags or environment, validated', () => {
  const c = normalizeConfig(
    { readPoolSize: '8', httpIdleTimeout: 0 },
    {
      HERALD_QUERY_TIMEOUT: '5',
      HERALD_HTTP_REQUEST_TIMEOUT: '10',
      HERALD_HTTP_KEEP_ALIVE_TIMEOUT: '5',
      HERALD_MAX_GRPC_STREAMS: '20',
    },
  );
  assert.deepEqual(
    [c.readPoolSize, c.queryTimeout, c.httpRequestTimeout, c.httpIdleTimeout, c.httpKeepAliveTimeout, c.maxGrpcStreams],
    [8, 5, 10, 0, 5, 20],
  );
  // Durations, by flag or environment; a bare number stays seconds.
  const d = normalizeConfig(
    { queryTimeout: '2m', httpRequestTimeout: '500ms' },
    { HERALD_HTTP_IDLE_TIMEOUT: '1m30s', HERALD_HTTP_KEEP_ALIVE_TIMEOUT: '30s' },
  );
  assert.deepEqual([d.queryTimeout, d.httpRequestTimeout, d.httpIdleTimeout, d.httpKeepAliveTimeout], [120, 0.5, 90, 30]);
  assert.equal(normalizeConfig({}, { HERALD_HTTP_IDLE_TIMEOUT: '0s' }).httpIdleTimeout, 0);
  assert.equal(normalizeConfig({ httpKeepAliveTimeout: '1d' }, {}).httpKeepAliveTimeout, 86_400);
  const cases: [Parameters<typeof normalizeConfig>[0], NodeJS.ProcessEnv, string][] = [
    [{}, { HERALD_READ_POOL_SIZE: '0' }, 'invalid HERALD_READ_POOL_SIZE "0": expected an integer from 1 to 100'],
    [{ queryTimeout: '0' }, {}, 'invalid --query-timeout "0": must be more than 0, e.g. 30s'],
    [{}, { HERALD_QUERY_TIMEOUT: '1.5' }, expectedDuration('HERALD_QUERY_TIMEOUT "1.5"')],
    [{}, { HERALD_QUERY_TIMEOUT: '500ms' }, 'invalid HERALD_QUERY_TIMEOUT "500ms": expected at least 1s, e.g. 30s'],
    [{ queryTimeout: '2h' }, {}, 'invalid --query-timeout "2h": expected at most 1h, e.g. 30s'],
    [{}, { HERALD_HTTP_REQUEST_TIMEOUT: '-1' }, expectedDuration('HERALD_HTTP_REQUEST_TIMEOUT "-1"')],
    [{}, { HERALD_HTTP_IDLE_TIMEOUT: 'soon' }, expectedDuration('HERALD_HTTP_IDLE_TIMEOUT "soon"')],
    [{}, { HERALD_HTTP_IDLE_TIMEOUT: '2 m' }, expectedDuration('HERALD_HTTP_IDLE_TIMEOUT "2 m"')],
    [{}, { HERALD_HTTP_KEEP_ALIVE_TIMEOUT: '0' }, 'invalid HERALD_HTTP_KEEP_ALIVE_TIMEOUT "0": must be more than 0, e.g. 30s'],
    [{ httpKeepAliveTimeout: 7.5 }, {}, expectedDuration('--http-keep-alive-timeout "7.5"')],
    [{ maxGrpcStreams: 0 }, {}, 'invalid --max-grpc-streams "0": expected an integer from 1 to 100000'],
  ];
  for (const [opts, env, message] of cases) {
    assert.throws(
      () => normalizeConfig(opts, env),
      (err: Error & { code?: string }) => err.message === message && err.code === 'INVALID_CONFIG',
      message,
    );
  }
});
