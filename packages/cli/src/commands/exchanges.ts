import type { Command } from 'commander';
import { type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

/** An exchange as the hub's REST API returns it. */
interface ExchangeDoc {
  name: string;
  selector: string[];
  bindingKeys: string[];
  createdAt: string;
}

/** An exchange in one line: `<name>  <selector>  created <time>`. */
export function exchangeLine(e: ExchangeDoc): string {
  return `${e.name}  ${e.selector.join(',')}  created ${e.createdAt}`;
}

/**
 * `herald exchanges add|list|remove`: exchanges for clients that bind their own queues, over the
 * hub's REST API (/api/v1/exchanges; admins only). The hub refusing or out of reach exits 1, with
 * one line.
 */
export const registerExchanges: RegisterCommand = (program: Command) => {
  const exchanges = program
    .command('exchanges')
    .description('exchanges bound to herald.events with a selector, for clients that bind their own queues (admin): add, list, remove')
    .showHelpAfterError('(see herald exchanges --help)');

  exchanges
    .command('add')
    .description('create a durable topic exchange that receives the events of a selector; bind your queues to it')
    .argument('<name>', '1-200 of A-Z a-z 0-9 _ . -; not herald., herald- or amq.')
    .argument('<selector>', 'sender:type patterns, comma-separated')
    .option('--json', 'print the JSON the hub returned')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald exchanges add --help)')
    .action(async (name: string, selector: string, o: HubFlags & { json?: boolean }) => {
      const e = await callHub<ExchangeDoc>(hubOf(o), 'POST', '/exchanges', { name, selector });
      process.stdout.write(o.json ? `${JSON.stringify(e, null, 2)}\n` : `${exchangeLine(e)}\n`);
    });

  exchanges
    .command('list')
    .description('list the exchanges the hub made')
    .option('--json', 'print the JSON the hub returned')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald exchanges list --help)')
    .action(async (o: HubFlags & { json?: boolean }) => {
      const r = await callHub<{ items: ExchangeDoc[] }>(hubOf(o), 'GET', '/exchanges');
      if (o.json) process.stdout.write(`${JSON.stringify(r.items, null, 2)}\n`);
      else if (r.items.length === 0) process.stdout.write('no exchanges\n');
      else for (const e of r.items) process.stdout.write(`${exchangeLine(e)}\n`);
    });

  exchanges
    .command('remove')
    .description('delete an exchange; queues bound to it stay and receive nothing more')
    .argument('<name>', 'the exchange name')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald exchanges remove --help)')
    .action(async (name: string, o: HubFlags) => {
      await callHub(hubOf(o), 'DELETE', `/exchanges/${encodeURIComponent(name)}`);
      process.stdout.write(`removed exchange ${name}\n`);
    });
};
