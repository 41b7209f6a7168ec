#!/usr/bin/env node
import { createRequire } from 'node:module';
import { DEFAULT_AMQP_URL } from '@herald/client';
import { redactSecrets } from '@herald/core';
import { Command, CommanderError } from 'commander';
import { commands } from './commands/index.ts';
import { EXIT_CODES, UsageError } from './usage.ts';

// src/main.ts (through tsx) and dist/main.js are both one level below the package root.
const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

const HELP_AFTER = `
Environment (a flag wins over its variable):
  HERALD_AMQP_URL   RabbitMQ, as --amqp-url (default ${DEFAULT_AMQP_URL})
  HERALD_HUB_URL    the hub's REST API, as --hub-url (default http://127.0.0.1:$HERALD_HTTP_PORT, else :8080)
  HERALD_GRPC_URL   the hub's gRPC API, as --grpc-url (default 127.0.0.1:$HERALD_GRPC_PORT, else :50051)
  HERALD_TOKEN      API token, as --token: sent as Authorization: Bearer <token>
  HERALD_*          the hub's settings: see herald hub --help

Durations: 500ms, 30s, 5m, 1h, 2d, or combinations such as 1h30m.

Exit codes:
  ${EXIT_CODES.success}  success
  ${EXIT_CODES.failure}  failure: the hub or RabbitMQ refused or cannot be reached, a bench lost events, a replay failed
  ${EXIT_CODES.usage}  usage error: unknown option or command, missing argument, invalid flag value or configuration
`;

/** The line after a usage error: where the command's help is. */
function hint(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  return `(see ${['herald', ...names].join(' ')} --help)`;
}

/** A commander message (`error: …`, maybe a second line `(Did you mean …?)`) as one `herald: …` line. */
function oneLine(text: string): string {
  return `herald: ${redactSecrets(
    text
      .replace(/^error: /, '')
      .trim()
      .replace(/\s*\n\s*/g, ' '),
  )}\n`;
}

/** The `herald` command. Each subcommand lives in its own file under ./commands/. */
const program = new Command('herald')
  .description('Herald: an event platform for services on RabbitMQ and PostgreSQL')
  .version(version, '-V, --version', 'print the version')
  .helpOption('-h, --help', 'print this help')
  .configureHelp({ sortSubcommands: true })
  // Commander reports usage errors (and help, version) by throwing: the exit code is decided below.
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(oneLine(text)) })
  .addHelpText('after', HELP_AFTER);

for (const register of commands) register(program);
for (const command of [program, ...program.commands]) command.showHelpAfterError(hint(command));

// The command whose action runs, for the hint after a UsageError it throws.
let running: Command = program;
program.hook('preAction', (_program, actionCommand) => {
  running = actionCommand;
});

/** Reports an error that ended the command and returns the exit code. */
function exitCodeOf(err: unknown): number {
  // Commander printed its message already (through outputError and showHelpAfterError).
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_CODES.success : EXIT_CODES.usage;
  const message = redactSecrets(err instanceof Error ? err.message : String(err));
  if (err instanceof UsageError) {
    process.stderr.write(`herald: ${message}\n${hint(running)}\n`);
    return EXIT_CODES.usage;
  }
  process.stderr.write(`herald: ${message}\n`);
  return EXIT_CODES.failure;
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.exit(exitCodeOf(err));
});
