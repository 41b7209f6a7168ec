import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  assertSender,
  DEAD_EXCHANGE,
  ErrorCodes,
  EVENTS_EXCHANGE,
  exactBindingKeys,
  HeraldError,
  INGEST_EXCHANGE,
  redactUrl,
  ValidationError,
} from '@herald/core';
import type { SenderCheck } from '../ingest/index.ts';
import type { Role } from './types.ts';

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

/** Options of createRabbitUsers. */
export interface RabbitUsersOptions {
  /** The vhost the users get permissions on: the path of the hub's AMQP URL (vhostOfAmqpUrl). */
  vhost: string;
  /** The fetch to use. Default: the global fetch. For tests. */
  fetch?: typeof fetch | undefined;
  /** How long one request may take before it fails with UNAVAILABLE. Default 10 000 ms. */
  timeoutMs?: number | undefined;
}

/** A topic permission: on a topic exchange, regexes on the routing keys a user may publish with (write) and bind with (read). */
export interface TopicPermission {
  readonly exchange: string;
  readonly write: string;
  readonly read: string;
}

/** The three permissions of a RabbitMQ user on a vhost, and its topic permissions on `herald.ingest` and `herald.events`. */
export interface AmqpPermissions {
  /** Regex on the names of exchanges and queues the user may declare and delete. */
  readonly configure: string;
  /** Regex on what the user may publish to (exchanges) and bind (queues). */
  readonly write: string;
  /** Regex on what the user may consume from (queues) and bind from (exchanges). */
  readonly read: string;
  /** On `herald.ingest` (a publisher's senders) and `herald.events` (a subscriber's binding keys); empty when neither. */
  readonly topics: readonly TopicPermission[];
}

/** Every Herald-made RabbitMQ user's name starts with this. */
export const AMQP_USER_PREFIX = 'herald-';
const USER_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const NOTHING = '^$';
const DEFAULT_TIMEOUT_MS = 10_000;
/** How often closing a user's connections is tried when RabbitMQ answers 500. */
const CLOSE_ATTEMPTS = 5;

/** `text` with every regex metacharacter escaped. */
function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

function assertUserName(name: string): void {
  if (typeof name !== 'string' || !USER_NAME_RE.test(name)) {
    throw new ValidationError(
      ErrorCodes.INVALID_REQUEST,
      `invalid user name ${JSON.stringify(String(name).slice(0, 80))}: expected 1-64 characters of A-Z a-z 0-9 _ . -`,
      {
        details: { name },
      },
    );
  }
}

/** The RabbitMQ username of Herald user `name`: `herald-<name>`. Throws INVALID_REQUEST for a bad name. */
export function amqpUsernameOf(name: string): string {
  assertUserName(name);
  return `${AMQP_USER_PREFIX}${name}`;
}

/**
 * The queues a subscriber may declare, bind and consume: `herald-<name>.<rest>`, `<rest>` without a
 * dot. A user name may hold dots, so without that rule user `a` would own `herald-a.b.q`, a queue of
 * user `a.b`; with it, the part before the last dot names the one user a queue belongs to.
 */
export function subscriberQueuePattern(name: string): string {
  return `${escapeRegex(amqpUsernameOf(name))}\\.[^.]+`;
}

/**
 * A regex (without anchors) of the binding keys that deliver no more than binding key `key` (a
 * selector's: `#`, or a sender word then type words): a literal word stands for itself, `*` for a
 * literal word or `*`, `#` for any segments. So a subscriber of `billing:*` may bind `billing.#`,
 * `billing.invoice.*` or `billing.invoice.paid`, and not `#` or `*.invoice.paid`.
 */
export function narrowerKeys(key: string): string {
  if (key === '#') return '.+';
  return key
    .split('.')
    .map((w, i) => {
      if (w === '#') return '(\\.[^.]+)*';
      const word = w === '*' ? '[^.#]+' : escapeRegex(w);
      return i === 0 ? word : `\\.${word}`;
    })
    .join('');
}

/**
 * What `roles` allow over AMQP (DESIGN.md §8), as RabbitMQ permissions on the vhost:
 * - publisher of senders S: write on exchange `herald.ingest` only, with a topic permission there
 *   whose write regex admits routing keys `<s>.` for s in S only, so RabbitMQ refuses (403) any
 *   other sender; nothing to configure or read.
 * - subscriber: declare (configure), bind (write on the queue, read on `herald.events`) and consume
 *   (read) queues named `herald-<name>.<rest>` only (subscriberQueuePattern), and publish its dead
 *   letters to `herald.dead` (the SDK subscriber does). A topic permission on `herald.events` lets
 *   it bind with its selectors' binding keys and narrower ones only (narrowerKeys), so it cannot
 *   bind `#` and read everything.
 * - admin: nothing over AMQP (admins use the REST API).
 * Several roles give the union; no role gives `^$` (the user may connect and do nothing). Never
 * write on `herald.events`: only the hub publishes there. Throws INVALID_SENDER for a bad sender,
 * INVALID_REQUEST for a bad name.
 */
export function amqpPermissionsOf(name: string, roles: readonly Role[]): AmqpPermissions {
  const queue = subscriberQueuePattern(name);
  const senders = new Set<string>();
  const keys = new Set<string>();
  for (const r of roles) {
    if (r.role === 'publisher') {
      for (const s of r.senders) {
        assertSender(s);
        senders.add(s);
      }
    } else if (r.role === 'subscriber') {
      // The patterns' own keys, never bindingKeys' shorter, wider ones: with those a subscriber of
      // `*:#.a.b.c.d.e` could bind `*.#`.
      for (const k of exactBindingKeys(r.selector)) keys.add(k);
    }
  }
  const subscriber = keys.size > 0;
  const write: string[] = [];
  if (senders.size > 0) write.push(escapeRegex(INGEST_EXCHANGE));
  if (subscriber) write.push(queue, escapeRegex(DEAD_EXCHANGE));
  // Both exchanges always get one: RabbitMQ lets every routing key through an exchange the user has
  // no topic permission on, so one it is not granted is denied outright (`^$`).
  const topics: TopicPermission[] = [
    {
      exchange: INGEST_EXCHANGE,
      write: senders.size > 0 ? `^(${[...senders].sort().map(escapeRegex).join('|')})\\.` : NOTHING,
      read: NOTHING,
    },
    { exchange: EVENTS_EXCHANGE, write: NOTHING, read: subscriber ? `^(${[...keys].sort().map(narrowerKeys).join('|')})$` : NOTHING },
  ];
  return {
    configure: subscriber ? `^${queue}$` : NOTHING,
    write: write.length > 0 ? `^(${write.join('|')})$` : NOTHING,
    read: subscriber ? `^(${queue}|${escapeRegex(EVENTS_EXCHANGE)})$` : NOTHING,
    topics,
  };
}

/** How many of its senders a refusal names. */
const SENDERS_NAMED = 10;

/**
 * The ingest's user_id check (IngestOptions.senderCheck) over the hub's users. `rolesOf` answers
 * the roles of the Herald user whose RabbitMQ user is `amqpUsername` (User.amqpUsername), or
 * undefined for a RabbitMQ user the hub does not manage (guest, the hub's own user): those pass
 * unchecked. A managed user may publish as the senders of its publisher roles only. It runs for
 * every ingest message with a user_id, so `rolesOf` answers from memory (a Map).
 */
export function createSenderCheck(rolesOf: (amqpUsername: string) => readonly Role[] | undefined): SenderCheck {
  return (userId, sender) => {
    if (!userId.startsWith(AMQP_USER_PREFIX)) return undefined;
    const roles = rolesOf(userId);
    if (roles === undefined) return undefined;
    for (const r of roles) if (r.role === 'publisher' && r.senders.includes(sender)) return undefined;
    const senders = roles.flatMap((r) => (r.role === 'publisher' ? r.senders : []));
    const named = senders.slice(0, SENDERS_NAMED).join(', ') + (senders.length > SENDERS_NAMED ? ', …' : '');
    return `user_id ${userId} may not publish as sender ${sender}: ${senders.length > 0 ? `its senders are ${named}` : 'it has no publisher role'}`;
  };
}

/**
 * The vhost of an AMQP URL as amqplib reads it: its path without the leading `/`, percent-decoded;
 * `/` when the path is empty. Throws INVALID_CONFIG for a URL that does not parse.
 */
export function vhostOfAmqpUrl(amqpUrl: string): string {
  let u: URL;
  try {
    u = new URL(amqpUrl);
  } catch (err) {
    throw new HeraldError(ErrorCodes.INVALID_CONFIG, `invalid AMQP URL ${redactUrl(amqpUrl)}`, { cause: err });
  }
  const path = u.pathname.slice(1);
  return path === '' ? '/' : decodeURIComponent(path);
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
