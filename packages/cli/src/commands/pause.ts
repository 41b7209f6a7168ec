import type { Command } from 'commander';
import { callHub, hubUrl, parseDuration } from './hub-api.ts';
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
 * over the hub's REST API (HERALD_HUB_URL). Every pause ends by itself at its ttl (default 5 m,
 * at most the hub's maximum). Fails with one line when the hub refuses or cannot be reached.
 */
export const registerPause: RegisterCommand = (program: Command) => {
  program
    .command('pause')
    .description('hold the flow of a selector (e.g. "billing:*") until resumed or the ttl ends; prints the pause id')
    .argument('<selector>', 'sender:type patterns, comma-separated')
    .option('--ttl <duration>', 'how long at most, e.g. 30s, 5m, 2h (default: the hub’s, 5m)')
    .option('--reason <text>', 'why, shown in listings')
    .option('--hub <url>', 'hub REST URL (default HERALD_HUB_URL, else http://127.0.0.1:8080)')
    .action(async (selector: string, o: { ttl?: string; reason?: string; hub?: string }) => {
      const body: Record<string, unknown> = { selector };
      if (o.ttl !== undefined) body.ttl = parseDuration(o.ttl);
      if (o.reason !== undefined) body.reason = o.reason;
      const p = await callHub<PauseDoc>(hubUrl(o.hub), 'POST', '/pauses', body);
      process.stdout.write(`${line(p)}\n`);
    });
  program
    .command('resume')
    .description('end a pause: its held events are released in order')
    .argument('<id>', 'the pause id')
    .option('--hub <url>', 'hub REST URL (default HERALD_HUB_URL, else http://127.0.0.1:8080)')
    .action(async (id: string, o: { hub?: string }) => {
      const p = await callHub<PauseDoc>(hubUrl(o.hub), 'DELETE', `/pauses/${encodeURIComponent(id)}`);
      process.stdout.write(`resumed ${id}${p ? `: releasing ${p.held} held event(s)` : ''}\n`);
    });
  program
    .command('pauses')
    .description('list the pauses that still hold')
    .option('--hub <url>', 'hub REST URL (default HERALD_HUB_URL, else http://127.0.0.1:8080)')
    .option('--json', 'print the JSON the hub returned')
    .action(async (o: { hub?: string; json?: boolean }) => {
      const r = await callHub<{ items: PauseDoc[] }>(hubUrl(o.hub), 'GET', '/pauses');
      if (o.json) process.stdout.write(`${JSON.stringify(r.items, null, 2)}\n`);
      else if (r.items.length === 0) process.stdout.write('no pauses\n');
      else for (const p of r.items) process.stdout.write(`${line(p)}\n`);
    });
};
