// The command line of the orders example: one normalizer, errors that name the option.
import { parseArgs } from 'node:util';
import { DEFAULT_DATABASE_URL } from './schema.ts';

export const USAGE = 'usage: npm run example -- orders [demo | service | read-model] [--prefix P] [--port N] [--orders N] [--timeout MS]';
const ROLES = ['demo', 'service', 'read-model'] as const;
type Role = (typeof ROLES)[number];

/** A bad command line: printed with the usage. */
export class UsageError extends Error {}

function integer(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max)
    throw new UsageError(`--${name} ${JSON.stringify(value)}: expected an integer from ${min} to ${max}`);
  return Number(value);
}

export function options(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      prefix: { type: 'string', default: '' },
      port: { type: 'string' },
      orders: { type: 'string' },
      timeout: { type: 'string' },
    },
  });
  if (positionals.length > 1) throw new UsageError(`one role at most, got ${positionals.join(' ')}`);
  const role = (positionals[0] ?? 'demo') as Role;
  if (!ROLES.includes(role)) throw new UsageError(`unknown role ${JSON.stringify(role)}: expected ${ROLES.join(', ')}`);
  const sender = `${values.prefix}orders`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(sender))
    throw new UsageError(`--prefix ${JSON.stringify(values.prefix)}: the sender "${sender}" must match [A-Za-z0-9_-]{1,64}`);
  return {
    role,
    prefix: values.prefix,
    sender,
    subscription: `${values.prefix}orders-read-model`,
    port: integer('port', values.port, role === 'service' ? 3100 : role === 'read-model' ? 3101 : 0, 0, 65535),
    orders: integer('orders', values.orders, 12, 1, 10_000),
    timeoutMs: integer('timeout', values.timeout, 30_000, 1, 3_600_000),
    databaseUrl: process.env.ORDERS_DATABASE_URL ?? DEFAULT_DATABASE_URL,
    amqpUrl: process.env.HERALD_AMQP_URL,
    grpcUrl: process.env.HERALD_GRPC_URL,
  };
}

export type Options = ReturnType<typeof options>;
