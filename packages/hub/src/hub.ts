import { ErrorCodes, HeraldError, type HeraldEvent } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { deadLettersRoutes } from './api/dead-letters-routes.ts';
import { exchangesRoutes } from './api/exchanges-routes.ts';
import { createApi, type Readiness } from './api/index.ts';
import { metricsRoutes } from './api/metrics-routes.ts';
import { pausesRoutes } from './api/pauses-routes.ts';
import { replaysRoutes } from './api/replays-routes.ts';
import { subscriptionsRoutes } from './api/subscriptions-routes.ts';
import { type AccessControl, createAccessControl } from './auth/index.ts';
import { createHubCatalog, type HubCatalog } from './catalog/index.ts';
import { type HubConfig, redactUrl } from './config/index.ts';
import { dashboardRoutes } from './dashboard/routes.ts';
import { DeadLetters } from './dead-letters/dead-letters.ts';
import { EventPath, type EventPathStats } from './event-path.ts';
import { Exchanges } from './exchanges/index.ts';
import type { DirectOutcome } from './grpc/publish-stream.ts';
import { createGrpcServer, type GrpcServer } from './grpc/server.ts';
import { probeAmqp, probeQueueTypes } from './ingest/index.ts';
import { createLogger } from './logger.ts';
import { HubMetrics, type MetricsSources } from './metrics/index.ts';
import { createDeadLetterStore, openStore, type Store } from './store/index.ts';
import { createSubscriptionManager, type SubscriptionManager } from './subscriptions/index.ts';

/** How often a standby hub asks for the writer lease again. */
const LEASE_RETRY_MS = 2000;

/** What the hub is doing, for /readyz, logs and tests. */
export type HubState = 'stopped' | 'starting' | 'standby' | 'running' | 'stopping';

/**
 * One hub process: the store, the writer lease, ingest and the HTTP server (the REST API of
 * ./api/, with /healthz and /readyz: ready when running and ingest is consuming), and the gRPC
 * server. In router mode, while it holds the writer lease, the dispatcher and the durable
 * subscriptions (./subscriptions/) run too; the subscriptions are restored from the store before
 * the API or gRPC serve them, and stop (their acknowledged offsets saved) when the hub stops or
 * loses the lease.
 *
 * Failure at start: an unreachable database or RabbitMQ rejects start() with a HeraldError
 * (UNAVAILABLE) whose message is one line: which, where, and how to start it. Once running, the
 * hub survives outages of either: ingest pauses while the store is down and reconnects to RabbitMQ
 * by itself. When another process holds the writer lease the hub waits as a standby (HTTP up,
 * /readyz not ready) and takes over when the lease frees; when it loses the lease it stops ingest
 * and becomes a standby again.
 */
export interface Hub {
  readonly config: HubConfig;
  readonly logger: Logger;
  /**
   * Opens the store, migrates, serves HTTP and gRPC, takes the writer lease (waiting as a standby),
   * starts ingest (and in router mode the dispatcher and the subscriptions).
   */
  start(): Promise<void>;
  /** Graceful: stops consuming, finishes the batch in flight, closes HTTP, RabbitMQ and the store. Idempotent. */
  stop(): Promise<void>;
  state(): HubState;
  /** The HTTP address once listening. */
  address(): { host: string; port: number } | undefined;
  /** The gRPC address once listening (the bound port when configured with 0). */
  grpcAddress(): { host: string; port: number } | undefined;
  /** The durable subscriptions, while this hub holds the writer lease in router mode. */
  subscriptions(): SubscriptionManager | undefined;
  /** The event path's counters; undefined while standby. */
  stats(): EventPathStats | undefined;
}

/** Creates a hub for a normalized configuration (see normalizeConfig). Nothing happens before start(). */
export function createHub(config: HubConfig, options: { logger?: Logger } = {}): Hub {
  return new HubProcess(config, options.logger ?? createLogger(config.logLevel, undefined, config.logFormat));
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The one line a user reads when the database cannot be reached at start. */
function databaseUnreachable(config: HubConfig, err: unknown): HeraldError {
  const code = (err as { code?: unknown })?.code;
  const reason = typeof code === 'string' ? code : errText(err);
  if (config.databaseUrl === undefined) {
    return new HeraldError(
      ErrorCodes.UNAVAILABLE,
      `cannot open the embedded store in ${config.dataDir} (${reason}): check the directory is writable and no other hub uses it, or set HERALD_DATABASE_URL`,
      { cause: err },
    );
  }
  const u = new URL(config.databaseUrl);
  const where = `postgres://${u.hostname}:${u.port || 5432}${u.pathname}`;
  let hint = 'start it with `pg_ctlcluster 15 main start` (or your service manager) or set HERALD_DATABASE_URL';
  if (code === '3D000') hint = 'the database does not exist: create it with `createdb`';
  else if (code === '28P01' || code === '28000') hint = 'check the user and password in HERALD_DATABASE_URL';
  return new HeraldError(ErrorCodes.UNAVAILABLE, `cannot reach PostgreSQL at ${where} (${reason}): ${hint}`, { cause: err });
}

class HubProcess implements Hub {
  private store: Store | undefined;
  /** While this hub holds the writer lease: ingest → log → flow (→ dispatcher) → herald.events. */
  private path: EventPath | undefined;
  /** Router mode, while this hub holds the writer lease: durable subscriptions. */
  private subs: SubscriptionManager | undefined;
  private http: FastifyInstance | undefined;
  private grpc: GrpcServer | undefined;
  private grpcPort: number | undefined;
  private current: HubState = 'stopped';
  private leaseLoop: Promise<void> | undefined;
  private wakeLease: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  private access: AccessControl | undefined;
  private exchanges: Exchanges | undefined;
  /** The event catalog: its routes, and the validation and observation ingest calls. */
  private catalog: HubCatalog | undefined;
  /** The dead letters API and the intake of herald.dead, on every hub (one consumes at a time). */
  private deadLetters: DeadLetters | undefined;
  /** Counters of the event path and the gauges read at scrape time; undefined with HERALD_METRICS=off. */
  private readonly metrics: HubMetrics | undefined;

  constructor(
    readonly config: HubConfig,
    readonly logger: Logger,
  ) {
    this.metrics = config.metrics ? new HubMetrics({ maxFlows: config.metricsMaxFlows }) : undefined;
  }

  state(): HubState {
    return this.current;
  }

  stats(): EventPathStats | undefined {
    return this.path?.stats();
  }

  address(): { host: string; port: number } | undefined {
    const a = this.http?.server.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  grpcAddress(): { host: string; port: number } | undefined {
    return this.grpcPort === undefined ? undefined : { host: this.config.httpHost, port: this.grpcPort };
  }

  subscriptions(): SubscriptionManager | undefined {
    return this.subs;
  }

  /** The stages of a hub's start, in order; a failure stops what started and rejects with its one line. */
  async start(): Promise<void> {
    this.current = 'starting';
    this.logStart();
    const store = await this.openStore();
    try {
      await probeAmqp(this.config.amqpUrl);
      await probeQueueTypes(this.config.amqpUrl, this.config.mode, this.config.queueType);
      await this.startAccess(store);
      await this.startExchangesAndCatalog(store);
      this.startDeadLetters(store);
      this.metrics?.start(this.metricSources(store));
      await this.startHttp(store);
      await this.startGrpc();
      await this.startWriterOrStandby();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private logStart(): void {
    const { config } = this;
    this.logger.info(
      {
        mode: config.mode,
        amqp: redactUrl(config.amqpUrl),
        store: config.databaseUrl ? redactUrl(config.databaseUrl) : `embedded:${config.dataDir}`,
        http: `${config.httpHost}:${config.httpPort}`,
        grpc: `${config.httpHost}:${config.grpcPort}`,
        auth: config.authEnabled ? 'on' : 'off',
      },
      'hub starting',
    );
  }

  /** Opens the store and migrates; an unreachable database is one line saying which, where, and what to do. */
  private async openStore(): Promise<Store> {
    const { config } = this;
    try {
      const store = await openStore({
        url: config.databaseUrl,
        dataDir: config.dataDir,
        readPoolSize: config.readPoolSize,
        queryTimeoutMs: Math.round(config.queryTimeout * 1000),
        onLeaseLost: (err?: unknown) => this.leaseLost(err),
      });
      this.store = store;
      await store.migrate();
      return store;
    } catch (err) {
      await this.store?.close().catch(() => undefined);
      this.store = undefined;
      this.current = 'stopped';
      // The store's own CONFLICT (embedded directory in use) and INVALID_CONFIG lines are clear as they are.
      if (err instanceof HeraldError && err.code !== ErrorCodes.UNAVAILABLE) throw err;
      throw databaseUnreachable(config, err instanceof HeraldError && err.cause !== undefined ? err.cause : err);
    }
  }

  private async startAccess(store: Store): Promise<void> {
    this.access = createAccessControl(this.config, store.users, this.logger);
    await this.access.start();
  }

  private async startExchangesAndCatalog(store: Store): Promise<void> {
    const exchanges = new Exchanges(store.exchanges, this.config.amqpUrl, this.logger.child({ part: 'exchanges' }));
    this.exchanges = exchanges;
    await exchanges.restore();
    this.catalog = createHubCatalog({
      sql: store.sql,
      amqpUrl: this.config.amqpUrl,
      logger: this.logger,
      exchanges: () => exchanges.list(),
    });
    await this.catalog.start();
  }

  private startDeadLetters(store: Store): void {
    this.deadLetters = new DeadLetters(createDeadLetterStore(store.sql), this.config.amqpUrl, this.logger.child({ part: 'dead-letters' }), {
      events: store,
      queueType: this.config.queueType,
      maxKept: this.config.deadLettersMax,
      senderCheck: this.access?.senderCheck,
    });
    this.deadLetters.start();
  }

  /** With the writer lease, the event path; without, a standby that takes over when the lease frees. */
  private async startWriterOrStandby(): Promise<void> {
    if (await this.acquireLease(true)) return this.startEventPath();
    this.current = 'standby';
    this.leaseLoop = this.standby();
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.current = 'stopping';
    this.logger.info('hub stopping');
    this.wakeLease?.();
    // Consumers end first (their acknowledged offsets are saved), then the flow stops.
    await this.grpc?.stop().catch((err) => this.logger.error({ err: errText(err) }, 'gRPC stop failed'));
    await this.subs?.stop().catch((err) => this.logger.error({ err: errText(err) }, 'subscriptions stop failed'));
    this.subs = undefined;
    await this.path?.stop().catch((err) => this.logger.error({ err: errText(err) }, 'event path stop failed'));
    await this.leaseLoop;
    await this.http?.close().catch(() => undefined);
    await this.catalog?.stop().catch(() => undefined);
    this.access?.stop();
    await this.deadLetters?.stop().catch(() => undefined);
    this.metrics?.stop();
    await this.store?.close().catch(() => undefined);
    this.current = 'stopped';
    this.logger.info('hub stopped');
  }

  private async acquireLease(first: boolean): Promise<boolean> {
    const store = this.store;
    if (!store) return false;
    try {
      const held = await store.acquireWriterLease();
      if (!held && first) this.logger.warn('another hub holds the writer lease: waiting as a standby');
      return held;
    } catch (err) {
      if (first) throw databaseUnreachable(this.config, err);
      this.logger.warn({ err: errText(err) }, 'could not ask for the writer lease; retrying');
      return false;
    }
  }

  private async standby(): Promise<void> {
    while (!this.stopping) {
      await new Promise<void>((r) => {
        this.wakeLease = r;
        setTimeout(r, LEASE_RETRY_MS).unref();
      });
      if (this.stopping) return;
      if (await this.acquireLease(false)) {
        this.logger.info('took the writer lease');
        try {
          await this.startEventPath();
          return;
        } catch (err) {
          this.logger.error({ err: errText(err) }, 'could not start ingest; will retry as a standby');
          await this.subs?.stop().catch(() => undefined);
          this.subs = undefined;
          await this.path?.stop().catch(() => undefined);
          this.path = undefined;
        }
      }
    }
  }

  /**
   * The event path (event-path.ts: dispatcher, flow, ingest, started from the last stage to the
   * first), then in router mode the durable subscriptions, fed from memory with what the flow
   * forwards live and restored before anything serves them: the API and gRPC see the manager only
   * once it started.
   */
  private async startEventPath(): Promise<void> {
    const store = this.store;
    if (store === undefined) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'cannot start ingest: the store is not open');
    const path = new EventPath({
      config: this.config,
      store,
      logger: this.logger,
      senderCheck: this.access?.senderCheck,
      inspect: this.catalog?.inspect,
      metrics: this.metrics,
    });
    this.path = path;
    path.flow.onForwarded((events) => this.subs?.feed(events));
    await path.start();
    const dispatcher = path.dispatcher;
    if (dispatcher) {
      const subs = createSubscriptionManager({
        store,
        sql: store.sql,
        amqpUrl: this.config.amqpUrl,
        logger: this.logger,
        liveBufferMax: this.config.receiverMaxLength,
        maxSubscriptions: this.config.maxSubscriptions,
        dispatched: () => path.flow.horizon(),
        holding: () => dispatcher.stats().holding > 0,
        metrics: this.metrics,
      });
      try {
        await subs.start();
      } catch (err) {
        await subs.stop().catch(() => undefined);
        throw err;
      }
      this.subs = subs;
    }
    this.current = 'running';
    this.logger.info(
      { mode: this.config.mode, http: this.address(), grpc: this.grpcPort, subscriptions: this.subs !== undefined },
      'hub running',
    );
  }

  private leaseLost(err?: unknown): void {
    if (this.stopping || this.current !== 'running') return;
    this.logger.error(
      { err: err === undefined ? undefined : errText(err) },
      'lost the writer lease: stopping ingest, waiting as a standby',
    );
    this.current = 'standby';
    const path = this.path;
    const subs = this.subs;
    this.path = undefined;
    this.subs = undefined;
    this.leaseLoop = (async () => {
      await subs?.stop().catch(() => undefined);
      await path?.stop().catch(() => undefined);
      await this.standby();
    })();
  }

  private async publish(event: HeraldEvent): Promise<void> {
    const ingest = this.path?.ingest;
    if (!ingest) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'this hub is a standby or stopping: it does not publish');
    // A REST or gRPC publisher learns of a schema violation in its answer; ingest checks again (AMQP publishers).
    this.catalog?.checkPublish([event]);
    await ingest.publish(event);
  }

  /**
   * The direct path (gRPC PublishStream): the catalog's publish check per event, then the events
   * that pass go straight into the log (Ingest.append), answered once committed. The caller's
   * permission to publish as each sender was checked by the gRPC server; `userId` names the
   * producer for the catalog.
   */
  private async appendDirect(events: readonly HeraldEvent[], userId: string | undefined): Promise<DirectOutcome[]> {
    const ingest = this.path?.ingest;
    if (!ingest) throw new HeraldError(ErrorCodes.UNAVAILABLE, 'this hub is a standby or stopping: it does not publish');
    const out: (DirectOutcome | undefined)[] = events.map((event) => {
      try {
        this.catalog?.checkPublish([event]);
        return undefined;
      } catch (err) {
        if (err instanceof HeraldError) return { error: err };
        throw err;
      }
    });
    const passed = events.filter((_, i) => out[i] === undefined);
    const results = passed.length > 0 ? await ingest.append(passed, userId) : [];
    let next = 0;
    return out.map((o) => o ?? (results[next++] as DirectOutcome));
  }

  /** What the metrics' gauges read: the parts of this hub as they are at each scrape. */
  private metricSources(store: Store): MetricsSources {
    let storeUp = true;
    return {
      headOffset: () => this.path?.ingest.headOffset(),
      subscriptions: () => this.subs?.list(),
      standbys: (name) => this.subs?.standbysOf(name) ?? 0,
      receivers: () => this.subs?.receiverDepths(),
      dispatcher: () => this.path?.dispatcher?.stats(),
      amqpConnected: () => (this.path?.ingest.isConnected() && this.path.flow.isConnected()) ?? false,
      storeConnected: () => {
        // The last ping's answer, asking again for the next scrape: a scrape never waits on the store.
        store.ping().then(
          () => (storeUp = true),
          () => (storeUp = false),
        );
        return storeUp;
      },
    };
  }

  /** Readiness by component for /readyz. */
  private readiness(): Readiness {
    return {
      hub: this.current === 'running' ? true : this.current,
      ingest: this.path?.ingest.isReady() ? true : 'not consuming: RabbitMQ disconnected, the store failing, or standby',
    };
  }

  private async startHttp(store: Store): Promise<void> {
    const access = this.access as AccessControl;
    const app = await createApi({
      store,
      config: this.config,
      auth: access.auth,
      users: access.users,
      catalog: this.catalog,
      publish: (event: HeraldEvent) => this.publish(event),
      // Router mode: pauses and replays, answered by this hub's dispatcher while it holds the lease.
      extraRoutes: (app: FastifyInstance) => {
        if (this.metrics) metricsRoutes(app, { metrics: this.metrics, maxStreams: this.config.maxSseStreams });
        exchangesRoutes(app, this.exchanges as Exchanges);
        dashboardRoutes(app);
        deadLettersRoutes(app, this.deadLetters as DeadLetters);
        const routes = { dispatcher: () => this.path?.dispatcher, mode: this.config.mode };
        pausesRoutes(app, routes);
        replaysRoutes(app, { ...routes, subscriptions: () => this.subs, store, maxReplays: this.config.maxReplays });
        subscriptionsRoutes(app, {
          manager: () => this.subs,
          mode: this.config.mode,
          maxSseStreams: this.config.maxSseStreams,
          maxLongPolls: this.config.maxLongPolls,
        });
      },
      ready: () => this.readiness(),
      // Request lines would drown the ingest logs: warnings and errors only.
      logger: this.logger.child({ part: 'http' }, { level: 'warn' }),
    });
    this.http = app;
    try {
      await app.listen({ port: this.config.httpPort, host: this.config.httpHost });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new HeraldError(
        ErrorCodes.UNAVAILABLE,
        `cannot listen on ${this.config.httpHost}:${this.config.httpPort} (${String(code ?? errText(err))}): choose another HERALD_HTTP_PORT`,
        { cause: err },
      );
    }
  }

  private async startGrpc(): Promise<void> {
    const grpc = createGrpcServer({
      host: this.config.httpHost,
      port: this.config.grpcPort,
      manager: () => this.subs,
      publish: (event: HeraldEvent) => this.publish(event),
      append: (events, userId) => this.appendDirect(events, userId),
      logger: this.logger.child({ part: 'grpc' }),
      maxEventBytes: this.config.maxEventBytes,
      maxStreams: this.config.maxGrpcStreams,
      publishBudget: { maxBytes: this.config.publishMaxBytes, maxEvents: this.config.publishMaxEvents },
      auth: (this.access as AccessControl).auth,
    });
    this.grpc = grpc;
    const { port } = await grpc.start();
    this.grpcPort = port;
  }
}
