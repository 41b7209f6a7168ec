// The read side: a durable subscription to the order events feeds the read model's own tables,
// and a query API reads only those. Each event is applied through the inbox, which records the
// event id in the same transaction as the writes: an event delivered again (after a crash, before
// its ack reached the hub) changes nothing, so counters stay exact. Delivery is at least once; the
// effect is once.
import { setTimeout as sleep } from 'node:timers/promises';
import { ValidationError } from '@herald/client';
import { type SubscriptionEvent, subscription } from '@herald/client/grpc';
import { createInbox } from '@herald/client/outbox';
import type pg from 'pg';
import { checkPayload, isUuid, type OrderEvents } from './events.ts';
import { HttpProblem, type JsonServer, type Route, repeatsOnce, serveJson } from './http.ts';

export interface ReadModelOptions {
  readonly pool: pg.Pool;
  /** Whose events: the selector is `<sender>:order.*`. */
  readonly sender: string;
  /** The durable subscription's name, and the inbox's consumer name. */
  readonly name: string;
  /** The hub's gRPC address; default HERALD_GRPC_URL, else 127.0.0.1:50051. */
  readonly grpcUrl?: string | undefined;
  readonly port: number;
  readonly log: (line: string) => void;
}

export interface ReadModel {
  readonly query: JsonServer;
  /** Events applied, and deliveries the inbox had seen already, since this process started. */
  readonly counts: { applied: number; duplicates: number; rejected: number };
  /**
   * Settles when the subscription loop ends: resolves after close(), rejects on a permanent
   * failure (a bad name, the subscription deleted, a selector conflict). Transient failures (the
   * hub or the database away) are retried and only logged.
   */
  readonly ended: Promise<void>;
  /** Detaches (the subscription sleeps on the hub with its acknowledged offset) and stops the API. */
  close(): Promise<void>;
}

/** `status` never moves back: whatever order the events come in, the furthest state wins. */
const FURTHEST = `CASE WHEN array_position(ARRAY['placed','paid','shipped'], order_views.status)
  >= array_position(ARRAY['placed','paid','shipped'], EXCLUDED.status) THEN order_views.status ELSE EXCLUDED.status END`;

type Event = SubscriptionEvent<OrderEvents>;

/** The writes of one event, inside the inbox's transaction. */
async function apply(client: pg.PoolClient, event: Event, checked: ReturnType<typeof checkPayload> & { ok: true }): Promise<void> {
  const at = new Date(event.time).toISOString();
  const offset = String(event.offset);
  const p = checked.payload;
  switch (checked.type) {
    case 'order.placed': {
      const placed = p as OrderEvents['order.placed'];
      await client.query(
        `INSERT INTO order_views (id, customer, total_cents, status, placed_at, last_offset) VALUES ($1, $2, $3, 'placed', $4, $5)
         ON CONFLICT (id) DO UPDATE SET customer = EXCLUDED.customer, total_cents = EXCLUDED.total_cents, placed_at = EXCLUDED.placed_at,
           status = ${FURTHEST}, last_offset = GREATEST(order_views.last_offset, EXCLUDED.last_offset)`,
        [placed.order, placed.customer, placed.totalCents, at, offset],
      );
      await client.query('UPDATE order_stats SET placed = placed + 1');
      return;
    }
    case 'order.paid': {
      const paid = p as OrderEvents['order.paid'];
      await client.query(
        `INSERT INTO order_views (id, paid_cents, status, paid_at, last_offset) VALUES ($1, $2, 'paid', $3, $4)
         ON CONFLICT (id) DO UPDATE SET paid_cents = EXCLUDED.paid_cents, paid_at = EXCLUDED.paid_at,
           status = ${FURTHEST}, last_offset = GREATEST(order_views.last_offset, EXCLUDED.last_offset)`,
        [paid.order, paid.amountCents, at, offset],
      );
      await client.query('UPDATE order_stats SET paid = paid + 1, revenue_cents = revenue_cents + $1', [paid.amountCents]);
      return;
    }
    case 'order.shipped': {
      await client.query(
        `INSERT INTO order_views (id, status, shipped_at, last_offset) VALUES ($1, 'shipped', $2, $3)
         ON CONFLICT (id) DO UPDATE SET shipped_at = EXCLUDED.shipped_at,
           status = ${FURTHEST}, last_offset = GREATEST(order_views.last_offset, EXCLUDED.last_offset)`,
        [p.order, at, offset],
      );
      await client.query('UPDATE order_stats SET shipped = shipped + 1');
      return;
    }
  }
}

export async function startReadModel(opts: ReadModelOptions): Promise<ReadModel> {
  const inbox = createInbox({ consumer: opts.name });
  const counts = { applied: 0, duplicates: 0, rejected: 0 };
  const stop = new AbortController();
  const trouble = repeatsOnce(opts.log);
  const sub = subscription<OrderEvents>(opts.name, `${opts.sender}:order.*`, {
    start: 'earliest',
    url: opts.grpcUrl,
    signal: stop.signal,
    onError: (err) => trouble(`subscription ${opts.name}: ${err.message} (reconnecting)`),
  });

  /** Applies one event through the inbox: 'applied', 'duplicate' (handled before) or the reason it was rejected. */
  async function handle(event: Event): Promise<'applied' | 'duplicate' | { rejected: string }> {
    let checked: ReturnType<typeof checkPayload>;
    try {
      checked = checkPayload(event.type, event.payload());
    } catch (err) {
      checked = { ok: false, reason: err instanceof Error ? err.message : String(err) };
    }
    const handled = await inbox.handle(opts.pool, event, async (client: pg.PoolClient) => {
      if (checked.ok) return apply(client, event, checked);
      // A poison event must not hold back the ones after it: record why, count it, ack it.
      await client.query('INSERT INTO rejected_events (event_id, "offset", type, reason) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
        event.id,
        String(event.offset),
        event.type,
        checked.reason.slice(0, 500),
      ]);
      await client.query('UPDATE order_stats SET rejected = rejected + 1');
    });
    if (!handled) return 'duplicate';
    return checked.ok ? 'applied' : { rejected: checked.reason };
  }

  const loop = (async () => {
    for await (const event of sub) {
      // The database may be away for a while: try again, in order, without acking meanwhile.
      for (let attempt = 1; ; attempt++) {
        try {
          const outcome = await handle(event);
          if (outcome === 'applied') counts.applied++;
          else if (outcome === 'duplicate') {
            counts.duplicates++;
            opts.log(`offset ${event.offset} (${event.type} ${event.id}) was handled already: skipped`);
          } else {
            counts.rejected++;
            opts.log(`offset ${event.offset} (${event.type} ${event.id}) rejected: ${outcome.rejected}`);
          }
          break;
        } catch (err) {
          if (stop.signal.aborted) return;
          if (err instanceof ValidationError) {
            // The inbox cannot key an event without a UUID id (the hub never delivers one): skip it.
            opts.log(`offset ${event.offset}: ${err.message}: skipped`);
            break;
          }
          opts.log(`offset ${event.offset}: ${err instanceof Error ? err.message : String(err)} (attempt ${attempt}, trying again)`);
          await sleep(Math.min(5_000, 100 * 2 ** attempt), undefined, { signal: stop.signal }).catch(() => undefined);
          if (stop.signal.aborted) return;
        }
      }
      // After the commit: a crash before this line means the event comes again, and the inbox skips it.
      event.ack();
    }
  })();
  loop.catch(() => undefined); // told through `ended`

  const routes: Route[] = [
    async (req, path) => {
      if (req.method !== 'GET') return undefined;
      if (path.length === 2 && path[0] === 'orders') {
        const id = path[1];
        if (!isUuid(id)) throw new HttpProblem(404, 'Not Found', 'an order id is a UUID');
        const { rows } = await opts.pool.query(
          `SELECT id, customer, status, total_cents::float8 AS "totalCents", paid_cents::float8 AS "paidCents",
             placed_at AS "placedAt", paid_at AS "paidAt", shipped_at AS "shippedAt", last_offset::text AS "offset"
           FROM order_views WHERE id = $1`,
          [id.toLowerCase()],
        );
        if (!rows[0]) throw new HttpProblem(404, 'Not Found', `no order ${id} in the read model (yet)`);
        return { status: 200, body: rows[0] };
      }
      if (path.length === 1 && path[0] === 'stats') {
        const { rows } = await opts.pool.query(
          `SELECT placed::float8 AS placed, paid::float8 AS paid, shipped::float8 AS shipped, revenue_cents::float8 AS "revenueCents",
             rejected::float8 AS rejected, (SELECT count(*)::float8 FROM order_views) AS orders FROM order_stats`,
        );
        return { status: 200, body: rows[0] };
      }
      return undefined;
    },
  ];
  const query = await serveJson(opts.port, routes, opts.log);

  return {
    query,
    counts,
    ended: loop,
    async close() {
      stop.abort();
      await sub.close();
      await loop.catch(() => undefined);
      await query.close();
    },
  };
}
