import type { Command } from 'commander';
import { type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

/** A token as the hub's REST API lists it: never its secret. */
interface TokenDoc {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
}

/**
 * The name of a token created without --name: `cli-` and the time, e.g.
 * `cli-2025-01-31T09-15-00.123Z` (token names are unique per user and take A-Z a-z 0-9 _ . -).
 */
export function defaultTokenName(now: Date = new Date()): string {
  return `cli-${now.toISOString().replace(/:/g, '-')}`;
}

/** A token in one line: `<id>  <name>  created <time>  last used <time|never>`. */
export function tokenLine(t: TokenDoc): string {
  return `${t.id}  ${t.name}  created ${t.createdAt}  last used ${t.lastUsedAt ?? 'never'}`;
}

/**
 * `herald tokens create|list|revoke`: a user's API tokens over the hub's REST API
 * (/api/v1/users/{name}/tokens; admins only). `create` prints the secret alone on stdout, the one
 * time the hub shows it, so `TOKEN=$(herald tokens create alice --quiet)` captures it; what it is
 * goes to stderr unless --quiet. The hub refusing or out of reach exits 1, with one line.
 */
export const registerTokens: RegisterCommand = (program: Command) => {
  const tokens = program
    .command('tokens')
    .description("users' API tokens (admin): create, list, revoke")
    .showHelpAfterError('(see herald tokens --help)');

  tokens
    .command('create')
    .description('create an API token for a user; prints its secret on stdout, shown this once')
    .argument('<user>', 'the user name')
    .option('--name <name>', 'the token name, unique per user: 1-64 of A-Z a-z 0-9 _ . - (default: cli-<time>)')
    .option('--quiet', 'print the secret only, nothing on stderr')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald tokens create --help)')
    .action(async (user: string, o: HubFlags & { name?: string; quiet?: boolean }) => {
      const hub = hubOf(o);
      const t = await callHub<TokenDoc & { token: string }>(hub, 'POST', `/users/${encodeURIComponent(user)}/tokens`, {
        name: o.name ?? defaultTokenName(),
      });
      if (!o.quiet) process.stderr.write(`herald: token ${t.name} (${t.id}) of ${user}: the secret below is not shown again\n`);
      process.stdout.write(`${t.token}\n`);
    });

  tokens
    .command('list')
    .description("list a user's tokens, without their secrets")
    .argument('<user>', 'the user name')
    .option('--json', 'print the JSON the hub returned')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald tokens list --help)')
    .action(async (user: string, o: HubFlags & { json?: boolean }) => {
      const r = await callHub<{ items: TokenDoc[] }>(hubOf(o), 'GET', `/users/${encodeURIComponent(user)}/tokens`);
      if (o.json) process.stdout.write(`${JSON.stringify(r.items, null, 2)}\n`);
      else if (r.items.length === 0) process.stdout.write('no tokens\n');
      else for (const t of r.items) process.stdout.write(`${tokenLine(t)}\n`);
    });

  tokens
    .command('revoke')
    .description('revoke a token: the next request with it is refused (401)')
    .argument('<user>', 'the user name')
    .argument('<id>', 'the token id, as tokens list prints it')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald tokens revoke --help)')
    .action(async (user: string, id: string, o: HubFlags) => {
      await callHub(hubOf(o), 'DELETE', `/users/${encodeURIComponent(user)}/tokens/${encodeURIComponent(id)}`);
      process.stdout.write(`revoked token ${id} of ${user}\n`);
    });
};
