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

// What a Herald user's roles allow over AMQP, as RabbitMQ permissions (DESIGN.md §8): pure
// functions, no I/O. rabbitmq-users.ts applies them through the management API.

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
/** A permission regex that admits nothing. */
export const NOTHING = '^$';

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
