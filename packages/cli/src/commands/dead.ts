import type { Command } from 'commander';
import { UsageError } from '../usage.ts';
import { type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

/** A dead letter as the hub's REST API lists it. */
interface DeadDoc {
  id: string;
  at: string;
  source: string;
  queue: string | null;
  attempts: number | null;
  firstFailedAt: string;
  lastFailedAt: string;
  reason: string;
  code: string;
  routingKey: string;
  messageId: string | null;
  bytes: number;
  redrives: number;
}

/** Every dead letter the filters select, call after call from each answer's `next`. */
async function redriveAll(o: HubFlags & Filter & { queue?: string }): Promise<{ redriven: number; skipped: number }> {
  const sum = { redriven: 0, skipped: 0 };
  let after: string | undefined;
  let upTo: string | undefined;
  do {
    const r = await callHub<{ redriven: number; skipped?: number; next?: string | null; upTo?: string }>(
      hubOf(o),
      'POST',
      '/dead-letters/redrive',
      { selector: o.selector, code: o.code, source: o.source, queue: o.queue, after, upTo },
    );
    sum.redriven += r.redriven;
    sum.skipped += r.skipped ?? 0;
    after = r.next ?? undefined;
    upTo = r.upTo;
  } while (after !== undefined);
  return sum;
}

/**
 * A dead letter in one line: `<id>  <last failure>  <code>  <routing key>  <source>[@<queue>]  <attempts>  <reason>`,
 * the attempts with the first failure when it differs from the last.
 */
export function deadLine(d: DeadDoc): string {
  const redriven = d.redrives > 0 ? `  (redriven ${d.redrives}×)` : '';
  const where = d.queue === null ? d.source : `${d.source}@${JSON.stringify(d.queue)}`;
  const since = d.firstFailedAt === d.lastFailedAt ? '' : ` since ${d.firstFailedAt}`;
  const attempts = d.attempts === null ? 'attempts unknown' : `${d.attempts} attempt${d.attempts === 1 ? '' : 's'}${since}`;
  return `${d.id}  ${d.lastFailedAt}  ${d.code}  ${JSON.stringify(d.routingKey)}  ${where}  ${attempts}  ${d.reason}${redriven}`;
}

type Filter = { selector?: string; code?: string; source?: string };
const query = (o: Filter & { all?: boolean }) => {
  const q = new URLSearchParams();
  if (o.selector !== undefined) q.set('selector', o.selector);
  if (o.code !== undefined) q.set('code', o.code);
  if (o.source !== undefined) q.set('source', o.source);
  if (o.all) q.set('all', 'true');
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
};

/**
 * `herald dead list|show|redrive|purge`: dead letters over the hub's REST API
 * (/api/v1/dead-letters; admins only). The hub refusing or out of reach exits 1, with one line.
 */
export const registerDead: RegisterCommand = (program: Command) => {
  const dead = program
    .command('dead')
    .description('dead letters (admin): list, show, redrive, purge')
    .showHelpAfterError('(see herald dead --help)');
  const filters = (c: Command) =>
    c
      .option('--selector <patterns>', 'sender:type patterns over the routing key, comma-separated')
      .option('--code <code>', 'only dead letters of this error code, e.g. INVALID_EVENT')
      .option('--source <source>', 'only dead letters from hub (ingest refused them) or subscriber (sent to herald.dead)');

  filters(dead.command('list').description('list dead letters, oldest first'))
    .option('--limit <n>', 'at most this many (1-1000, default 100)')
    .option('--json', 'print the JSON the hub returned')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald dead list --help)')
    .action(async (o: HubFlags & Filter & { limit?: string; json?: boolean }) => {
      const q = query(o);
      const limit = o.limit === undefined ? '' : `${q === '' ? '?' : '&'}limit=${encodeURIComponent(o.limit)}`;
      const r = await callHub<{ items: DeadDoc[] }>(hubOf(o), 'GET', `/dead-letters${q}${limit}`);
      if (o.json) process.stdout.write(`${JSON.stringify(r.items, null, 2)}\n`);
      else if (r.items.length === 0) process.stdout.write('no dead letters\n');
      else for (const d of r.items) process.stdout.write(`${deadLine(d)}\n`);
    });

  dead
    .command('show')
    .description('print one dead letter whole: reason, properties, body')
    .argument('<id>', 'the dead letter id, as dead list prints it')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald dead show --help)')
    .action(async (id: string, o: HubFlags) => {
      const d = await callHub<Record<string, unknown>>(hubOf(o), 'GET', `/dead-letters/${encodeURIComponent(id)}`);
      process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
    });

  filters(
    dead
      .command('redrive')
      .description(
        "re-send one dead letter (by id) or every one a --selector / --code / --source select: the hub's own to herald.ingest, " +
          "a subscriber's as its logged event to the queue it died on",
      ),
  )
    .argument('[id]', 'the dead letter id')
    .option(
      '--queue <name>',
      "with an id: send it to this queue instead; with filters: re-send the subscribers' dead letters of this queue back to it",
    )
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald dead redrive --help)')
    .action(async (id: string | undefined, o: HubFlags & Filter & { queue?: string }) => {
      const filtered = o.selector !== undefined || o.code !== undefined || o.source !== undefined;
      if (id === undefined && !filtered) throw new UsageError('give a dead letter id, or --selector, --code and/or --source');
      if (id !== undefined && filtered) throw new UsageError('give an id or filters, not both');
      const r =
        id === undefined
          ? await redriveAll(o)
          : await callHub<{ redriven: number; skipped?: number }>(
              hubOf(o),
              'POST',
              `/dead-letters/${encodeURIComponent(id)}/redrive`,
              o.queue ? { queue: o.queue } : {},
            );
      const skipped = r.skipped ? ` (skipped ${r.skipped}: subscribers' whose event is not in the log or that have no queue)` : '';
      process.stdout.write(`redriven ${r.redriven}${skipped}\n`);
    });

  filters(dead.command('purge').description('delete one dead letter (by id), those the filters select, or every one with --all'))
    .argument('[id]', 'the dead letter id')
    .option('--all', 'every dead letter')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald dead purge --help)')
    .action(async (id: string | undefined, o: HubFlags & Filter & { all?: boolean }) => {
      if (id !== undefined) {
        await callHub(hubOf(o), 'DELETE', `/dead-letters/${encodeURIComponent(id)}`);
        process.stdout.write(`purged dead letter ${id}\n`);
        return;
      }
      if (o.selector === undefined && o.code === undefined && o.source === undefined && !o.all)
        throw new UsageError('give an id, --selector, --code and/or --source, or --all');
      const r = await callHub<{ deleted: number }>(hubOf(o), 'DELETE', `/dead-letters${query(o)}`);
      process.stdout.write(`purged ${r.deleted}\n`);
    });
};
