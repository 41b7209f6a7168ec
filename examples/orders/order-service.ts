// The write side: commands over HTTP change the `orders` table, and each change adds its event to
// the outbox in the same transaction. Either both commit or neither does, so no event is lost
// between the database and the broker, and none is published for a change that rolled back. The
// relay (started in main.ts next to this service) publishes the outbox to Herald.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createOutbox } from '@herald/client/outbox';
import type pg from 'pg';
import { isUuid, LIMITS, linesProblem, type OrderEvents, type OrderLine, type OrderStatus, textProblem, totalOf } from './events.ts';
import { HttpProblem, type JsonServer, type Route, readJson, serveJson } from './http.ts';

export interface OrderServiceOptions {
  readonly pool: pg.Pool;
  /** The sender the events go out as. */
  readonly sender: string;
  readonly port: number;
  readonly log: (line: string) => void;
}

/** What a command answers: the order as the write model has it now (read your own write here). */
export interface OrderAnswer {
  readonly id: string;
  readonly status: OrderStatus;
  readonly totalCents: number;
}

/** Which command moves an order from which status, and the event it records. */
const TRANSITIONS = {
  pay: { from: 'placed', to: 'paid', type: 'order.paid' },
  ship: { from: 'paid', to: 'shipped', type: 'order.shipped' },
} as const;

export async function startOrderService(opts: OrderServiceOptions): Promise<JsonServer> {
  const outbox = createOutbox();

  /** Runs `fn` in one transaction on a connection of its own. */
  async function transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await opts.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async function place(req: IncomingMessage): Promise<OrderAnswer> {
    const body = await readJson(req);
    for (const k of Object.keys(body))
      if (k !== 'customer' && k !== 'items') throw new HttpProblem(400, 'Bad Request', `unknown field ${JSON.stringify(k.slice(0, 64))}`);
    const problem = textProblem('customer', body.customer, LIMITS.customerChars) ?? linesProblem(body.items);
    if (problem) throw new HttpProblem(400, 'Bad Request', problem);
    const customer = body.customer as string;
    // Only the known fields go on, whatever else a line held.
    const items: OrderLine[] = (body.items as OrderLine[]).map(({ sku, qty, priceCents }) => ({ sku, qty, priceCents }));
    const id = randomUUID();
    const totalCents = totalOf(items);
    const placed: OrderEvents['order.placed'] = { order: id, customer, items, totalCents };
    await transaction(async (client) => {
      await client.query('INSERT INTO orders (id, customer, items, total_cents, status) VALUES ($1, $2, $3, $4, $5)', [
        id,
        customer,
        JSON.stringify(items),
        totalCents,
        'placed',
      ]);
      await outbox.add(client, { sender: opts.sender, type: 'order.placed', payload: placed, key: id, subject: id });
    });
    return { id, status: 'placed', totalCents };
  }

  async function move(id: string, command: keyof typeof TRANSITIONS): Promise<OrderAnswer> {
    const t = TRANSITIONS[command];
    return transaction(async (client) => {
      // The row lock orders concurrent commands on one order: the second sees the first's result.
      const { rows } = await client.query<{ status: OrderStatus; total_cents: string }>(
        'SELECT status, total_cents FROM orders WHERE id = $1 FOR UPDATE',
        [id],
      );
      const row = rows[0];
      if (!row) throw new HttpProblem(404, 'Not Found', `no order ${id}`);
      if (row.status !== t.from) throw new HttpProblem(409, 'Conflict', `order ${id} is ${row.status}; ${command} needs it ${t.from}`);
      await client.query('UPDATE orders SET status = $2, updated_at = now() WHERE id = $1', [id, t.to]);
      const totalCents = Number(row.total_cents);
      const payload: OrderEvents['order.paid'] | OrderEvents['order.shipped'] =
        command === 'pay' ? { order: id, amountCents: totalCents } : { order: id };
      await outbox.add(client, { sender: opts.sender, type: t.type, payload, key: id, subject: id });
      return { id, status: t.to, totalCents };
    });
  }

  const routes: Route[] = [
    async (req, path) => {
      if (path[0] !== 'orders') return undefined;
      if (path.length === 1 && req.method === 'POST') return { status: 201, body: await place(req) };
      const [, id, command] = path;
      if (path.length === 3 && req.method === 'POST' && (command === 'pay' || command === 'ship')) {
        if (!isUuid(id)) throw new HttpProblem(404, 'Not Found', 'an order id is a UUID');
        return { status: 200, body: await move(id.toLowerCase(), command) };
      }
      return undefined;
    },
  ];
  return serveJson(opts.port, routes, opts.log);
}
