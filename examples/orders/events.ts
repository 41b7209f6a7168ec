// The events of the order service: what they carry, and the one check of their payloads that the
// read model applies before it trusts one (anyone allowed to publish as the sender could send junk).

export interface OrderLine {
  readonly sku: string;
  readonly qty: number;
  readonly priceCents: number;
}

export interface OrderPlaced {
  readonly order: string;
  readonly customer: string;
  readonly items: readonly OrderLine[];
  readonly totalCents: number;
}

export interface OrderPaid {
  readonly order: string;
  readonly amountCents: number;
}

export interface OrderShipped {
  readonly order: string;
}

export type OrderEvents = {
  'order.placed': OrderPlaced;
  'order.paid': OrderPaid;
  'order.shipped': OrderShipped;
};

export type OrderEventType = keyof OrderEvents;

export const ORDER_STATUSES = ['placed', 'paid', 'shipped'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/** Bounds of a command, so that a stored event is always small and its numbers exact. */
export const LIMITS = { customerChars: 100, skuChars: 64, lines: 100, qty: 1_000, priceCents: 10_000_000 } as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** A non-empty string of at most `max` characters without NUL or control characters. */
export function textProblem(field: string, value: unknown, max: number): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return `${field} must be a non-empty string`;
  if (value.length > max) return `${field} must be at most ${max} characters`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(value) || !value.isWellFormed()) return `${field} must be printable text`;
  return undefined;
}

function intProblem(field: string, value: unknown, min: number, max: number): string | undefined {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max)
    return `${field} must be an integer from ${min} to ${max}`;
  return undefined;
}

/** What is wrong with the lines of an order, or undefined. */
export function linesProblem(items: unknown): string | undefined {
  if (!Array.isArray(items) || items.length === 0 || items.length > LIMITS.lines)
    return `items must be an array of 1 to ${LIMITS.lines} lines`;
  for (const [i, line] of items.entries()) {
    if (typeof line !== 'object' || line === null) return `items[${i}] must be an object`;
    const l = line as Record<string, unknown>;
    const problem =
      textProblem(`items[${i}].sku`, l.sku, LIMITS.skuChars) ??
      intProblem(`items[${i}].qty`, l.qty, 1, LIMITS.qty) ??
      intProblem(`items[${i}].priceCents`, l.priceCents, 0, LIMITS.priceCents);
    if (problem) return problem;
  }
  return undefined;
}

export function totalOf(items: readonly OrderLine[]): number {
  return items.reduce((sum, l) => sum + l.qty * l.priceCents, 0);
}

/** The payload of `type` if it is well formed, else the reason it is not. */
export function checkPayload(
  type: string,
  payload: unknown,
): { ok: true; type: OrderEventType; payload: OrderEvents[OrderEventType] } | { ok: false; reason: string } {
  if (typeof payload !== 'object' || payload === null) return { ok: false, reason: 'the payload is not a JSON object' };
  const p = payload as Record<string, unknown>;
  if (!isUuid(p.order)) return { ok: false, reason: 'order must be a UUID' };
  switch (type) {
    case 'order.placed': {
      const problem = textProblem('customer', p.customer, LIMITS.customerChars) ?? linesProblem(p.items);
      if (problem) return { ok: false, reason: problem };
      const total = totalOf(p.items as OrderLine[]);
      if (p.totalCents !== total) return { ok: false, reason: `totalCents must be the sum of the lines (${total})` };
      return { ok: true, type, payload: p as unknown as OrderPlaced };
    }
    case 'order.paid': {
      const problem = intProblem('amountCents', p.amountCents, 0, LIMITS.lines * LIMITS.qty * LIMITS.priceCents);
      return problem ? { ok: false, reason: problem } : { ok: true, type, payload: p as unknown as OrderPaid };
    }
    case 'order.shipped':
      return { ok: true, type, payload: p as unknown as OrderShipped };
    default:
      return { ok: false, reason: `unknown type ${type}` };
  }
}
