import {
  bindingKeys,
  type ErrorCode,
  ErrorCodes,
  EVENTS_EXCHANGE,
  exactBindingKeys,
  HeraldError,
  parseSelector,
  preview,
  type Selector,
  ValidationError,
} from '@herald/core';
import { type Channel, connect } from 'amqplib';
import type { Logger } from 'pino';
import { declareShared } from '../ingest/topology.ts';
import type { ExchangeRecord, ExchangeStore } from '../store/index.ts';

/** Exchange names: what RabbitMQ takes, without Herald's own prefixes and RabbitMQ's `amq.`. */
const NAME_RE = /^[A-Za-z0-9_.-]{1,200}$/;
const RESERVED = ['herald.', 'herald-', 'amq.'];
/** Exchanges a hub keeps: enough for any deployment, bounded for RabbitMQ. */
export const MAX_EXCHANGES = 1000;

function invalid(parameter: string, message: string, code: ErrorCode = ErrorCodes.INVALID_REQUEST): ValidationError {
  return new ValidationError(code, message, { details: { parameter } });
}

/** Throws INVALID_REQUEST naming `name` unless it is a name an exchange of a client may have. */
export function assertExchangeName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME_RE.test(name))
    throw invalid('name', `invalid exchange name ${preview(name)}: expected 1-200 characters of A-Z a-z 0-9 _ . -`);
  const reserved = RESERVED.find((p) => name.toLowerCase().startsWith(p));
  if (reserved !== undefined) throw invalid('name', `exchange names starting with ${reserved} are reserved (Herald's own, RabbitMQ's)`);
}

/**
 * A selector an exchange can deliver exactly: its binding keys must be its patterns' own. A type
 * with two `#`, or more than four segments after its `#`, is bound by a shorter key that routes a
 * superset (RabbitMQ's cost, see core's bindingKeys), and an exchange has no consumer to filter.
 */
function exactSelector(input: unknown): Selector {
  if (typeof input !== 'string' && !(Array.isArray(input) && input.every((p) => typeof p === 'string')))
    throw invalid('selector', 'selector must be a string or an array of sender:type patterns', ErrorCodes.INVALID_SELECTOR);
  let selector: Selector;
  try {
    selector = parseSelector(input as string | string[]);
  } catch (err) {
    throw new ValidationError(ErrorCodes.INVALID_SELECTOR, (err as Error).message, { cause: err, details: { parameter: 'selector' } });
  }
  const keys = bindingKeys(selector);
  const exact = exactBindingKeys(selector);
  if (keys.join('\n') !== exact.join('\n')) {
    const wide = exact.filter((k) => !keys.includes(k));
    throw invalid(
      'selector',
      `an exchange delivers exactly its selector, and ${wide.join(', ')} cannot be bound exactly (a type with two #, or more than four segments after its #): subscribe through the hub instead`,
      ErrorCodes.INVALID_SELECTOR,
    );
  }
  return selector;
}

/**
 * Exchanges for clients that bind their own queues (seed 001): each a durable topic exchange bound
 * to `herald.events` with a selector's binding keys, so a queue bound to it (with `#`, or narrower
 * keys) receives that selector's events and no other. Kept in the store and declared again at start
 * (restore), so deleting one in RabbitMQ by hand is repaired by a restart.
 *
 * Each operation opens a short connection of its own: exchanges change rarely, and nothing is held
 * open for them.
 */
export class Exchanges {
  constructor(
    private readonly store: ExchangeStore,
    private readonly amqpUrl: string,
    private readonly log: Logger,
  ) {}

  /**
   * Creates it (201: `created`), or returns the one of that name and selector (200). CONFLICT when
   * the name has another selector, or an exchange of that name exists in RabbitMQ that Herald did
   * not make; LIMIT_EXCEEDED past MAX_EXCHANGES.
   */
  async create(name: unknown, selectorInput: unknown): Promise<{ exchange: ExchangeRecord; created: boolean }> {
    assertExchangeName(name);
    const selector = exactSelector(selectorInput);
    const existing = await this.store.get(name);
    if (existing) return { exchange: await this.same(existing, selector), created: false };
    if (await this.inRabbit(name))
      throw new HeraldError(ErrorCodes.CONFLICT, `an exchange ${name} exists in RabbitMQ and was not made by Herald: choose another name`, {
        details: { name },
      });
    if ((await this.store.count()) >= MAX_EXCHANGES)
      throw new HeraldError(ErrorCodes.LIMIT_EXCEEDED, `this hub keeps ${MAX_EXCHANGES} exchanges, the most it may: delete one`);
    const record: ExchangeRecord = { name, selector, createdAt: Date.now() };
    const raced = await this.store.insert(record);
    if (raced) return { exchange: await this.same(raced, selector), created: false };
    try {
      await this.onChannel((ch) => declare(ch, record));
    } catch (err) {
      // No record of an exchange that is not there.
      await this.store.delete(name).catch(() => undefined);
      throw unavailable(`could not declare exchange ${name}`, err);
    }
    this.log.info({ exchange: name, selector: selector.canonical }, 'exchange created');
    return { exchange: record, created: true };
  }

  /** The existing record when its selector is the one asked for (declared again, in case it went); CONFLICT otherwise. */
  private async same(existing: ExchangeRecord, selector: Selector): Promise<ExchangeRecord> {
    if (existing.selector.canonical !== selector.canonical)
      throw new HeraldError(ErrorCodes.CONFLICT, `exchange ${existing.name} exists with selector ${existing.selector.canonical}`, {
        details: { name: existing.name, selector: existing.selector.canonical },
      });
    await this.onChannel((ch) => declare(ch, existing)).catch((err: unknown) => {
      throw unavailable(`could not declare exchange ${existing.name}`, err);
    });
    return existing;
  }

  list(): Promise<ExchangeRecord[]> {
    return this.store.list();
  }

  async get(name: string): Promise<ExchangeRecord> {
    const record = await this.store.get(name);
    if (!record) throw new HeraldError(ErrorCodes.NOT_FOUND, `no exchange ${preview(name)}`, { details: { name } });
    return record;
  }

  /** Deletes it from RabbitMQ (queues bound to it stay, and receive nothing more), then from the store. */
  async delete(name: string): Promise<void> {
    await this.get(name);
    await this.onChannel((ch) => ch.deleteExchange(name)).catch((err: unknown) => {
      throw unavailable(`could not delete exchange ${name}`, err);
    });
    await this.store.delete(name);
    this.log.info({ exchange: name }, 'exchange deleted');
  }

  /** Declares every exchange of the store again (at start). One that fails is logged, the rest go on. */
  async restore(): Promise<void> {
    const records = await this.store.list();
    if (records.length === 0) return;
    let failed = 0;
    const conn = await connect(this.amqpUrl, { noDelay: true });
    conn.on('error', () => undefined);
    try {
      let ch: Channel | undefined;
      for (const r of records) {
        try {
          if (!ch) {
            ch = await conn.createChannel();
            ch.on('error', () => undefined);
            await declareShared(ch);
          }
          await declare(ch, r, false);
        } catch (err) {
          // RabbitMQ closed the channel: the next exchange gets another.
          ch = undefined;
          failed++;
          this.log.error({ exchange: r.name, err: String(err) }, 'could not declare an exchange again');
        }
      }
    } finally {
      await conn.close().catch(() => undefined);
    }
    this.log.info({ exchanges: records.length - failed }, 'exchanges declared');
  }

  private async inRabbit(name: string): Promise<boolean> {
    // checkExchange closes the channel when the exchange is absent: that is the answer.
    return this.onChannel((ch) => ch.checkExchange(name)).then(
      () => true,
      (err: unknown) => {
        if ((err as { code?: unknown }).code === 404) return false;
        throw unavailable(`could not look for exchange ${name} in RabbitMQ`, err);
      },
    );
  }

  private async onChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    const conn = await connect(this.amqpUrl, { noDelay: true });
    conn.on('error', () => undefined);
    try {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      return await fn(ch);
    } finally {
      await conn.close().catch(() => undefined);
    }
  }
}

/** The exchange, bound to herald.events with exactly the selector's keys (idempotent). */
async function declare(ch: Channel, r: ExchangeRecord, shared = true): Promise<void> {
  if (shared) await declareShared(ch);
  await ch.assertExchange(r.name, 'topic', { durable: true });
  for (const key of bindingKeys(r.selector)) await ch.bindExchange(r.name, EVENTS_EXCHANGE, key);
}

function unavailable(what: string, err: unknown): HeraldError {
  if (err instanceof HeraldError) return err;
  return new HeraldError(ErrorCodes.UNAVAILABLE, `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
