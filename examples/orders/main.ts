// Example: orders (seed 003). Commands become events through the transactional outbox; a CQRS read
// model follows a durable subscription and applies each event once with the inbox; a query API
// reads the read model.
//
//   npm start                      # the hub (router mode; gRPC on 50051), in another shell
//   npm run example -- orders      # the demo: every part in this process, a few orders, then exit
//   npm run example -- orders service      # the order service (POST /orders …) and the outbox relay, until Ctrl-C
//   npm run example -- orders read-model   # the read model and its query API (GET /orders/{id}, GET /stats), until Ctrl-C
//
// Options: [--prefix P] [--port N] [--orders N] [--timeout MS]. Environment: ORDERS_DATABASE_URL
// (default postgres://postgres@127.0.0.1:5432/herald_orders_example, created when missing),
// HERALD_AMQP_URL (RabbitMQ, for the relay), HERALD_GRPC_URL (the hub's gRPC, for the read model),
// HERALD_HUB_URL (the hub's REST API, default http://127.0.0.1:8080: the demo and the service first
// put the events of catalog.json in the hub's catalog; HERALD_TOKEN when the hub has auth on).
import { readFile } from 'node:fs/promises';
import { type CatalogEntry, putCatalogEntries } from '@herald/client';
import { migrateOutbox } from '@herald/client/outbox';
import pg from 'pg';
import { runDemo } from './demo.ts';
import { options, USAGE, UsageError } from './options.ts';
import { type Part, startReadModelPart, startServicePart } from './parts.ts';
import { ensureDatabase, migrateReadModel, migrateWriteModel } from './schema.ts';

const log = (line: string) => console.error(`[${new Date().toISOString()}] ${line}`);

async function main(): Promise<number> {
  const opts = options(process.argv.slice(2));
  if (opts.role !== 'read-model') {
    // The producer describes what it publishes in the hub's catalog (catalog.json, for this sender); the read model only reads.
    const catalog = JSON.parse(await readFile(new URL('./catalog.json', import.meta.url), 'utf8')) as { events: CatalogEntry[] };
    await putCatalogEntries(catalog.events.map((e) => ({ ...e, sender: `${opts.prefix}${e.sender}` })));
  }
  await ensureDatabase(opts.databaseUrl);
  const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 10 });
  pool.on('error', (err) => log(`database: ${err.message}`)); // an idle connection lost; the pool makes a new one
  const parts: Part[] = [];
  try {
    await migrateOutbox(pool);
    await migrateWriteModel(pool);
    await migrateReadModel(pool);
    if (opts.role === 'demo') {
      const service = await startServicePart(pool, { ...opts, port: 0 }, log);
      parts.push(service);
      const readModel = await startReadModelPart(pool, { ...opts, port: 0 }, log);
      parts.push(readModel);
      return await runDemo(opts, service.url, readModel.url);
    }
    const part = opts.role === 'service' ? await startServicePart(pool, opts, log) : await startReadModelPart(pool, opts, log);
    parts.push(part);
    console.log(part.banner);
    // Runs until a signal, or until the part fails for good (the read model's subscription).
    const code = await new Promise<number>((resolve) => {
      process.once('SIGINT', () => resolve(0));
      process.once('SIGTERM', () => resolve(0));
      part.failed.then((err) => {
        log(`${opts.role} stopped: ${err.message}`);
        resolve(1);
      });
    });
    return code;
  } finally {
    for (const part of parts.reverse()) await part.stop().catch((err: Error) => log(`stopping: ${err.message}`));
    await pool.end();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`orders: ${err instanceof Error ? err.message : String(err)}`);
    const code = (err as { code?: unknown }).code;
    if (err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) console.error(USAGE);
    process.exit(1);
  },
);
