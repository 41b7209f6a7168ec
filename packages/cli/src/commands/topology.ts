import { declareTopology } from '@herald/client';
import type { Command } from 'commander';
import { DEFAULT_AMQP_URL, safeUrl } from '../bench/options.ts';
import type { RegisterCommand } from './index.ts';

/**
 * `herald topology [--mode router|archive]`: declares Herald's exchanges and queues through the SDK.
 * Archive mode adds the binding herald.ingest → herald.events (`#`) so events flow without a hub
 * routing them; router mode removes it (the hub routes). Idempotent; fails with the broker's reason
 * when it cannot connect or an existing exchange has other arguments.
 */
export const registerTopology: RegisterCommand = (program: Command) => {
  program
    .command('topology')
    .description("declare Herald's exchanges and queues; archive mode binds herald.ingest → herald.events directly")
    .option('--mode <mode>', 'router (the hub routes events) or archive (direct binding)', 'router')
    .option('--url <url>', 'AMQP URL (default HERALD_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672)')
    .action(async (raw: { mode: string; url?: string }) => {
      if (raw.mode !== 'router' && raw.mode !== 'archive')
        throw new Error(`invalid --mode ${JSON.stringify(raw.mode)}: expected router or archive`);
      const url = raw.url ?? process.env.HERALD_AMQP_URL ?? DEFAULT_AMQP_URL;
      await declareTopology({ url, mode: raw.mode });
      process.stdout.write(
        raw.mode === 'archive'
          ? `topology declared on ${safeUrl(url)} in archive mode: herald.ingest → herald.events bound (#)\n`
          : `topology declared on ${safeUrl(url)} in router mode: herald.ingest → herald.events binding removed (the hub routes)\n`,
      );
    });
};
