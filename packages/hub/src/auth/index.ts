import type { Logger } from 'pino';
import type { SenderCheck } from '../ingest/index.ts';
import type { UserStore } from '../store/index.ts';
import { Auth } from './auth.ts';
import { createRabbitUsers, createSenderCheck, vhostOfAmqpUrl } from './rabbitmq-users.ts';
import type { Role } from './types.ts';
import { Users } from './users.ts';

export { AUTH_MODES, Auth, type AuthMode, authEnabled, isLoopbackHost, newTokenSecret, secretHash, TOKEN_PREFIX } from './auth.ts';
export type { AmqpCredentials, RabbitUsers } from './rabbitmq-users.ts';
export { amqpUsernameOf, createRabbitUsers, createSenderCheck } from './rabbitmq-users.ts';
export { patternCovers, typeCovers, uncovered } from './scope.ts';
export type { Principal, Role, TokenInfo, User } from './types.ts';
export { parseRoles, Users } from './users.ts';

/** The settings access control reads (HubConfig's). */
export interface AccessConfig {
  readonly amqpUrl: string;
  readonly authEnabled: boolean;
  readonly adminToken: string | undefined;
  readonly rabbitmqApi: string | undefined;
  readonly authFailuresPerMinute: number;
  readonly publishRatePerToken: number;
}

/** How often the ingest's map of RabbitMQ users to roles is read again, and open streams checked (users changed through another hub). */
const REFRESH_MS = 10_000;

/** Authentication, the users and tokens, and the ingest's user_id check, for one hub. */
export interface AccessControl {
  readonly auth: Auth;
  readonly users: Users;
  /** The ingest's check of `user_id` against the sender, from memory. */
  readonly senderCheck: SenderCheck;
  /** Loads the users (for senderCheck), checks the RabbitMQ API when configured, and says in the log how access works. */
  start(): Promise<void>;
  stop(): void;
}

export function createAccessControl(config: AccessConfig, store: UserStore, logger: Logger): AccessControl {
  const log = logger.child({ part: 'auth' });
  const rabbit = config.rabbitmqApi ? createRabbitUsers(config.rabbitmqApi, { vhost: vhostOfAmqpUrl(config.amqpUrl) }) : undefined;
  let byAmqpUser = new Map<string, readonly Role[]>();
  let timer: NodeJS.Timeout | undefined;
  const refresh = async () => {
    const next = new Map<string, readonly Role[]>();
    for (const u of await store.list()) if (u.amqpUsername !== undefined) next.set(u.amqpUsername, u.roles);
    byAmqpUser = next;
    await auth.recheckStreams();
  };
  const refreshSoon = () => void refresh().catch((err: unknown) => log.warn({ err }, 'could not reload the users'));
  const auth = new Auth({
    enabled: config.authEnabled,
    users: store,
    adminToken: config.adminToken,
    failuresPerMinute: config.authFailuresPerMinute,
    publishRatePerToken: config.publishRatePerToken,
    log,
  });
  const users = new Users({ store, rabbit, log, onChange: refreshSoon });
  return {
    auth,
    users,
    senderCheck: createSenderCheck((amqpUser) => byAmqpUser.get(amqpUser)),
    async start() {
      await refresh();
      if (rabbit) {
        await rabbit.check();
        // RabbitMQ users made by an earlier version, or changed by hand, are brought in line with their roles.
        for (const u of await store.list()) {
          if (u.amqpUsername === undefined) continue;
          await rabbit
            .update(u.name, u.roles)
            .catch((err: unknown) => log.warn({ err, user: u.name }, 'could not update the RabbitMQ user'));
        }
      }
      timer = setInterval(refreshSoon, REFRESH_MS);
      timer.unref();
      if (!config.authEnabled) {
        log.info('authentication off: the hub listens on a loopback address only (HERALD_AUTH=auto); every request is allowed');
        return;
      }
      const admins = (await store.list()).filter((u) => u.roles.some((r) => r.role === 'admin'));
      if (admins.length === 0 && config.adminToken === undefined) {
        log.warn(
          'authentication on, and there is no admin: set HERALD_ADMIN_TOKEN and restart, then create users with ' +
            '`herald users add NAME --admin` and `herald tokens create NAME` (HERALD_TOKEN=<the admin token>)',
        );
      } else log.info({ admins: admins.length, adminToken: config.adminToken !== undefined }, 'authentication on');
    },
    stop() {
      if (timer) clearInterval(timer);
    },
  };
}
