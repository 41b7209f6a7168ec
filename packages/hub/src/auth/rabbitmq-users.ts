import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCodes, EVENTS_EXCHANGE, HeraldError, redactUrl } from '@herald/core';
import {
  type AmqpPermissions,
  amqpPermissionsOf,
  amqpUsernameOf,
  NOTHING,
  subscriberQueuePattern,
  type TopicPermission,
} from './amqp-permissions.ts';
import type { Role } from './types.ts';

export {
  AMQP_USER_PREFIX,
  type AmqpPermissions,
  amqpPermissionsOf,
  amqpUsernameOf,
  createSenderCheck,
  narrowerKeys,
  subscriberQueuePattern,
  type TopicPermission,
  vhostOfAmqpUrl,
} from './amqp-permissions.ts';

/** What a Herald user logs in to RabbitMQ with. The password exists only in the answer of create(). */
export interface AmqpCredentials {
  readonly username: string;
  readonly password: string;
}

/**
 * The RabbitMQ users the hub makes for Herald users (DESIGN.md §8), through RabbitMQ's management
 * HTTP API (HERALD_RABBITMQ_API). One RabbitMQ user per Herald user, named usernameOf(name), with no
 * tag (no management access) and permissions on one vhost only (amqpPermissionsOf says which).
 *
 * Failure, for every method: a HeraldError, its message one line naming the API by its URL with the
 * password redacted: UNAVAILABLE when the API cannot be reached, does not answer within the timeout
 * or answers 5xx (the caller may retry: every method is idempotent); INVALID_CONFIG when it refuses
 * the credentials of HERALD_RABBITMQ_API (401, 403) or the vhost does not exist; INVALID_SENDER or
 * INVALID_REQUEST for a sender or a user name that breaks its rule (nothing is sent then). A
 * password never appears in an error or a log line.
 */
export interface RabbitUsers {
  /**
   * Creates the RabbitMQ user for a Herald user, or replaces the password and permissions of the one
   * that exists, and resolves with its new credentials (the password: 24 random bytes, base64url).
   * Connections made with an earlier password are closed. The user can connect only once its
   * permissions are set, and the permissions are set restriction first, so it never holds more than
   * its roles allow.
   */
  create(name: string, roles: readonly Role[]): Promise<AmqpCredentials>;
  /**
   * Sets the permissions of an existing RabbitMQ user to what `roles` allow, keeping its password.
   * When they change, its open connections are closed: RabbitMQ caches what a channel was allowed
   * for as long as the channel lives, so only a new channel is held to the new permissions (the SDK
   * reconnects by itself, with the same password). Unchanged permissions leave everything as it is.
   * Restrictions are applied before what they restrict: at no moment may the user publish as a
   * sender that neither the old nor the new roles allow. Rejects with NOT_FOUND when the user does
   * not exist.
   */
  update(name: string, roles: readonly Role[]): Promise<void>;
  /**
   * Deletes the RabbitMQ user (so it can no longer log in) and then closes its open connections;
   * resolves as well when it does not exist.
   */
  remove(name: string): Promise<void>;
  /**
   * Checks the API once: it answers, the credentials are an administrator's and the vhost exists.
   * For the hub's start, so that a wrong HERALD_RABBITMQ_API is one clear line then rather than a
   * failure when the first user is created.
   */
  check(): Promise<void>;
  /** The RabbitMQ username of a Herald user: `herald-<name>`. */
  usernameOf(name: string): string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** How often closing a user's connections is tried when RabbitMQ answers 500. */
const CLOSE_ATTEMPTS = 5;

/** Options of createRabbitUsers. */
export interface RabbitUsersOptions {
  /** The vhost the users get permissions on: the path of the hub's AMQP URL (vhostOfAmqpUrl). */
  vhost: string;
  /** The fetch to use. Default: the global fetch. For tests. */
  fetch?: typeof fetch | undefined;
  /** How long one request may take before it fails with UNAVAILABLE. Default 10 000 ms. */
  timeoutMs?: number | undefined;
}

/**
 * Connects the hub to RabbitMQ's management API at `apiUrl` (`http://admin:secret@host:15672`, an
 * administrator's credentials in it; a path prefix is kept). Throws INVALID_CONFIG at once for a URL
 * that is not http(s) or has no credentials; nothing is sent before the first call.
 */
export function createRabbitUsers(apiUrl: string, options: RabbitUsersOptions): RabbitUsers {
  return new ManagementClient(apiUrl, options);
}

/** One request's answer: the status and, for JSON answers, the body. */
interface Answer {
  readonly status: number;
  readonly body: unknown;
}

class ManagementClient implements RabbitUsers {
  private readonly base: URL;
  /** The URL as errors show it: the password redacted. */
  private readonly shown: string;
  private readonly authorization: string;
  private readonly vhost: string;
  private readonly fetch: typeof fetch;
  private readonly timeoutMs: number;

  constructor(apiUrl: string, options: RabbitUsersOptions) {
    const shown = redactUrl(apiUrl);
    let u: URL;
    try {
      u = new URL(apiUrl);
    } catch (err) {
      throw new HeraldError(ErrorCodes.INVALID_CONFIG, `invalid RabbitMQ management API URL ${shown}`, { cause: err });
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new HeraldError(ErrorCodes.INVALID_CONFIG, `invalid RabbitMQ management API URL ${shown}: expected http:// or https://`);
    if (u.username === '' || u.password === '')
      throw new HeraldError(
        ErrorCodes.INVALID_CONFIG,
        `RabbitMQ management API URL ${shown} has no credentials: expected http://<admin>:<password>@host:15672`,
      );
    if (typeof options.vhost !== 'string' || options.vhost === '')
      throw new HeraldError(ErrorCodes.INVALID_CONFIG, 'the RabbitMQ vhost for Herald users must be a non-empty string');
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0)
      throw new HeraldError(ErrorCodes.INVALID_CONFIG, `timeoutMs must be a positive integer of milliseconds, got ${String(timeoutMs)}`);
    const user = decodeURIComponent(u.username);
    const password = decodeURIComponent(u.password);
    this.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    if (!u.pathname.endsWith('/')) u.pathname = `${u.pathname}/`;
    this.base = u;
    this.shown = shown;
    this.vhost = options.vhost;
    this.fetch = options.fetch ?? fetch;
    this.timeoutMs = timeoutMs;
  }

  usernameOf(name: string): string {
    return amqpUsernameOf(name);
  }

  async create(name: string, roles: readonly Role[]): Promise<AmqpCredentials> {
    const username = amqpUsernameOf(name);
    const permissions = amqpPermissionsOf(name, roles);
    const password = randomBytes(24).toString('base64url');
    // First, so that a wrong vhost leaves no user behind.
    await this.requireVhost();
    await this.call('PUT', ['users', username], { password, tags: '' });
    await this.setPermissions(username, permissions);
    // Replacing an existing user: what logged in with its old password goes, and bindings it may no longer make.
    await this.closeConnections(username);
    await this.dropBindings(name, permissions);
    return { username, password };
  }

  async update(name: string, roles: readonly Role[]): Promise<void> {
    const username = amqpUsernameOf(name);
    const permissions = amqpPermissionsOf(name, roles);
    const found = await this.call('GET', ['users', username], undefined, [404]);
    if (found.status === 404)
      throw new HeraldError(ErrorCodes.NOT_FOUND, `RabbitMQ user ${username} does not exist at ${this.shown}`, { details: { username } });
    if (samePermissions(await this.currentPermissions(username), permissions)) return;
    await this.setPermissions(username, permissions);
    await this.closeConnections(username);
    await this.dropBindings(name, permissions);
  }

  /**
   * Deletes the bindings from `herald.events` to the user's queues that its permissions no longer
   * allow: a binding outlives the permission it was made with, so a durable queue bound with `#`
   * would keep filling after the user's selectors narrowed, and the user may still consume it.
   */
  private async dropBindings(name: string, p: AmqpPermissions): Promise<void> {
    const queue = new RegExp(`^${subscriberQueuePattern(name)}$`);
    const allowed = new RegExp(p.topics.find((t) => t.exchange === EVENTS_EXCHANGE)?.read ?? NOTHING);
    const answer = await this.call('GET', ['exchanges', this.vhost, EVENTS_EXCHANGE, 'bindings', 'source'], undefined, [404]);
    const bindings = Array.isArray(answer.body)
      ? (answer.body as { destination?: unknown; destination_type?: unknown; routing_key?: unknown; properties_key?: unknown }[])
      : [];
    for (const b of bindings) {
      const destination = String(b.destination);
      if (b.destination_type !== 'queue' || !queue.test(destination) || allowed.test(String(b.routing_key))) continue;
      await this.call(
        'DELETE',
        ['bindings', this.vhost, 'e', EVENTS_EXCHANGE, 'q', destination, String(b.properties_key)],
        undefined,
        [404],
      );
    }
  }

  /** What `username` holds on the vhost now: undefined parts where it holds nothing. */
  private async currentPermissions(username: string): Promise<Partial<AmqpPermissions>> {
    const vhost = await this.call('GET', ['permissions', this.vhost, username], undefined, [404]);
    const topics = await this.call('GET', ['topic-permissions', this.vhost, username], undefined, [404]);
    const p = (vhost.status === 404 ? {} : vhost.body) as { configure?: unknown; write?: unknown; read?: unknown };
    const list = Array.isArray(topics.body) ? (topics.body as { exchange?: unknown; write?: unknown; read?: unknown }[]) : [];
    return {
      configure: typeof p.configure === 'string' ? p.configure : undefined,
      write: typeof p.write === 'string' ? p.write : undefined,
      read: typeof p.read === 'string' ? p.read : undefined,
      topics: list.map((t) => ({ exchange: String(t.exchange), write: String(t.write), read: String(t.read) })),
    };
  }

  async remove(name: string): Promise<void> {
    const username = amqpUsernameOf(name);
    await this.call('DELETE', ['users', username], undefined, [404]);
    await this.closeConnections(username);
  }

  async check(): Promise<void> {
    const me = await this.call('GET', ['whoami']);
    const tags = (me.body as { tags?: unknown } | undefined)?.tags;
    const list = Array.isArray(tags) ? tags.map(String) : String(tags ?? '').split(',');
    if (!list.includes('administrator'))
      throw new HeraldError(
        ErrorCodes.INVALID_CONFIG,
        `the user of the RabbitMQ management API at ${this.shown} is not an administrator: it cannot manage users`,
      );
    await this.requireVhost();
  }

  private async requireVhost(): Promise<void> {
    const vhost = await this.call('GET', ['vhosts', this.vhost], undefined, [404]);
    if (vhost.status === 404) throw this.noVhost();
  }

  /**
   * Sets the permissions, never wider than either the old or the new ones in between: the topic
   * permissions first, each replaced in place (never deleted: without one RabbitMQ lets every
   * routing key through), then the vhost permissions they narrow.
   */
  private async setPermissions(username: string, p: AmqpPermissions): Promise<void> {
    for (const t of p.topics) await this.call('PUT', ['topic-permissions', this.vhost, username], t, [], true);
    await this.call('PUT', ['permissions', this.vhost, username], { configure: p.configure, write: p.write, read: p.read }, [], true);
  }

  /**
   * Closes every connection of `username`, by RabbitMQ's connection tracking (no lag of the stats).
   * RabbitMQ answers 500 when a connection ends while it closes them (deleting a user closes its
   * connections too): then what is left is listed, and closed again while any is.
   */
  private async closeConnections(username: string): Promise<void> {
    const path = ['connections', 'username', username];
    for (let attempt = 1; ; attempt++) {
      const closed = await this.call('DELETE', path, undefined, [404, 500]);
      if (closed.status !== 500) return;
      await sleep(50 * attempt);
      const left = await this.call('GET', path, undefined, [404]);
      if (!Array.isArray(left.body) || left.body.length === 0) return;
      if (attempt === CLOSE_ATTEMPTS)
        throw new HeraldError(
          ErrorCodes.UNAVAILABLE,
          `the RabbitMQ management API at ${this.shown} could not close the ${left.body.length} connection(s) of ${username} (500)`,
        );
    }
  }

  /** The vhost is missing (`reason`: RabbitMQ's words, when a 404 could also mean the user). */
  private noVhost(reason = ''): HeraldError {
    return new HeraldError(
      ErrorCodes.INVALID_CONFIG,
      `vhost ${JSON.stringify(this.vhost)} does not exist at the RabbitMQ management API ${this.shown}${reason}: check the path of HERALD_AMQP_URL`,
    );
  }

  /**
   * One request, bounded by the timeout. Resolves with a 2xx answer or one of `tolerated`; rejects
   * with the errors of RabbitUsers otherwise. `onVhost`: a 404 means the vhost is missing.
   */
  private async call(
    method: 'GET' | 'PUT' | 'DELETE',
    segments: readonly string[],
    body?: unknown,
    tolerated: readonly number[] = [],
    onVhost = false,
  ): Promise<Answer> {
    const path = `api/${segments.map(encodeURIComponent).join('/')}`;
    const what = `${method} /${path}`;
    let res: Response;
    try {
      res = await this.fetch(new URL(path, this.base), {
        method,
        headers: { authorization: this.authorization, 'content-type': 'application/json', accept: 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      const why =
        err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')
          ? `no answer within ${this.timeoutMs} ms`
          : causeText(err);
      // The cause is left out: it may hold the request, and the request holds the credentials.
      throw new HeraldError(ErrorCodes.UNAVAILABLE, `cannot reach the RabbitMQ management API at ${this.shown} (${what}): ${why}`);
    }
    const answer = await readAnswer(res);
    if (res.ok || tolerated.includes(res.status)) return answer;
    const reason = reasonOf(answer.body);
    if (res.status === 401 || res.status === 403)
      throw new HeraldError(
        ErrorCodes.INVALID_CONFIG,
        `the RabbitMQ management API at ${this.shown} refused its credentials (${res.status}${reason}): set HERALD_RABBITMQ_API to an administrator's user and password`,
      );
    // RabbitMQ 3.10 answers a permission for a missing vhost (or user) with 400 vhost_or_user_not_found.
    if (onVhost && (res.status === 404 || /vhost_or_user_not_found/.test(reason))) throw this.noVhost(reason);
    if (res.status >= 500)
      throw new HeraldError(
        ErrorCodes.UNAVAILABLE,
        `the RabbitMQ management API at ${this.shown} answered ${res.status} to ${what}${reason}`,
      );
    throw new HeraldError(
      ErrorCodes.INVALID_REQUEST,
      `the RabbitMQ management API at ${this.shown} refused ${what} (${res.status}${reason})`,
      {
        details: { status: res.status },
      },
    );
  }
}

function samePermissions(a: Partial<AmqpPermissions>, b: AmqpPermissions): boolean {
  const topics = (list: readonly TopicPermission[] | undefined) =>
    JSON.stringify((list ?? []).map((t) => [t.exchange, t.write, t.read]).sort());
  return a.configure === b.configure && a.write === b.write && a.read === b.read && topics(a.topics) === topics(b.topics);
}

/** The body of an answer: parsed JSON, or undefined (an empty or non-JSON body). Never rejects. */
async function readAnswer(res: Response): Promise<Answer> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // a body cut off: the status says enough
  }
  if (text === '') return { status: res.status, body: undefined };
  try {
    return { status: res.status, body: JSON.parse(text) as unknown };
  } catch {
    return { status: res.status, body: undefined };
  }
}

/** RabbitMQ's `reason` of an error answer as `: <reason>`, one line, at most 200 characters. */
function reasonOf(body: unknown): string {
  const reason = (body as { reason?: unknown } | undefined)?.reason;
  if (typeof reason !== 'string' || reason === '') return '';
  return `: ${reason.replace(/\s+/g, ' ').slice(0, 200)}`;
}

/** Why a fetch failed, one line: undici puts the socket error in `cause`. */
function causeText(err: unknown): string {
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const inner = cause instanceof Error ? ((cause as { code?: unknown }).code ?? cause.message) : undefined;
  const outer = err instanceof Error ? err.message : String(err);
  return (inner === undefined ? outer : `${outer} (${String(inner)})`).replace(/\s+/g, ' ');
}
