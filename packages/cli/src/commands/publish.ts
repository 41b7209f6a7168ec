import { createPublisher } from '@herald/client';
import { assertSender, assertType, checkTraceContext, type HeraldError, redactUrl, type TraceContext } from '@herald/core';
import amqp from 'amqplib';
import type { Command } from 'commander';
import { UsageError } from '../usage.ts';
import { amqpUrl, amqpUrlOption } from './flags.ts';
import type { RegisterCommand } from './index.ts';

interface PublishFlags {
  id?: string;
  subject?: string;
  correlationId?: string;
  traceparent?: string;
  tracestate?: string;
  amqpUrl?: string;
}

/** The --traceparent and --tracestate of a publish, checked as the SDK checks them; a bad one is a UsageError naming the flag. */
function traceFlags(o: PublishFlags): TraceContext {
  const trace: TraceContext = { traceparent: o.traceparent, tracestate: o.tracestate };
  try {
    checkTraceContext(trace);
  } catch (err) {
    // The check names the field (`invalid traceparent: …`); here it is a flag.
    const field = String((err as HeraldError).details?.parameter);
    throw new UsageError((err as Error).message.replace(`invalid ${field}:`, `invalid --${field}:`), { cause: err });
  }
  return trace;
}

/**
 * One connection attempt before publishing, so an unreachable broker is one clear line at once,
 * rather than a confirm timeout after the SDK's reconnect loop has waited it out.
 */
async function assertReachable(url: string): Promise<void> {
  try {
    const conn = await amqp.connect(url, { timeout: 5000 });
    await conn.close();
  } catch (err) {
    const e = err as { code?: string; message?: string };
    throw new Error(
      `cannot reach RabbitMQ at ${redactUrl(url)} (${e.code ?? e.message ?? String(err)}): start it, or pass --amqp-url or set HERALD_AMQP_URL`,
    );
  }
}

/**
 * `herald publish <sender> <type> [json]`: publishes one event to herald.ingest with the SDK's
 * publisher (persistent, with publisher confirms) and prints its id once RabbitMQ confirmed it.
 * Bad JSON (naming the argument), a bad sender or type, or an unreachable broker fail with one line
 * and exit code 1; a malformed --traceparent or --tracestate is a usage error (exit 2), found before
 * connecting.
 */
export const registerPublish: RegisterCommand = (program: Command) => {
  program
    .command('publish')
    .description('publish one event, e.g. herald publish billing invoice.paid \'{"amount": 42}\'')
    .argument('<sender>', 'the sender, e.g. billing')
    .argument('<type>', 'the event type, e.g. invoice.paid')
    .argument('[json]', 'the event data as JSON', 'null')
    .option('--id <uuid>', 'the event id, the idempotency key (default: a new UUIDv7)')
    .option('--subject <subject>', 'the subject')
    .option('--correlation-id <id>', 'the correlation id')
    .option('--traceparent <value>', 'W3C trace context 00-<32 hex>-<16 hex>-<2 hex>, to join the event to a trace')
    .option('--tracestate <value>', 'W3C tracestate (vendor=value,…), with --traceparent')
    .addOption(amqpUrlOption())
    .action(async (sender: string, type: string, json: string, o: PublishFlags) => {
      let data: unknown;
      try {
        data = JSON.parse(json);
      } catch (err) {
        throw new Error(`the <json> argument is not JSON (${(err as Error).message}); quote it for the shell, e.g. '{"amount": 42}'`);
      }
      const trace = traceFlags(o);
      assertSender(sender);
      assertType(type, sender);
      const url = amqpUrl(o.amqpUrl);
      await assertReachable(url);
      const publisher = createPublisher({ sender, url, confirmTimeoutMs: 10_000 });
      try {
        const { id } = await publisher.publish(type, data, {
          id: o.id,
          subject: o.subject,
          correlationId: o.correlationId,
          ...trace,
        });
        process.stdout.write(`${id}\n`);
      } finally {
        await publisher.close().catch(() => {});
      }
    });
};
