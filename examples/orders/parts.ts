// The two deployable parts of the example, each started in one call: the order service with its
// outbox relay (the write side), and the read model with its query API (the read side). The demo
// runs both in one process; `service` and `read-model` run one each, as separate deployments would.
import { createOutboxRelay } from '@herald/client/outbox';
import type pg from 'pg';
import { repeatsOnce } from './http.ts';
import { startOrderService } from './order-service.ts';
import { startReadModel } from './read-model.ts';

export interface Part {
  /** The part's HTTP API, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** One line saying what runs where. */
  readonly banner: string;
  /** Resolves with the error when the part failed for good (it never resolves otherwise). */
  readonly failed: Promise<Error>;
  stop(): Promise<void>;
}

type Log = (line: string) => void;

export async function startServicePart(
  pool: pg.Pool,
  opts: { sender: string; port: number; amqpUrl?: string | undefined },
  log: Log,
): Promise<Part> {
  // The relay publishes what committed transactions added to the outbox, in order per order id,
  // with the row's event id: a row published twice (a crash between publish and mark) is stored once.
  const trouble = repeatsOnce(log);
  const relay = createOutboxRelay({
    database: pool,
    ...(opts.amqpUrl ? { url: opts.amqpUrl } : {}),
    onError: (err) => trouble(`outbox relay: ${err.message} (retrying)`),
  });
  await relay.start();
  const server = await startOrderService({ pool, sender: opts.sender, port: opts.port, log });
  return {
    url: server.url,
    banner: `order service on ${server.url} (POST /orders, POST /orders/{id}/pay, POST /orders/{id}/ship); outbox relay publishing as ${opts.sender}`,
    failed: new Promise<Error>(() => undefined),
    async stop() {
      await server.close();
      await relay.stop();
    },
  };
}

export async function startReadModelPart(
  pool: pg.Pool,
  opts: { sender: string; subscription: string; port: number; grpcUrl?: string | undefined },
  log: Log,
): Promise<Part> {
  const model = await startReadModel({ pool, sender: opts.sender, name: opts.subscription, grpcUrl: opts.grpcUrl, port: opts.port, log });
  return {
    url: model.query.url,
    banner: `read model on ${model.query.url} (GET /orders/{id}, GET /stats); durable subscription ${opts.subscription} on ${opts.sender}:order.*`,
    failed: model.ended.then(
      () => new Promise<Error>(() => undefined),
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    ),
    stop: () => model.close(),
  };
}
