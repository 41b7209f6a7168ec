import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { compileMatcher, ErrorCodes, HeraldError, matches, parseSelector, preview, type Selector, type SelectorInput } from '@herald/core';
import type { Logger } from 'pino';
import type { UserStore } from '../store/index.ts';
import { uncovered } from './scope.ts';
import type { Principal, Role, User } from './types.ts';

/** `HERALD_AUTH`: `auto` (off on a loopback address, required elsewhere), `required`, `off`. */
export const AUTH_MODES = ['auto', 'required', 'off'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

/** REST publishes per second per token unless configured: far above a service's REST use, far below a flood's. */
export const DEFAULT_PUBLISH_RATE_PER_TOKEN = 1000;

/** API tokens are `hrd_` and 32 random bytes in base64url: 47 characters. */
export const TOKEN_PREFIX = 'hrd_';

/** A new token's secret: shown once, in the answer that creates it. */
export function newTokenSecret(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** What the store keeps of a secret. Tokens carry 256 random bits, so a fast hash is enough: nobody can guess one to test. */
export function secretHash(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** True for 127.0.0.0/8, ::1 and `localhost`: a hub listening only there is reached only from its machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/** Whether authentication is on for a hub listening on `host`; throws INVALID_CONFIG for a combination that must not start. */
export function authEnabled(mode: AuthMode, host: string): boolean {
  if (mode === 'required') return true;
  if (mode === 'auto') return !isLoopbackHost(host);
  if (!isLoopbackHost(host)) {
    throw new HeraldError(
      ErrorCodes.INVALID_CONFIG,
      `refusing to listen on ${host} with authentication off (HERALD_AUTH=off): anyone who reaches it could read and publish everything; ` +
        'set HERALD_AUTH=auto or required (and HERALD_ADMIN_TOKEN to create the first users), or listen on 127.0.0.1',
      { details: { setting: 'HERALD_AUTH' } },
    );
  }
  return false;
}

export interface AuthOptions {
  /** Authentication on (tokens required) or off (every request is `anonymous`, allowed everything). */
  readonly enabled: boolean;
  /** The users and tokens; needed when enabled (without it, no token but the admin token authenticates). */
  readonly users?: UserStore | undefined;
  /** HERALD_ADMIN_TOKEN: accepted as an admin that is not a user of the store. */
  readonly adminToken?: string | undefined;
  /** Failed authentications a client address may make per minute before it gets 429 (HERALD_AUTH_FAILURES_PER_MINUTE). Default 30. */
  readonly failuresPerMinute?: number | undefined;
  /** REST publishes per second a token may make, in a burst of as many (HERALD_PUBLISH_RATE_PER_TOKEN); 0 = no limit. Default 1,000. */
  readonly publishRatePerToken?: number | undefined;
  readonly log?: Logger | undefined;
  /** The clock, for tests. */
  readonly now?: () => number;
}

/** A token bucket per key, the keys bounded: past `maxKeys` the oldest are dropped (a flood of addresses costs memory once). */
class Buckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes one; returns 0 when it could, else the seconds until one is there. */
  take(key: string): number {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens < 1) return (1 - b.tokens) / this.perSecond;
    b.tokens -= 1;
    return 0;
  }
}

/**
 * The key a client address is limited under: an IPv4 address itself, an IPv6 address by its /64
 * (one host usually holds a whole /64, so per address it could try without limit).
 */
export function clientKey(address: string): string {
  const a = address
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/%.*$/, '');
  if (!a.includes(':')) return a;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  if (mapped) return mapped[1]!;
  const [head = '', tail] = a.split('::', 2);
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

type UserPrincipal = Extract<Principal, { kind: 'user' }>;

/** An open stream (SSE, gRPC Subscribe) kept to the rules while it lasts. */
interface Watched {
  principal: UserPrincipal;
  readonly recheck: (p: Principal) => Promise<void> | void;
  readonly end: (err: HeraldError) => void;
}

/** Roles compared by what they allow (selectors by their canonical form). */
function sameRoles(a: readonly Role[], b: readonly Role[]): boolean {
  const text = (roles: readonly Role[]) => JSON.stringify(roles.map((r) => (r.role === 'subscriber' ? r.selector.canonical : r)));
  return text(a) === text(b);
}

function principalName(p: Principal): string {
  return p.kind === 'user' ? `user ${p.user.name}` : p.kind === 'bootstrap' ? 'HERALD_ADMIN_TOKEN' : 'anonymous';
}

function forbidden(p: Principal, what: string, details: Record<string, unknown> = {}): HeraldError {
  return new HeraldError(ErrorCodes.FORBIDDEN, `${principalName(p)} may not ${what}`, { details });
}

/**
 * Authentication and the rules of DESIGN.md §8, in one place: every REST route and gRPC method
 * asks it who the caller is (`authenticate`), then whether the caller may do what it asks
 * (`assert*`, throwing FORBIDDEN). Tokens are looked up by their hash on every request, so a
 * revoked token fails on the next one.
 */
export class Auth {
  readonly enabled: boolean;
  private readonly users: UserStore | undefined;
  private readonly adminHash: Buffer | undefined;
  private readonly failures: Buckets;
  private readonly publishes: Buckets | undefined;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  /** The open streams of users, checked again when users change (recheckStreams). */
  private readonly streams = new Set<Watched>();
  /** When each token's last_used_at was last written: at most once a minute per token. */
  private readonly touched = new Map<string, number>();

  constructor(o: AuthOptions) {
    this.enabled = o.enabled;
    this.users = o.users;
    this.adminHash = o.adminToken === undefined ? undefined : secretHash(o.adminToken);
    this.now = o.now ?? Date.now;
    const perMinute = o.failuresPerMinute ?? 30;
    this.failures = new Buckets(perMinute / 60, perMinute, this.now);
    const rate = o.publishRatePerToken ?? DEFAULT_PUBLISH_RATE_PER_TOKEN;
    this.publishes = rate > 0 ? new Buckets(rate, rate, this.now) : undefined;
    this.log = o.log;
  }

  /**
   * Who sent a request with this `Authorization` value (`Bearer <token>`) from this client address.
   * Off: always anonymous. On: UNAUTHENTICATED without valid credentials, LIMIT_EXCEEDED (with
   * `retryAfterSeconds`) instead once the address (an IPv6 one by its /64) failed too often in the
   * last minute.
   */
  async authenticate(authorization: string | undefined, client: string): Promise<Principal> {
    if (!this.enabled) return { kind: 'anonymous' };
    // Valid credentials always pass, so an address that others behind the same NAT flood is not
    // locked out; only failures count against it.
    const secret = bearer(authorization);
    if (secret === undefined) return this.fail(client, authorization === undefined ? 'no credentials' : 'not a Bearer token');
    const hash = secretHash(secret);
    if (this.adminHash !== undefined && timingSafeEqual(hash, this.adminHash)) return { kind: 'bootstrap' };
    const found = secret.startsWith(TOKEN_PREFIX) && this.users ? await this.users.byHash(hash) : undefined;
    if (found === undefined) return this.fail(client, 'unknown or revoked token');
    this.touch(found.token.id);
    return { kind: 'user', user: found.user, tokenId: found.token.id };
  }

  /** Counts a failure against the client's address: UNAUTHENTICATED, or LIMIT_EXCEEDED past the limit. */
  private fail(client: string, why: string): never {
    const wait = this.failures.take(clientKey(client));
    this.log?.info({ client, why }, 'authentication failed');
    if (wait > 0) throw this.tooManyFailures(wait);
    throw new HeraldError(
      ErrorCodes.UNAUTHENTICATED,
      `authentication required: ${why}; send Authorization: Bearer <token> (herald tokens create, or HERALD_ADMIN_TOKEN)`,
    );
  }

  private tooManyFailures(wait: number): HeraldError {
    return new HeraldError(ErrorCodes.LIMIT_EXCEEDED, 'too many failed authentications from this address: try again later', {
      details: { retryAfterSeconds: Math.ceil(wait) },
    });
  }

  private touch(id: string): void {
    const now = this.now();
    if (now - (this.touched.get(id) ?? 0) < 60_000) return;
    if (this.touched.size >= 10_000) this.touched.clear();
    this.touched.set(id, now);
    this.users?.touch([id]).catch((err: unknown) => this.log?.warn({ err }, 'could not record the last use of a token'));
  }

  isAdmin(p: Principal): boolean {
    return p.kind !== 'user' || p.user.roles.some((r) => r.role === 'admin');
  }

  /** Users, pauses, replays and the other administration need `admin`. */
  assertAdmin(p: Principal, what: string): void {
    if (!this.isAdmin(p)) throw forbidden(p, what, { needs: 'admin' });
  }

  /** Any publisher role (or admin): the check a route makes before it reads the body. */
  assertSomePublisher(p: Principal): void {
    if (!this.isAdmin(p) && !userOf(p).roles.some((r) => r.role === 'publisher'))
      throw forbidden(p, 'publish: it has no publisher role', { needs: 'publisher' });
  }

  /** Any subscriber role (or admin). */
  assertSomeSubscriber(p: Principal): void {
    if (!this.isAdmin(p) && !userOf(p).roles.some((r) => r.role === 'subscriber'))
      throw forbidden(p, 'read events: it has no subscriber role', { needs: 'subscriber' });
  }

  /** Publishing as `sender` needs a publisher role with it; a REST publish also takes from the token's rate. */
  assertPublish(p: Principal, sender: string, rest = false): void {
    if (!this.isAdmin(p) && !userOf(p).roles.some((r) => r.role === 'publisher' && r.senders.includes(sender)))
      throw forbidden(p, `publish as sender ${preview(sender)}`, { needs: 'publisher' });
    if (rest && this.publishes !== undefined && p.kind === 'user') {
      const wait = this.publishes.take(p.tokenId);
      if (wait > 0)
        throw new HeraldError(ErrorCodes.LIMIT_EXCEEDED, 'this token publishes faster than HERALD_PUBLISH_RATE_PER_TOKEN allows', {
          details: { retryAfterSeconds: wait },
        });
    }
  }

  /** The selectors a principal may read; undefined for everything (admins). */
  private readable(p: Principal): Selector[] | undefined {
    if (this.isAdmin(p)) return undefined;
    return userOf(p).roles.flatMap((r) => (r.role === 'subscriber' ? [r.selector] : []));
  }

  /** Reading `selector` (undefined: every event) needs subscriber roles whose selectors cover each of its patterns: 403 names those they do not. */
  assertRead(p: Principal, selector: SelectorInput | undefined): void {
    const granted = this.readable(p);
    if (granted === undefined) return;
    const asked = parseSelector(selector ?? '*:*');
    const outside = uncovered(granted, asked);
    if (outside.length > 0) {
      const list = outside.map((o) => `${o.sender}:${o.type}`).join(', ');
      throw forbidden(p, `read ${list}: outside its subscriber selectors (${granted.map((s) => s.canonical).join(' ') || 'none'})`, {
        needs: 'subscriber',
        outside: outside.map((o) => `${o.sender}:${o.type}`),
      });
    }
  }

  /**
   * Whether one event may be read: a subscriber selector matches it. A route answers 404 when it may
   * not, as for an absent event, so its sender and type are not told.
   */
  mayReadEvent(p: Principal, sender: string, type: string): boolean {
    const granted = this.readable(p);
    return granted === undefined || granted.some((g) => matches(g, sender, type));
  }

  /**
   * Which event types a principal's roles cover, compiled once for many types (a listing):
   * undefined for all (admins); else those its subscriber selectors match or its publisher roles
   * name the sender of.
   */
  typesCovered(p: Principal): ((sender: string, type: string) => boolean) | undefined {
    const granted = this.readable(p);
    if (granted === undefined) return undefined;
    const read = granted.map((g) => compileMatcher(g));
    const senders = new Set(userOf(p).roles.flatMap((r) => (r.role === 'publisher' ? r.senders : [])));
    return (sender, type) => senders.has(sender) || read.some((m) => m(sender, type));
  }

  /**
   * Using, or deleting, the subscription `name` with `selector` (its stored one, else the one asked
   * for it): admins may; another user only when the subscription is its own, or new (it then
   * becomes its own), and its selector lies inside the user's. Ownership is decided first, so the
   * 403 for another user's subscription tells nothing of its selector. An ownerless one (created
   * while authentication was off) is for admins.
   */
  async assertSubscription(p: Principal, name: string, selector: SelectorInput, options: { create: boolean }): Promise<void> {
    const users = this.users;
    if (this.isAdmin(p)) {
      // An admin user creating one owns it (a stale claim of a subscription that is gone included),
      // so it is listed as its own; created by HERALD_ADMIN_TOKEN it has no owner. Ownership never
      // limits an admin.
      if (options.create && p.kind === 'user') await users?.assign(name, p.user.name);
      else if (options.create) await users?.disown(name);
      return;
    }
    const user = userOf(p);
    if (options.create) this.assertRead(p, selector); // the caller's own selector: nothing to leak, and nothing claimed when refused
    const owner = users === undefined ? undefined : options.create ? await users.claim(name, user.name) : await users.ownerOf(name);
    if (owner !== user.name) throw forbidden(p, `use subscription ${name}: it belongs to another user`, { subscription: name });
    if (!options.create) this.assertRead(p, selector);
  }

  /**
   * Keeps an open stream to the rules while it lasts: `end` is called with UNAUTHENTICATED once its
   * token is revoked or its user deleted, and with what `recheck` throws (FORBIDDEN) when the
   * user's roles change so that they no longer allow it. Checked by recheckStreams. Returns the
   * function that stops watching, to call when the stream ends.
   */
  watch(p: Principal, recheck: (p: Principal) => Promise<void> | void, end: (err: HeraldError) => void): () => void {
    if (p.kind !== 'user' || this.users === undefined) return () => {};
    const watched: Watched = { principal: p, recheck, end };
    this.streams.add(watched);
    return () => this.streams.delete(watched);
  }

  /** Checks every watched stream against the store, in one query for all their tokens (after a change here, and periodically for changes made through another hub). */
  async recheckStreams(): Promise<void> {
    if (this.streams.size === 0 || this.users === undefined) return;
    const open = [...this.streams];
    const owners = await this.users.byIds([...new Set(open.map((w) => w.principal.tokenId))]);
    const userOfToken = new Map(owners.map((o) => [o.token.id, o.user]));
    for (const w of open) {
      if (!this.streams.has(w)) continue;
      const user = userOfToken.get(w.principal.tokenId);
      if (user === undefined) {
        this.streams.delete(w);
        w.end(new HeraldError(ErrorCodes.UNAUTHENTICATED, 'the token of this stream was revoked, or its user deleted'));
        continue;
      }
      if (sameRoles(user.roles, w.principal.user.roles)) continue;
      const next: UserPrincipal = { ...w.principal, user };
      try {
        await w.recheck(next);
        w.principal = next;
      } catch (err) {
        this.streams.delete(w);
        w.end(err instanceof HeraldError ? err : new HeraldError(ErrorCodes.FORBIDDEN, String(err)));
      }
    }
  }

  /** The subscription names a principal may see in a list; undefined for all. */
  async visibleSubscriptions(p: Principal): Promise<Set<string> | undefined> {
    if (this.isAdmin(p)) return undefined;
    return (await this.users?.owned(userOf(p).name)) ?? new Set();
  }

  /** A deleted subscription has no owner any more. */
  async forget(name: string): Promise<void> {
    await this.users?.disown(name);
  }
}

function userOf(p: Principal): User {
  if (p.kind !== 'user') throw new TypeError(`principal ${p.kind} has no user`);
  return p.user;
}

/** The secret of `Bearer <secret>` (case-insensitive scheme), else undefined. */
function bearer(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer +([\x21-\x7e]{1,4096})\s*$/i.exec(header);
  return m?.[1];
}
