import { normalizeConfig } from '../config/index.ts';
import { openStore } from '../store/index.ts';
import type { User } from './types.ts';
import { Users } from './users.ts';

/**
 * Creates an admin user and a token for it straight in the store, for a hub that has no admin yet
 * and no HERALD_ADMIN_TOKEN (`herald users add NAME --admin --database-url URL`). `databaseUrl`
 * reads as HERALD_DATABASE_URL does: a postgres:// URL, or the embedded store's directory, which a
 * running hub holds (CONFLICT: stop it, or use HERALD_ADMIN_TOKEN). Migrates first, as a hub would.
 * Makes no RabbitMQ user: an admin needs none. Resolves with the user and the token's secret.
 */
export async function bootstrapAdmin(databaseUrl: string, name: string, tokenName = 'bootstrap'): Promise<{ user: User; token: string }> {
  const config = normalizeConfig({ databaseUrl }, {});
  const store = await openStore({ url: config.databaseUrl, dataDir: config.dataDir });
  try {
    await store.migrate();
    const users = new Users({ store: store.users });
    const { user } = await users.create(name, [{ role: 'admin' }]);
    const { secret } = await users.createToken(name, tokenName);
    return { user, token: secret };
  } finally {
    await store.close();
  }
}
