import { declareTopology } from '@herald/client';
import type { Command } from 'commander';
import { safeUrl } from '../bench/options.ts';
import { UsageError } from '../usage.ts';
import { amqpUrl, amqpUrlOption } from './flags.ts';
import type { RegisterCommand } from './index.ts';

/**
 * `herald topology [--mode router|archive]`: declares Herald's exchanges and queues through the SDK.
 * Archive mode adds the binding herald.ingest → herald.events (`#`) so events flow without a hub
 * routing them; router mode removes it (the hub routes). Idempotent; fails with the broker's reason
 * when it cannot connect or an existing exchange has other arguments (exit 1), and with exit 2 for
 * another --mode.
 */
export const registerTopology: RegisterCommand = (program: Command) => {
  program
    .command('topology')
    .description("declare Herald's exchanges and queues; archive mode binds herald.ingest → herald.events directly")
    .option('--mode <mode>', 'router (the hub routes events) or archive (direct binding)', 'router')
    .addOption(amqpUrlOption())
    .action(async (raw: { mode: string; amqpUrl?: string }) => {
      if (raw.mode !== 'router' && raw.mode !== 'archive')
        throw new UsageError(`invalid --mode ${JSON.stringify(raw.mode)}: expected router or archive`);
      const url = amqpUrl(raw.amqpUrl);
      await declareTopology({ url, mode: raw.mode });
      process.stdout.write(
        raw.mode === 'archive'
          ? `topology declared on ${safeUrl(url)} in archive mode: herald.ingest → herald.events bound (#)\n`
          : `topology declared on ${safeUrl(url)} in router mode: herald.ingest → herald.events binding removed (the hub routes)\n`,
      );
    });
};
