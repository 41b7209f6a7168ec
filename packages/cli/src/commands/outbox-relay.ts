import { createOutboxRelay, migrateOutbox } from '@herald/client/outbox';
import { redactSecrets, redactUrl } from '@herald/core';
import type { Command } from 'commander';
import pg from 'pg';
import { durationFlag, UsageError } from '../usage.ts';
import { amqpUrl, amqpUrlOption } from './flags.ts';
import type { RegisterCommand } from './index.ts';

interface RelayFlags {
  databaseUrl?: string;
  amqpUrl?: string;
  url?: string;
  batchSize?: string;
  pollInterval?: string;
  retention?: string;
  maxAttempts?: string;
  schema?: string;
  table?: string;
  migrate?: boolean;
}

/** A whole-number flag within bounds, or a UsageError naming it. */
function count(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = /^[0-9]{1,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= min && n <= max))
    throw new UsageError(`invalid ${flag} ${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`);
  return n;
}

function line(text: string): void {
  process.stderr.write(`herald outbox-relay: ${redactSecrets(text)}\n`);
}

/**
 * `herald outbox-relay --database-url postgres://… [--amqp-url amqp://…]`: publishes a service's
 * outbox table to herald.ingest until stopped (docs/outbox.md). Several may run on one database:
 * one is active, the others stand by. `--migrate` creates the tables first. SIGTERM or SIGINT
 * finishes the round in flight, gives up the lease and exits 0; a second signal exits at once.
 * State changes, parked rows and connection trouble are printed to stderr, one line each.
 */
export const registerOutboxRelay: RegisterCommand = (program: Command) => {
  program
    .command('outbox-relay')
    .description("publish a service's transactional outbox (its PostgreSQL table) to Herald")
    .option('--database-url <url>', "the service's PostgreSQL, postgres://… (HERALD_OUTBOX_DATABASE_URL)")
    .addOption(amqpUrlOption())
    .option('--url <url>', 'the same as --amqp-url')
    .option('--batch-size <n>', 'most rows per round of confirms (default 100)')
    .option('--poll-interval <duration>', 'how often to look for rows without a NOTIFY (default 1s)')
    .option('--retention <duration>', 'how long published rows are kept before they are deleted; 0 deletes at once (default 1h)')
    .option('--max-attempts <n>', 'refusals of one row before it is parked; 0 = never (default 10)')
    .option('--schema <name>', 'schema of the tables (default public)')
    .option('--table <name>', 'the outbox table (default herald_outbox)')
    .option('--migrate', 'create the outbox and inbox tables first (idempotent)')
    .action(async (o: RelayFlags) => {
      const database = o.databaseUrl || process.env.HERALD_OUTBOX_DATABASE_URL;
      if (!database) throw new UsageError('--database-url (or HERALD_OUTBOX_DATABASE_URL) is required: the database of the outbox');
      if (!/^postgres(ql)?:\/\//.test(database)) throw new UsageError('invalid --database-url: expected a postgres:// URL');
      const url = amqpUrl(o.amqpUrl ?? o.url);
      const tables = { ...(o.schema ? { schema: o.schema } : {}), ...(o.table ? { outboxTable: o.table } : {}) };
      const options = {
        database,
        url,
        ...tables,
        batchSize: count(o.batchSize, '--batch-size', 1, 10_000),
        pollIntervalMs: o.pollInterval === undefined ? undefined : durationFlag(o.pollInterval, '--poll-interval'),
        retentionMs: o.retention === undefined ? undefined : durationFlag(o.retention, '--retention', { min: 0 }),
        maxAttempts: count(o.maxAttempts, '--max-attempts', 0, 1_000_000),
        onError: (err: Error) => line(err.message),
      };
      let relay: ReturnType<typeof createOutboxRelay>;
      try {
        relay = createOutboxRelay(options);
      } catch (err) {
        throw new UsageError((err as Error).message, { cause: err });
      }
      if (o.migrate) {
        const client = new pg.Client({ connectionString: database, connectionTimeoutMillis: 10_000 });
        client.on('error', () => undefined);
        try {
          await client.connect();
          await migrateOutbox(client, tables);
        } catch (err) {
          throw new Error(`cannot create the outbox tables at ${redactUrl(database)}: ${(err as Error).message}`);
        } finally {
          await client.end().catch(() => undefined);
        }
        line('tables ready');
      }
      relay.on('state', (state) => line(state === 'active' ? 'active: publishing' : state));
      relay.on('parked', (p) => line(`parked row ${p.seq} (event ${p.id}): ${p.reason}`));
      let signals = 0;
      const onSignal = () => {
        if (++signals > 1) process.exit(130);
        line('stopping');
        relay.stop().then(
          () => {
            line(`stopped after publishing ${relay.stats.published} rows`);
            process.exit(0);
          },
          () => process.exit(1),
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      await relay.start();
      line(`running: ${redactUrl(database)} → ${redactUrl(url)}`);
      // The relay's timers do not hold the process; this does, until a signal.
      await new Promise(() => setInterval(() => undefined, 1 << 30));
    });
};
