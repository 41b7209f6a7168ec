import type { Command } from 'commander';
import { registerBench } from './bench.ts';
import { registerCatalog } from './catalog.ts';
import { registerDead } from './dead.ts';
import { registerEvents } from './events.ts';
import { registerExchanges } from './exchanges.ts';
import { registerHub } from './hub.ts';
import { registerOutboxRelay } from './outbox-relay.ts';
import { registerPause } from './pause.ts';
import { registerPublish } from './publish.ts';
import { registerReplay } from './replay.ts';
import { registerTail } from './tail.ts';
import { registerTokens } from './tokens.ts';
import { registerTopology } from './topology.ts';
import { registerUsers } from './users.ts';

/** Registers one subcommand on the program. */
export type RegisterCommand = (program: Command) => void;

/** Every subcommand of `herald`. Add a file under ./commands/ and list it here, one per line. */
// biome-ignore format: one command per line, so each addition is a one-line change that merges cleanly
export const commands: RegisterCommand[] = [
  registerBench,
  registerEvents,
  registerHub,
  registerPublish,
  registerTopology,
  registerPause,
  registerReplay,
  registerTail,
  registerUsers,
  registerTokens,
  registerExchanges,
  registerDead,
  registerOutboxRelay,
  registerCatalog,
];
