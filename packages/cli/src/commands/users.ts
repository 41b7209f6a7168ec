import { assertSender, selectorPatterns } from '@herald/core';
import type { Command } from 'commander';
import { UsageError } from '../usage.ts';
import { type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

/** A role as the hub's REST API takes and returns it. */
export type RoleDoc = { role: 'admin' } | { role: 'publisher'; senders: string[] } | { role: 'subscriber'; selector: string[] };

/** A user as the hub's REST API returns it; `amqp` only in the answer that made its RabbitMQ user. */
interface UserDoc {
  name: string;
  roles: RoleDoc[];
  createdAt: string;
  amqpUsername: string | null;
  amqp?: { username: string; password: string };
}

/** The role flags of `users add` and `users roles`, as commander hands them over. */
export interface RoleFlags {
  admin?: boolean | undefined;
  /** One entry per `--publisher`, each comma-separated senders. */
  publisher?: string[] | undefined;
  /** One entry per `--subscriber`, each a comma-separated selector. */
  subscriber?: string[] | undefined;
}

/** Commander's collector for a repeatable flag: no default, so the help shows none. */
function repeat(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * The roles the flags ask for: `--admin`; every `--publisher` merged into one publisher role, every
 * `--subscriber` into one subscriber role, duplicates dropped. Throws a UsageError, naming the flag,
 * for no role at all, a sender core refuses, or a selector core refuses (the hub checks with the
 * same rules, so nothing it would refuse for these reasons is sent).
 */
export function rolesOf(flags: RoleFlags): RoleDoc[] {
  const roles: RoleDoc[] = [];
  if (flags.admin) roles.push({ role: 'admin' });
  if (flags.publisher !== undefined) {
    const senders = new Set<string>();
    for (const list of flags.publisher) {
      for (const s of list.split(',').map((x) => x.trim())) {
        try {
          assertSender(s);
        } catch (err) {
          throw new UsageError(`invalid --publisher ${JSON.stringify(list)}: ${(err as Error).message}`, { cause: err });
        }
        senders.add(s);
      }
    }
    roles.push({ role: 'publisher', senders: [...senders] });
  }
  if (flags.subscriber !== undefined) {
    const patterns = new Set<string>();
    for (const list of flags.subscriber) {
      try {
        for (const p of selectorPatterns(list)) patterns.add(p);
      } catch (err) {
        throw new UsageError(`invalid --subscriber ${JSON.stringify(list)}: ${(err as Error).message}`, { cause: err });
      }
    }
    roles.push({ role: 'subscriber', selector: [...patterns] });
  }
  if (roles.length === 0) throw new UsageError('give at least one role: --admin, --publisher <senders>, --subscriber <selector>');
  return roles;
}

/** A role in one word: `admin`, `publisher=billing,crm`, `subscriber=billing:*`. */
export function roleText(r: RoleDoc): string {
  if (r.role === 'publisher') return `publisher=${r.senders.join(',')}`;
  if (r.role === 'subscriber') return `subscriber=${r.selector.join(',')}`;
  return r.role;
}

/** A user in one line: `<name>  <roles>  created <time>[  amqp <username>]`. */
export function userLine(u: Pick<UserDoc, 'name' | 'roles' | 'createdAt' | 'amqpUsername'>): string {
  return `${u.name}  ${u.roles.map(roleText).join(' ')}  created ${u.createdAt}${u.amqpUsername ? `  amqp ${u.amqpUsername}` : ''}`;
}

/** Prints the user and, when the answer carries them, its RabbitMQ credentials: the only time the hub shows them. */
function printUser(u: UserDoc): void {
  process.stdout.write(`${userLine(u)}\n`);
  if (u.amqp === undefined) return;
  process.stdout.write(`amqp username: ${u.amqp.username}\namqp password: ${u.amqp.password}\n`);
  process.stderr.write('herald: the RabbitMQ password is not shown again: store it now\n');
}

const ROLE_HELP = `
At least one role; they combine. --publisher and --subscriber may be repeated: their lists are merged.
Example: herald users add billing-svc --publisher billing --subscriber "shipping:*,crm:contact.*"
`;

function roleOptions(command: Command): Command {
  return command
    .option('--admin', 'the admin role: everything, users and tokens included')
    .option('--publisher <senders>', 'may publish as these senders, comma-separated (repeatable)', repeat)
    .option('--subscriber <selector>', 'may read the events of this selector: sender:type patterns, comma-separated (repeatable)', repeat)
    .addHelpText('after', ROLE_HELP);
}

function hubOptions(command: Command): Command {
  return command.addOption(hubUrlOption()).addOption(tokenOption());
}

/**
 * `herald users add|list|remove|roles`: the hub's users and their roles over its REST API
 * (/api/v1/users; admins only, so --token or HERALD_TOKEN carries an admin's token). Flags that ask
 * for no role or a malformed one exit 2 before any call; the hub refusing or out of reach exits 1,
 * with one line.
 */
export const registerUsers: RegisterCommand = (program: Command) => {
  const users = program
    .command('users')
    .description("the hub's users and their roles (admin): add, list, remove, roles")
    .showHelpAfterError('(see herald users --help)');

  hubOptions(
    roleOptions(
      users
        .command('add')
        .description('create a user with its roles; prints it, and its RabbitMQ credentials once when the hub makes a RabbitMQ user')
        .argument('<name>', 'the user name: 1-64 of A-Z a-z 0-9 _ . -'),
    ),
  )
    .option(
      '--database-url <url>',
      "with --admin only: write the admin and a token straight into the hub's store (a postgres:// URL or the embedded store's directory) instead of asking the hub, for a hub without an admin; prints the token",
    )
    .showHelpAfterError('(see herald users add --help)')
    .action(async (name: string, o: HubFlags & RoleFlags & { databaseUrl?: string }) => {
      const roles = rolesOf(o);
      if (o.databaseUrl !== undefined) {
        if (roles.length !== 1 || roles[0]?.role !== 'admin')
          throw new UsageError('--database-url creates an admin: give --admin and no other role');
        // Loaded only here: the other commands do not open the store.
        const { bootstrapAdmin } = await import('@herald/hub');
        const { user, token } = await bootstrapAdmin(o.databaseUrl, name);
        process.stderr.write(`herald: created admin ${user.name} in the store; its token (shown once) follows\n`);
        process.stdout.write(`${token}\n`);
        return;
      }
      printUser(await callHub<UserDoc>(hubOf(o), 'POST', '/users', { name, roles }));
    });

  hubOptions(users.command('list').description('list the users and their roles').option('--json', 'print the JSON the hub returned'))
    .showHelpAfterError('(see herald users list --help)')
    .action(async (o: HubFlags & { json?: boolean }) => {
      const r = await callHub<{ items: UserDoc[] }>(hubOf(o), 'GET', '/users');
      if (o.json) process.stdout.write(`${JSON.stringify(r.items, null, 2)}\n`);
      else if (r.items.length === 0) process.stdout.write('no users\n');
      else for (const u of r.items) process.stdout.write(`${userLine(u)}\n`);
    });

  hubOptions(
    users
      .command('remove')
      .description('delete a user: its tokens stop working at once, its RabbitMQ user is deleted')
      .argument('<name>', 'the user name'),
  )
    .showHelpAfterError('(see herald users remove --help)')
    .action(async (name: string, o: HubFlags) => {
      await callHub(hubOf(o), 'DELETE', `/users/${encodeURIComponent(name)}`);
      process.stdout.write(`removed user ${name}\n`);
    });

  hubOptions(
    roleOptions(
      users
        .command('roles')
        .description("replace a user's roles (effective on its next request); prints the user")
        .argument('<name>', 'the user name'),
    ),
  )
    .showHelpAfterError('(see herald users roles --help)')
    .action(async (name: string, o: HubFlags & RoleFlags) => {
      const roles = rolesOf(o);
      printUser(await callHub<UserDoc>(hubOf(o), 'PUT', `/users/${encodeURIComponent(name)}/roles`, roles));
    });
};
