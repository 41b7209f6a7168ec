import { parseSelector } from '@herald/core';
import type { Command } from 'commander';
import { callHub, hubUrl } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

interface EventDoc {
  offset: string;
  id: string;
  sender: string;
  type: string;
  time: string;
  data?: unknown;
  dataBase64?: string;
}

function shorten(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/**
 * `herald events <selector> [--last N | --after OFFSET | --since TIME]`: reads the log through the
 * hub's REST API and prints a table, or JSON lines with --json. Fails with one line when the
 * selector is bad, the hub refuses, or the hub cannot be reached.
 */
export const registerEvents: RegisterCommand = (program: Command) => {
  program
    .command('events')
    .description('print events from the log, e.g. herald events "billing:*" --last 10')
    .argument('[selector]', 'sender:type patterns, comma-separated', '*:*')
    .option('--last <n>', 'the last N matching events')
    .option('--after <offset>', 'only events after this offset')
    .option('--since <time>', 'only events at or after this ISO time')
    .option('--until <time>', 'only events before this ISO time')
    .option('--limit <n>', 'at most N events (default 100, max 1000)')
    .option('--json', 'one JSON object per line')
    .option('--hub <url>', 'hub REST URL (default HERALD_HUB_URL, else http://127.0.0.1:8080)')
    .action(async (selector: string, o: Record<string, string | boolean | undefined>) => {
      // Checked here so a typo is reported before any network call.
      parseSelector(selector);
      const params = new URLSearchParams({ selector });
      for (const key of ['last', 'after', 'since', 'until', 'limit']) {
        const value = o[key];
        if (typeof value === 'string') params.set(key, value);
      }
      const r = await callHub<{ events: EventDoc[]; next: string | null }>(hubUrl(o.hub as string | undefined), 'GET', `/events?${params}`);
      if (o.json) {
        for (const e of r.events) process.stdout.write(`${JSON.stringify(e)}\n`);
        return;
      }
      if (r.events.length === 0) {
        process.stdout.write('no events\n');
        return;
      }
      for (const e of r.events) {
        const data = e.data !== undefined ? JSON.stringify(e.data) : `base64:${e.dataBase64 ?? ''}`;
        process.stdout.write(`${e.offset.padStart(8)}  ${e.time}  ${e.sender}  ${e.type}  ${e.id}  ${shorten(data, 60)}\n`);
      }
      if (r.next !== null) process.stdout.write(`… more: --after ${r.next}\n`);
    });
};
