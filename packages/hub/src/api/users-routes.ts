import { selectorPatterns } from '@herald/core';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { AmqpCredentials } from '../auth/rabbitmq-users.ts';
import type { Role, TokenInfo, User } from '../auth/types.ts';
import type { Users } from '../auth/users.ts';
import { named } from './openapi.ts';
import { isoOrNull } from './pauses-routes.ts';

const RoleSchema = Type.Union([
  Type.Object({ role: Type.Literal('admin') }, { additionalProperties: false }),
  Type.Object(
    { role: Type.Literal('publisher'), senders: Type.Array(Type.String(), { minItems: 1, description: 'the senders it may publish as' }) },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      role: Type.Literal('subscriber'),
      selector: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], {
        description: 'the events it may read: patterns sender:type, as an array or comma-separated',
      }),
    },
    { additionalProperties: false },
  ),
]);
const RolesBody = Type.Array(Type.Unknown(), {
  minItems: 1,
  description: 'roles: {"role":"admin"}, {"role":"publisher","senders":[…]}, {"role":"subscriber","selector":[…]}',
});

const UserSchema = named(
  'User',
  Type.Object({
    name: Type.String(),
    roles: Type.Array(RoleSchema),
    createdAt: Type.String({ format: 'date-time' }),
    amqpUsername: Type.Union([Type.String(), Type.Null()], { description: 'its RabbitMQ user (HERALD_RABBITMQ_API), else null' }),
  }),
);
const AmqpSchema = named(
  'AmqpCredentials',
  Type.Object({ username: Type.String(), password: Type.String() }, { description: 'its RabbitMQ credentials: shown in this answer only' }),
);
const UserWithAmqpSchema = Type.Object({ ...UserSchema.properties, amqp: Type.Optional(AmqpSchema) });
const TokenSchema = named(
  'Token',
  Type.Object({
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'updated at most once a minute' }),
  }),
);

function roleJson(r: Role) {
  return r.role === 'subscriber' ? { role: r.role, selector: selectorPatterns(r.selector) } : r;
}

function userJson(u: User, amqp?: AmqpCredentials) {
  return {
    name: u.name,
    roles: u.roles.map(roleJson),
    createdAt: isoOrNull(u.createdAt),
    amqpUsername: u.amqpUsername ?? null,
    ...(amqp ? { amqp: { username: amqp.username, password: amqp.password } } : {}),
  };
}

function tokenJson(t: TokenInfo) {
  return { id: t.id, name: t.name, createdAt: isoOrNull(t.createdAt), lastUsedAt: isoOrNull(t.lastUsedAt) };
}

const NameParams = Type.Object({ name: Type.String({ description: 'the user name' }) });

/**
 * `/api/v1/users`: users with their roles, and their API tokens (DESIGN.md §8). Admins only (the
 * access table). A token's secret and a RabbitMQ password appear once, in the answer that created
 * them; no other answer or log line carries them.
 */
export function usersRoutes(app: FastifyInstance, users: Users): void {
  app.post(
    '/api/v1/users',
    {
      schema: {
        summary: 'Create a user with its roles',
        description:
          'With HERALD_RABBITMQ_API set, a user with a publisher or subscriber role also gets a RabbitMQ user, whose ' +
          'credentials (`amqp`) are in this answer only.',
        tags: ['users'],
        body: Type.Object(
          { name: Type.String({ description: '1-64 of A-Z a-z 0-9 _ . -' }), roles: RolesBody },
          {
            additionalProperties: false,
            examples: [
              {
                name: 'billing-svc',
                roles: [
                  { role: 'publisher', senders: ['billing'] },
                  { role: 'subscriber', selector: ['shipping:parcel.*'] },
                ],
              },
            ],
          },
        ),
        response: { 201: UserWithAmqpSchema },
        problems: [400, 409, 503],
      },
    },
    async (request, reply) => {
      const body = request.body as { name: string; roles: unknown[] };
      const { user, amqp } = await users.create(body.name, body.roles);
      return reply
        .code(201)
        .header('location', `/api/v1/users/${encodeURIComponent(user.name)}`)
        .send(userJson(user, amqp));
    },
  );

  app.get(
    '/api/v1/users',
    {
      schema: { summary: 'Users and their roles', tags: ['users'], response: { 200: Type.Object({ items: Type.Array(UserSchema) }) } },
    },
    async () => ({ items: (await users.list()).map((u) => userJson(u)) }),
  );

  app.get(
    '/api/v1/users/:name',
    { schema: { summary: 'One user', tags: ['users'], params: NameParams, response: { 200: UserSchema }, problems: [404] } },
    async (request) => userJson(await users.get((request.params as { name: string }).name)),
  );

  app.delete(
    '/api/v1/users/:name',
    {
      schema: {
        summary: 'Delete a user',
        description: 'Its tokens stop working at once, its RabbitMQ user is deleted, its subscriptions stay (for admins).',
        tags: ['users'],
        params: NameParams,
        response: { 204: Type.Null({ description: 'deleted' }) },
        problems: [404, 503],
      },
    },
    async (request, reply) => {
      await users.delete((request.params as { name: string }).name);
      return reply.code(204).send(null);
    },
  );

  app.put(
    '/api/v1/users/:name/roles',
    {
      schema: {
        summary: "Replace a user's roles",
        description: 'Takes effect on its next request; its RabbitMQ permissions follow.',
        tags: ['users'],
        params: NameParams,
        body: RolesBody,
        response: { 200: UserWithAmqpSchema },
        problems: [400, 404, 503],
      },
    },
    async (request) => {
      const { user, amqp } = await users.setRoles((request.params as { name: string }).name, request.body);
      return userJson(user, amqp);
    },
  );

  app.post(
    '/api/v1/users/:name/tokens',
    {
      schema: {
        summary: 'Create an API token',
        description: 'The secret (`token`) is in this answer only: the hub keeps its hash. Send it as Authorization: Bearer <token>.',
        tags: ['users'],
        params: NameParams,
        body: Type.Object(
          { name: Type.String({ description: '1-64 of A-Z a-z 0-9 _ . -, unique per user' }) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ ...TokenSchema.properties, token: Type.String({ description: 'the secret: shown once' }) }) },
        problems: [400, 404, 409, 429],
      },
    },
    async (request, reply) => {
      const { info, secret } = await users.createToken((request.params as { name: string }).name, (request.body as { name: string }).name);
      return reply.code(201).send({ ...tokenJson(info), token: secret });
    },
  );

  app.get(
    '/api/v1/users/:name/tokens',
    {
      schema: {
        summary: "A user's tokens, without their secrets",
        tags: ['users'],
        params: NameParams,
        response: { 200: Type.Object({ items: Type.Array(TokenSchema) }) },
        problems: [404],
      },
    },
    async (request) => ({ items: (await users.tokens((request.params as { name: string }).name)).map(tokenJson) }),
  );

  app.delete(
    '/api/v1/users/:name/tokens/:id',
    {
      schema: {
        summary: 'Revoke a token',
        description: 'The next request with it is 401.',
        tags: ['users'],
        params: Type.Object({ name: Type.String(), id: Type.String() }),
        response: { 204: Type.Null({ description: 'revoked' }) },
        problems: [404],
      },
    },
    async (request, reply) => {
      const { name, id } = request.params as { name: string; id: string };
      await users.revokeToken(name, id);
      return reply.code(204).send(null);
    },
  );
}
