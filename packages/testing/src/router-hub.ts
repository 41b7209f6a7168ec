import { createTestVhost, type TestVhost } from './broker.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { freePort, type HeraldProcess, startHubProcess } from './hub-process.ts';

/** A vhost, a database and a router hub process on free ports: what one end-to-end test file needs. */
export interface RouterHub {
  readonly vhost: TestVhost;
  readonly db: TestDatabase;
  /** `http://127.0.0.1:<port>` of the REST API. */
  readonly http: string;
  /** `127.0.0.1:<port>` of the gRPC service. */
  readonly grpc: string;
  readonly grpcPort: number;
  /** The newest hub process (the one start() launched last). */
  readonly hub: HeraldProcess;
  /** Starts another hub process with the same environment, e.g. after the test killed the previous one. */
  start(): Promise<HeraldProcess>;
  /** Kills every hub process this fixture started (SIGKILL), deletes the vhost and drops the database. */
  close(): Promise<void>;
}

/**
 * Creates a vhost and a database named after `prefix`, picks free HTTP and gRPC ports, and starts a
 * router hub process on them with `extraEnv` added (or what it answers for the new vhost, e.g. an
 * HERALD_AMQP_URL of a user of its own). Rejects (and cleans up) when the hub does not come up.
 */
export async function startRouterHub(
  prefix: string,
  extraEnv: Record<string, string> | ((vhost: TestVhost) => Promise<Record<string, string>>) = {},
): Promise<RouterHub> {
  const [vhost, db] = await Promise.all([createTestVhost(prefix), createTestDatabase(prefix)]);
  const hubs: HeraldProcess[] = [];
  const close = async () => {
    for (const h of hubs) await h.kill('SIGKILL');
    await vhost.delete().catch(() => undefined);
    await db.drop().catch(() => undefined);
  };
  try {
    const httpPort = await freePort();
    const grpcPort = await freePort();
    const env = {
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_MODE: 'router',
      HERALD_HTTP_PORT: String(httpPort),
      HERALD_GRPC_PORT: String(grpcPort),
      ...(typeof extraEnv === 'function' ? await extraEnv(vhost) : extraEnv),
    };
    const start = async () => {
      const hub = await startHubProcess(env);
      hubs.push(hub);
      return hub;
    };
    await start();
    return {
      vhost,
      db,
      http: `http://127.0.0.1:${httpPort}`,
      grpc: `127.0.0.1:${grpcPort}`,
      grpcPort,
      get hub() {
        return hubs[hubs.length - 1] as HeraldProcess;
      },
      start,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
