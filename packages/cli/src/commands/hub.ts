import { ErrorCodes, redactSecrets } from '@herald/core';
import { createHub, type HubOptions, normalizeConfig } from '@herald/hub';
import type { Command } from 'commander';

/**
 * `herald hub`: runs the hub in the foreground. Flags override HERALD_* variables, which override
 * the defaults. Time settings are durations (`30s`, `500ms`, `2m`); a bare number is seconds. Invalid configuration or an unreachable RabbitMQ/database at start prints one line
 * to stderr and exits 1 (2 for configuration, also when a queue exists with the other HERALD_QUEUE_TYPE). SIGTERM or SIGINT stops gracefully (the batch in
 * flight is finished); a second signal exits at once.
 */
export function registerHub(program: Command): void {
  program
    .command('hub')
    .description('run the hub: ingest, the log, the REST API, gRPC subscriptions')
    .option('--mode <mode>', 'router | archive (HERALD_MODE, default router)')
    .option('--queue-type <type>', 'classic | quorum: the type of the queues the hub declares (HERALD_QUEUE_TYPE, default classic)')
    .option('--amqp-url <url>', 'RabbitMQ (HERALD_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672)')
    .option('--database-url <url>', 'postgres:// URL, or a directory for the embedded store (HERALD_DATABASE_URL, default ./.herald/)')
    .option('--http-port <port>', 'REST port (HERALD_HTTP_PORT, default 8080)')
    .option('--http-host <host>', 'REST address (HERALD_HTTP_HOST, default 127.0.0.1)')
    .option('--grpc-port <port>', 'gRPC port: Subscribe and Publish (HERALD_GRPC_PORT, default 50051; 0 = any free port)')
    .option('--max-event-bytes <n>', 'largest event body (HERALD_MAX_EVENT_BYTES, default 1048576)')
    .option('--batch-size <n>', 'most events per store transaction (HERALD_BATCH_SIZE, default 500 or the prefetch when smaller)')
    .option(
      '--prefetch <n>',
      'unacknowledged ingest messages in flight (HERALD_PREFETCH, default min(2000, ingest max bytes / max event bytes): 256)',
    )
    .option('--ingest-max-bytes <n>', 'most bytes of event bodies ingest holds at once (HERALD_INGEST_MAX_BYTES, default 268435456)')
    .option('--read-pool-size <n>', 'PostgreSQL connections for reading the log (HERALD_READ_POOL_SIZE, default 4)')
    .option('--query-timeout <duration>', 'how long a read of the log may run, 1s to 1h (HERALD_QUERY_TIMEOUT, default 30s)')
    .option(
      '--http-request-timeout <duration>',
      'how long receiving a whole HTTP request may take; 0 = none (HERALD_HTTP_REQUEST_TIMEOUT, default 60s)',
    )
    .option(
      '--http-idle-timeout <duration>',
      'how long an HTTP connection may stay silent; 0 = none (HERALD_HTTP_IDLE_TIMEOUT, default 2m)',
    )
    .option(
      '--http-keep-alive-timeout <duration>',
      'how long an idle keep-alive connection is kept (HERALD_HTTP_KEEP_ALIVE_TIMEOUT, default 72s)',
    )
    .option('--max-grpc-streams <n>', 'concurrent gRPC Subscribe streams (HERALD_MAX_GRPC_STREAMS, default 1000)')
    .option(
      '--publish-max-bytes <n>',
      'bytes of PublishStream events unanswered, all streams together (HERALD_PUBLISH_MAX_BYTES, default 256 MiB)',
    )
    .option('--publish-max-events <n>', 'PublishStream events unanswered, all streams together (HERALD_PUBLISH_MAX_EVENTS, default 50000)')
    .option(
      '--publish-max-unforwarded <n>',
      'events the direct path stored and not out on herald.events yet (HERALD_PUBLISH_MAX_UNFORWARDED, default 100000)',
    )
    .option('--max-pauses <n>', 'active pauses (HERALD_MAX_PAUSES, default 1000)')
    .option('--max-subscriptions <n>', 'durable subscriptions (HERALD_MAX_SUBSCRIPTIONS, default 10000)')
    .option('--max-replays <n>', 'replays pending or running (HERALD_MAX_REPLAYS, default 16)')
    .option('--max-sse-streams <n>', 'concurrent SSE streams (HERALD_MAX_SSE_STREAMS, default 1000)')
    .option('--max-long-polls <n>', 'concurrent long polls (HERALD_MAX_LONG_POLLS, default 1000)')
    .option(
      '--receiver-max-length <n>',
      'live events a subscription consumer buffers in memory before it reads the log instead (HERALD_RECEIVER_MAX_LENGTH, default 10000)',
    )
    .option('--dead-letters-max <n>', "subscribers' dead letters kept, the oldest deleted beyond (HERALD_DEAD_LETTERS_MAX, default 100000)")
    .option('--log-level <level>', 'pino level (HERALD_LOG_LEVEL, default info)')
    .option('--log-format <format>', 'auto: readable on a terminal, JSON otherwise | pretty | json (HERALD_LOG_FORMAT, default auto)')
    .option('--auth <mode>', 'auto: off on a loopback address, required elsewhere | required | off (HERALD_AUTH, default auto)')
    .option('--rabbitmq-api <url>', 'RabbitMQ management API with admin credentials: RabbitMQ users for Herald users (HERALD_RABBITMQ_API)')
    .option(
      '--auth-failures-per-minute <n>',
      'failed authentications per client address per minute before 429 (HERALD_AUTH_FAILURES_PER_MINUTE, default 30)',
    )
    .option(
      '--publish-rate-per-token <n>',
      'REST publishes per second per token, 0 = no limit (HERALD_PUBLISH_RATE_PER_TOKEN, default 1000)',
    )
    .option('--metrics <on|off>', 'Prometheus metrics at /metrics and stats at /api/v1/stats (HERALD_METRICS, default on)')
    .option(
      '--metrics-max-flows <n>',
      'sender×type series the metrics keep, the rest counted as other (HERALD_METRICS_MAX_FLOWS, default 1000)',
    )
    .addHelpText(
      'after',
      '\nHERALD_ADMIN_TOKEN (environment only, so it stays out of the process list): a token the hub accepts as an admin.',
    )
    .addHelpText('after', '\nTimes are durations such as 500ms, 30s, 2m or 1h30m; a bare number is seconds.')
    .action(async (opts: HubOptions) => {
      let config: ReturnType<typeof normalizeConfig>;
      try {
        config = normalizeConfig(opts);
      } catch (err) {
        process.stderr.write(`herald: ${redactSecrets(err instanceof Error ? err.message : String(err))}\n`);
        process.exit(2);
      }
      const hub = createHub(config);
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        signals++;
        if (signals > 1) process.exit(130);
        hub.logger.info({ signal }, 'signal received: stopping');
        hub.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      try {
        await hub.start();
      } catch (err) {
        process.stderr.write(`herald: ${redactSecrets(err instanceof Error ? err.message : String(err))}\n`);
        // A setting the broker refuses (a queue of the other HERALD_QUEUE_TYPE) is configuration too.
        process.exit((err as { code?: unknown }).code === ErrorCodes.INVALID_CONFIG ? 2 : 1);
      }
    });
}
