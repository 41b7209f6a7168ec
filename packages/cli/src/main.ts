#!/usr/bin/env node
import { redactSecrets } from '@herald/core';
import { Command } from 'commander';
import { commands } from './commands/index.ts';

/** The `herald` command. Each subcommand lives in its own file under ./commands/. */
const program = new Command('herald')
  .description('Herald: an event platform for services on RabbitMQ and PostgreSQL')
  .showHelpAfterError()
  .configureHelp({ sortSubcommands: true });

for (const register of commands) register(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`herald: ${redactSecrets(message)}\n`);
  process.exit(1);
});
