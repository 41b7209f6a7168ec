import { createPublisher } from '@herald/client';
import type { Command } from 'commander';
import type { RegisterCommand } from './index.ts';

/**
 * `herald publish <sender> <type> <json>`: publishes one event through herald.ingest with the SDK
 * and prints its id once RabbitMQ confirmed it. Bad JSON, a bad name or a missing exchange fail
 * with one line.
 */
export const registerPublish: RegisterCommand = (program: Command) => {
  program
    .command('publish')
    .description('publish one event, e.g. herald publish billing invoice.paid \'{"amount": 42}\'')
    .argument('<sender>', 'the sender')
    .argument('<type>', 'the event type, e.g. invoice.paid')
    .argument('[json]', 'the event data as JSON', 'null')
    .option('--id <uuid>', 'the event id (default: a new UUIDv7)')
    .option('--subject <subject>', 'the subject')
    .option('--correlation-id <id>', 'the correlation id')
    .option('--url <amqp>', 'RabbitMQ URL (default HERALD_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672)')
    .action(
      async (sender: string, type: string, json: string, o: { id?: string; subject?: string; correlationId?: string; url?: string }) => {
        let data: unknown;
        try {
          data = JSON.parse(json);
        } catch (err) {
          throw new Error(`the <json> argument is not JSON: ${(err as Error).message}`);
        }
        const publisher = createPublisher({ sender, url: o.url, confirmTimeoutMs: 10_000 });
        try {
          const { id } = await publisher.publish(type, data, { id: o.id, subject: o.subject, correlationId: o.correlationId });
          process.stdout.write(`${id}\n`);
        } finally {
          await publisher.close().catch(() => {});
        }
      },
    );
};
