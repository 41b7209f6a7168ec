import { parseSelector } from '@herald/core';
import type { Command } from 'commander';
import { type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

/** An event as GET /api/v1/events returns it. */
interface EventDoc {
  offset: string;
  id: string;
  sender: string;
  type: string;
  time: string;
  data?: unknown;
  dataBase64?: string;
}

interface EventsOptions extends HubFlags {
  last?: string;
  after?: string;
  since?: string;
  until?: string;
  limit?: string;
  json?: boolean;
}

const DATA_WIDTH = 60;

function shorten(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/** Rows padded to the widest cell of each column; the last column (data) is not padded. */
function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/**
 * `herald events [selector] [--last N | --after OFFSET | --since TIME] [--until TIME] [--limit N] [--json]`:
 * reads the log through the hub's REST API (GET /api/v1/events) and prints a table, or one JSON
 * object per line with --json. Fails with one line when the selector is bad (checked before any
 * network call), when the hub answers a problem document, or when the hub cannot be reached.
 */
export const registerEvents: RegisterCommand = (program: Command) => {
  program
    .command('events')
    .description('print events from the log, e.g. herald events "billing:*,*:invoice.paid" --last 10')
    .argument('[selector]', 'sender:type patterns, comma-separated', '*:*')
    .option('--last <n>', 'the last N matching events')
    .option('--after <offset>', 'only events after this offset')
    .option('--since <time>', 'only events at or after this ISO time, e.g. 2026-01-31T12:00:00Z')
    .option('--until <time>', 'only events before this ISO time')
    .option('--limit <n>', 'at most N events (default 100, max 1000)')
    .option('--json', 'one JSON object per line')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .action(async (selector: string, o: EventsOptions) => {
      parseSelector(selector);
      const hub = hubOf(o);
      const params = new URLSearchParams({ selector });
      for (const key of ['last', 'after', 'since', 'until', 'limit'] as const) {
        const value = o[key];
        if (value !== undefined) params.set(key, value);
      }
      const r = await callHub<{ events: EventDoc[]; next: string | null }>(hub, 'GET', `/events?${params}`);
      if (o.json) {
        for (const e of r.events) process.stdout.write(`${JSON.stringify(e)}\n`);
        return;
      }
      if (r.events.length === 0) {
        process.stdout.write('no events\n');
        return;
      }
      const rows = [['OFFSET', 'TIME', 'SENDER', 'TYPE', 'ID', 'DATA']];
      for (const e of r.events) {
        const data = e.data !== undefined ? JSON.stringify(e.data) : `base64:${e.dataBase64 ?? ''}`;
        rows.push([e.offset, e.time, e.sender, e.type, e.id, shorten(data, DATA_WIDTH)]);
      }
      process.stdout.write(`${table(rows)}\n`);
      if (r.next !== null) process.stdout.write(`… more: add --after ${r.next}\n`);
    });
};
