import { assertSender, ErrorCodes, HeraldError, isUuid, parseSelector, preview, uuidv7, ValidationError } from '@herald/core';
import type { Logger } from 'pino';
import type { UserStore } from '../store/index.ts';
import { newTokenSecret, secretHash } from './auth.ts';
import type { AmqpCredentials, RabbitUsers } from './rabbitmq-users.ts';
import type { Role, TokenInfo, User } from './types.ts';

/** User and token names: `[A-Za-z0-9_.-]{1,64}`. */
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** Roles a user may hold, and senders a publisher role may list: enough for any real user, bounded for the store. */
const MAX_ROLES = 16;
const MAX_SENDERS = 256;
/** Tokens per user. */
export const MAX_TOKENS_PER_USER = 100;

function invalid(parameter: string, message: string): ValidationError {
  return new ValidationError(ErrorCodes.INVALID_REQUEST, message, { details: { parameter } });
}

/** Throws INVALID_REQUEST naming `parameter` unless `name` is a user or token name. */
export function assertName(parameter: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME_RE.test(name))
    throw invalid(parameter, `invalid ${parameter} ${preview(name)}: expected 1-64 characters of A-Z a-z 0-9 _ . -`);
}

/**
 * Roles from their JSON form: `[{"role":"admin"} | {"role":"publisher","senders":[…]} |
 * {"role":"subscriber","selector":[…] or "a:*,b:*"}]`. Throws INVALID_REQUEST naming the field.
 */
export function parseRoles(input: unknown, parameter = 'roles'): Role[] {
  if (!Array.isArray(input) || input.length === 0 || input.length > MAX_ROLES)
    throw invalid(parameter, `${parameter} must be an array of 1 to ${MAX_ROLES} roles`);
  return input.map((raw, i): Role => {
    const at = `${parameter}[${i}]`;
    const r = raw as { role?: unknown; senders?: unknown; selector?: unknown };
    if (typeof r !== 'object' || r === null) throw invalid(at, `${at} must be an object with a role`);
    const keys = Object.keys(r);
    if (r.role === 'admin') {
      if (keys.length !== 1) throw invalid(at, `${at}: an admin role has no other field`);
      return { role: 'admin' };
    }
    if (r.role === 'publisher') {
      if (keys.some((k) => k !== 'role' && k !== 'senders')) throw invalid(at, `${at}: a publisher role has only senders`);
      const senders = r.senders;
      if (!Array.isArray(senders) || senders.length === 0 || senders.length > MAX_SENDERS)
        throw invalid(`${at}.senders`, `${at}.senders must be an array of 1 to ${MAX_SENDERS} sender names`);
      for (const s of senders) {
        try {
          assertSender(s);
        } catch (err) {
          throw new ValidationError(ErrorCodes.INVALID_REQUEST, `${at}.senders: ${(err as Error).message}`, {
            cause: err,
            details: { parameter: `${at}.senders` },
          });
        }
      }
      return { role: 'publisher', senders: [...new Set(senders as string[])].sort() };
    }
    if (r.role === 'subscriber') {
      if (keys.some((k) => k !== 'role' && k !== 'selector')) throw invalid(at, `${at}: a subscriber role has only selector`);
      // A string or an array of strings only: parseSelector takes any object with `canonical` as parsed.
      const sel = r.selector;
      if (typeof sel !== 'string' && !(Array.isArray(sel) && sel.every((p) => typeof p === 'string')))
        throw invalid(`${at}.selector`, `${at}.selector must be a string or an array of sender:type patterns`);
      try {
        return { role: 'subscriber', selector: parseSelector(r.selector as string | string[]) };
      } catch (err) {
        throw new ValidationError(ErrorCodes.INVALID_SELECTOR, `${at}.selector: ${(err as Error).message}`, {
          cause: err,
          details: { parameter: `${at}.selector` },
        });
      }
    }
    throw invalid(`${at}.role`, `${at}.role must be admin, publisher or subscriber`);
  });
}

/** Whether the roles need a RabbitMQ user (publishers and subscribers speak AMQP; admins use the API). */
function needsAmqp(roles: readonly Role[]): boolean {
  return roles.some((r) => r.role !== 'admin');
}

export interface UsersOptions {
  readonly store: UserStore;
  /** HERALD_RABBITMQ_API: RabbitMQ users for publishers and subscribers. */
  readonly rabbit?: RabbitUsers | undefined;
  readonly log?: Logger | undefined;
  /** Called after any change of users, roles or tokens (the ingest's user_id map reloads, open streams are checked again). */
  readonly onChange?: (() => void) | undefined;
}

/**
 * Users, roles and tokens: what the admin routes and the CLI do. Validation first (INVALID_*),
 * then the store (NOT_FOUND, CONFLICT), then RabbitMQ when configured. A RabbitMQ user is created
 * with the user, its permissions follow role changes, and it is deleted with the user.
 */
export class Users {
  private readonly store: UserStore;
  private readonly rabbit: RabbitUsers | undefined;
  private readonly log: Logger | undefined;
  private readonly onChange: () => void;

  constructor(o: UsersOptions) {
    this.store = o.store;
    this.rabbit = o.rabbit;
    this.log = o.log;
    this.onChange = o.onChange ?? (() => {});
  }

  /** Creates a user; CONFLICT when the name is taken. With HERALD_RABBITMQ_API, also its RabbitMQ user, whose credentials come back once. */
  async create(name: unknown, rolesInput: unknown): Promise<{ user: User; amqp: AmqpCredentials | undefined }> {
    assertName('name', name);
    const roles = parseRoles(rolesInput);
    const amqpUsername = this.rabbit && needsAmqp(roles) ? this.rabbit.usernameOf(name) : undefined;
    const user: User = { name, roles, createdAt: Date.now(), amqpUsername };
    if (!(await this.store.insert(user))) throw new HeraldError(ErrorCodes.CONFLICT, `user ${name} exists`, { details: { name } });
    let amqp: AmqpCredentials | undefined;
    if (this.rabbit && amqpUsername !== undefined) {
      try {
        amqp = await this.rabbit.create(name, roles);
      } catch (err) {
        // No half-made user: without its RabbitMQ user it could not publish as it was told it can.
        await this.store.delete(name).catch(() => undefined);
        throw err;
      }
    }
    this.log?.info({ user: name, roles: roles.map((r) => r.role) }, 'user created');
    this.onChange();
    return { user, amqp };
  }

  async get(name: string): Promise<User> {
    const user = await this.store.get(name);
    if (!user) throw new HeraldError(ErrorCodes.NOT_FOUND, `no user ${preview(name)}`, { details: { name } });
    return user;
  }

  list(): Promise<User[]> {
    return this.store.list();
  }

  /** Replaces the roles; the RabbitMQ user's permissions follow (created when the user now needs one). */
  async setRoles(name: string, rolesInput: unknown): Promise<{ user: User; amqp: AmqpCredentials | undefined }> {
    const roles = parseRoles(rolesInput);
    const before = await this.get(name);
    if (!(await this.store.setRoles(name, roles))) throw new HeraldError(ErrorCodes.NOT_FOUND, `no user ${name}`);
    let amqp: AmqpCredentials | undefined;
    let amqpUsername = before.amqpUsername;
    if (this.rabbit) {
      if (before.amqpUsername !== undefined && needsAmqp(roles)) await this.rabbit.update(name, roles);
      else if (before.amqpUsername !== undefined) {
        await this.rabbit.remove(name);
        amqpUsername = undefined;
      } else if (needsAmqp(roles)) {
        amqp = await this.rabbit.create(name, roles);
        amqpUsername = this.rabbit.usernameOf(name);
      }
      if (amqpUsername !== before.amqpUsername) await this.store.setAmqpUsername(name, amqpUsername);
    }
    this.log?.info({ user: name, roles: roles.map((r) => r.role) }, 'user roles changed');
    this.onChange();
    return { user: { ...before, roles, amqpUsername }, amqp };
  }

  /** Deletes the user, its tokens (they fail on the next request), its subscriptions' ownership and its RabbitMQ user. */
  async delete(name: string): Promise<void> {
    const user = await this.get(name);
    if (this.rabbit && user.amqpUsername !== undefined) await this.rabbit.remove(name);
    if (!(await this.store.delete(name))) throw new HeraldError(ErrorCodes.NOT_FOUND, `no user ${name}`);
    this.log?.info({ user: name }, 'user deleted');
    this.onChange();
  }

  /** A new token for the user: its secret is in this answer only. */
  async createToken(userName: string, tokenName: unknown): Promise<{ info: TokenInfo; secret: string }> {
    assertName('name', tokenName);
    await this.get(userName);
    const existing = await this.store.tokens(userName);
    if (existing.length >= MAX_TOKENS_PER_USER)
      throw new HeraldError(ErrorCodes.LIMIT_EXCEEDED, `user ${userName} has ${MAX_TOKENS_PER_USER} tokens, the most it may: revoke one`);
    const secret = newTokenSecret();
    const info: TokenInfo = { id: uuidv7(), user: userName, name: tokenName, createdAt: Date.now(), lastUsedAt: undefined };
    if (!(await this.store.insertToken(info, secretHash(secret))))
      throw new HeraldError(ErrorCodes.CONFLICT, `user ${userName} has a token named ${tokenName}`, { details: { name: tokenName } });
    this.log?.info({ user: userName, token: info.id, name: tokenName }, 'token created');
    return { info, secret };
  }

  async tokens(userName: string): Promise<TokenInfo[]> {
    await this.get(userName);
    return this.store.tokens(userName);
  }

  /** Revokes a token: the next request with it is 401. */
  async revokeToken(userName: string, id: string): Promise<void> {
    await this.get(userName);
    if (!isUuid(id) || !(await this.store.deleteToken(userName, id)))
      throw new HeraldError(ErrorCodes.NOT_FOUND, `user ${userName} has no token ${preview(id)}`, { details: { id } });
    this.log?.info({ user: userName, token: id }, 'token revoked');
    this.onChange();
  }
}
