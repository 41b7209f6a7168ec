// The demo: sends commands to the order service, waits until the read model shows their effect
// (a positive signal, polled, with a deadline that fails loudly), prints what the queries answer.
import type { OrderLine, OrderStatus } from './events.ts';

export interface Stats {
  placed: number;
  paid: number;
  shipped: number;
  revenueCents: number;
  rejected: number;
  orders: number;
}

async function call<T>(method: string, url: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** Sends a command; anything but `expected` is an error with the problem's detail. */
async function command<T>(url: string, body: unknown, expected: number): Promise<T> {
  const res = await call<T & { detail?: string }>('POST', url, body);
  if (res.status !== expected) throw new Error(`POST ${url} answered ${res.status}: ${res.body.detail ?? JSON.stringify(res.body)}`);
  return res.body;
}

/** The demo's orders: every third is only placed, the others paid, and a third of all shipped. */
export function planOf(i: number): OrderStatus {
  return i % 3 === 2 ? 'placed' : i % 3 === 0 ? 'shipped' : 'paid';
}

export function linesOf(i: number): OrderLine[] {
  return [
    { sku: `sku-${i % 5}`, qty: 1 + (i % 3), priceCents: 1_250 + 10 * i },
    ...(i % 2 ? [{ sku: 'gift-wrap', qty: 1, priceCents: 300 }] : []),
  ];
}

/** Places, pays and ships order `i` by its plan; answers its id and total. */
export async function runOrder(serviceUrl: string, i: number): Promise<{ id: string; totalCents: number; status: OrderStatus }> {
  const placed = await command<{ id: string; totalCents: number }>(
    `${serviceUrl}/orders`,
    { customer: `customer-${i % 4}`, items: linesOf(i) },
    201,
  );
  const plan = planOf(i);
  if (plan !== 'placed') await command(`${serviceUrl}/orders/${placed.id}/pay`, undefined, 200);
  if (plan === 'shipped') await command(`${serviceUrl}/orders/${placed.id}/ship`, undefined, 200);
  return { id: placed.id, totalCents: placed.totalCents, status: plan };
}

export async function readStats(queryUrl: string): Promise<Stats> {
  const res = await call<Stats>('GET', `${queryUrl}/stats`);
  if (res.status !== 200) throw new Error(`GET /stats answered ${res.status}`);
  return res.body;
}

const money = (cents: number) => (cents / 100).toFixed(2);

export async function runDemo(opts: { orders: number; timeoutMs: number }, serviceUrl: string, queryUrl: string): Promise<number> {
  const deadline = Date.now() + opts.timeoutMs;
  const before = await readStats(queryUrl);
  console.log(`order service ${serviceUrl}, read model ${queryUrl}`);
  console.log(`read model before: ${before.orders} orders, revenue ${money(before.revenueCents)}`);

  const orders = await Promise.all(Array.from({ length: opts.orders }, (_, i) => runOrder(serviceUrl, i)));
  const sent = Date.now();
  const want = {
    placed: before.placed + orders.length,
    paid: before.paid + orders.filter((o) => o.status !== 'placed').length,
    shipped: before.shipped + orders.filter((o) => o.status === 'shipped').length,
    revenueCents: before.revenueCents + orders.filter((o) => o.status !== 'placed').reduce((s, o) => s + o.totalCents, 0),
  };
  console.log(`commands answered: ${orders.length} placed, ${want.paid - before.paid} paid, ${want.shipped - before.shipped} shipped`);

  // Eventually consistent: poll the query side until it shows every command's effect.
  let stats = before;
  let views: { id: string; status: string; totalCents: number }[] = [];
  for (;;) {
    stats = await readStats(queryUrl);
    if (stats.placed >= want.placed && stats.paid >= want.paid && stats.shipped >= want.shipped) {
      views = await Promise.all(
        orders.map(async (o) => (await call<{ id: string; status: string; totalCents: number }>('GET', `${queryUrl}/orders/${o.id}`)).body),
      );
      if (views.every((v, i) => v.status === orders[i]?.status)) break;
    }
    if (Date.now() > deadline) {
      console.error(
        `orders: timed out after ${opts.timeoutMs} ms: the read model shows ${JSON.stringify(stats)}, expected ${JSON.stringify(want)}; is the hub running in router mode (npm start), at HERALD_AMQP_URL and HERALD_GRPC_URL?`,
      );
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  console.log(`read model consistent ${Date.now() - sent} ms after the last command was answered`);
  for (const v of views.slice(0, 6)) console.log(`  GET /orders/${v.id}  ${v.status.padEnd(7)}  ${money(v.totalCents).padStart(8)}`);
  if (views.length > 6) console.log(`  … and ${views.length - 6} more`);
  console.log(`GET /stats  ${JSON.stringify(stats)}`);
  const exact =
    stats.placed === want.placed && stats.paid === want.paid && stats.shipped === want.shipped && stats.revenueCents === want.revenueCents;
  console.log(exact ? 'every command is in the read model exactly once' : `MISMATCH: expected ${JSON.stringify(want)}`);
  return exact ? 0 : 1;
}
