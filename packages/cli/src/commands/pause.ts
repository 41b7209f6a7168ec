import type { Command } from 'commander';
import { durationFlag } from '../usage.ts';
import { type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

/** A pause as the hub's REST API returns it. */
interface PauseDoc {
  id: string;
  selector: string[];
  reason?: string | null;
  createdAt: string;
  expiresAt: string;
  endedAt?: string | null;
  held: number;
}

function line(p: PauseDoc): string {
  const state = p.endedAt ? `ended ${p.endedAt} (releasing)` : `until ${p.expiresAt}`;
  return `${p.id}  ${p.selector.join(',')}  held ${p.held}  ${state}${p.reason ? `  ${JSON.stringify(p.reason)}` : ''}`;
}

/**
 * `herald pause <selector> [--ttl 5m] [--reason …]`, `herald resume <id>`, `herald pauses`: pauses
 * over the hub's REST API (--hub-url, HERALD_HUB_URL). Every pause ends by itself at its ttl
 * (default 5 m, at most the hub's maximum). A bad --ttl exits 2 before any call; the hub refusing
 * or out of reach exits 1, with one line.
 */
export const registerPause: RegisterCommand = (program: Command) => {
  program
    .command('pause')
    .description('hold the flow of a selector (e.g. "billing:*") until resumed or the ttl ends; prints the pause id')
    .argument('<selector>', 'sender:type patterns, comma-separated')
    .option('--ttl <duration>', 'how long at most, e.g. 30s, 5m, 1h30m; a bare number is seconds (default: the hub’s, 5m)')
    .option('--reason <text>', 'why, shown in listings')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .action(async (selector: string, o: HubFlags & { ttl?: string; reason?: string }) => {
      const body: Record<string, unknown> = { selector };
      // The API takes seconds.
      if (o.ttl !== undefined) body.ttl = durationFlag(o.ttl, '--ttl', { bare: 's' }) / 1000;
      if (o.reason !== undefined) body.reason = o.reason;
      const p = await callHub<PauseDoc>(hubOf(o), 'POST', '/pauses', body);
      process.stdout.write(`${line(p)}\n`);
    });
  program
    .command('resume')
    .description('end a pause: its held events are released in order')
    .argument('<id>', 'the pause id')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .action(async (id: string, o: HubFlags) => {
      const p = await callHub<PauseDoc>(hubOf(o), 'DELETE', `/pauses/${encodeURIComponent(id)}`);
      process.stdout.write(`resumed ${id}${p ? `: releasing ${p.held} held event(s)` : ''}\n`);
    });
  program
    .command('pauses')
    .description('list the pauses that still hold')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .option('--json', 'print the JSON the hub returned')
    .action(async (o: HubFlags & { json?: boolean }) => {
      const r = await callHub<{ items: PauseDoc[] }>(hubOf(o), 'GET', '/pauses');
      if (o.json) process.stdout.write(`${JSON.stringify(r.items, null, 2)}\n`);
      else if (r.items.length === 0) process.stdout.write('no pauses\n');
      else for (const p of r.items) process.stdout.write(`${line(p)}\n`);
    });
};
