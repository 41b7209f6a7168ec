import type { Command } from 'commander';

/** Registers one subcommand on the program. */
export type RegisterCommand = (program: Command) => void;

/** Every subcommand of `herald`. Add a file under ./commands/ and list it here. */
export const commands: RegisterCommand[] = [];
