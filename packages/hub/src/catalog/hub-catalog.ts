import type { HeraldEvent, Selector } from '@herald/core';
import type { Logger } from 'pino';
import type { SqlExecutor } from '../store/driver.ts';
import { createCatalogStore, createSubscriptionStore } from '../store/index.ts';
import { type AsyncApiServer, serverOf } from './asyncapi.ts';
import { AsyncApiCache } from './asyncapi-cache.ts';
import { Catalog } from './catalog.ts';
import { CatalogObserver, type ConsumerSource } from './observer.ts';
import { checkBeforePublish } from './publish-check.ts';
import { IngestValidation } from './validation.ts';

/** The catalog's parts in one hub: the service the routes use, and what ingest calls for each event. */
export interface HubCatalog {
  readonly catalog: Catalog;
  /** The broker the AsyncAPI document names. */
  readonly server: AsyncApiServer;
  /** The AsyncAPI documents served, built again after a change. */
  readonly asyncApi: AsyncApiCache;
  /**
   * For each event ingest parsed, before it is stored: counts it for the observed producers, then
   * throws a ValidationError (SCHEMA_VIOLATION) when its type validates and its data does not
   * match, which dead-letters the message. Synchronous; no I/O.
   */
  readonly inspect: (event: HeraldEvent, userId: unknown) => void;
  /**
   * Before the hub publishes for a REST or gRPC caller: throws a ValidationError (SCHEMA_VIOLATION)
   * when one of the events does not match its type's schema, before any is published
   * (checkBeforePublish). Synchronous; no I/O; observes nothing (ingest does, once).
   */
  readonly checkPublish: (events: readonly HeraldEvent[]) => void;
  /** Reads the validated types (a failure is logged), then polls; starts the observation flushes. */
  start(): Promise<void>;
  /** Stops polling and writes the last counts. */
  stop(): Promise<void>;
}

export interface HubCatalogOptions {
  readonly sql: SqlExecutor;
  readonly amqpUrl: string;
  readonly logger: Logger;
  /** The exchanges Herald made (their selectors make them consumers). */
  readonly exchanges: () => Promise<readonly { name: string; selector: Selector }[]>;
  /** How often another hub's catalog changes are read; default 10 s. */
  readonly pollMs?: number | undefined;
  /** How often observations are written; default 5 s. */
  readonly flushMs?: number | undefined;
}

/** Composes the catalog of one hub: store, service, ingest validation and observation. Nothing runs before start(). */
export function createHubCatalog(o: HubCatalogOptions): HubCatalog {
  const log = o.logger.child({ part: 'catalog' });
  const store = createCatalogStore(o.sql);
  const subscriptions = createSubscriptionStore(o.sql);
  const validation = new IngestValidation(store, log, o.pollMs ?? 10_000);
  const consumers = async (): Promise<ConsumerSource[]> => {
    const [subs, exchanges] = await Promise.all([subscriptions.loadAll(), o.exchanges()]);
    return [
      ...subs.subscriptions.map((s) => ({ kind: 'subscription' as const, name: s.name, selector: s.selector })),
      ...exchanges.map((e) => ({ kind: 'exchange' as const, name: e.name, selector: e.selector })),
    ];
  };
  const asyncApi = new AsyncApiCache();
  const observer = new CatalogObserver(store, consumers, log, { flushMs: o.flushMs ?? 5000, flushed: () => asyncApi.changed() });
  return {
    catalog: new Catalog(store, () => {
      asyncApi.changed();
      return validation.refresh();
    }),
    server: serverOf(o.amqpUrl),
    asyncApi,
    inspect(event, userId) {
      observer.seenEvent(event.sender, event.type, userId);
      validation.check(event);
    },
    checkPublish: (events) => checkBeforePublish((event) => validation.check(event), events),
    async start() {
      await validation.start();
      observer.start();
    },
    async stop() {
      validation.stop();
      await observer.stop();
    },
  };
}
