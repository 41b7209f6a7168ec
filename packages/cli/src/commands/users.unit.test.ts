import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../usage.ts';
import { defaultTokenName, tokenLine } from './tokens.ts';
import { rolesOf, userLine } from './users.ts';

test('role flags: --admin, --publisher and --subscriber each one role, repeated lists merged without duplicates', () => {
  assert.deepEqual(rolesOf({ admin: true }), [{ role: 'admin' }]);
  assert.deepEqual(rolesOf({ publisher: ['billing'] }), [{ role: 'publisher', senders: ['billing'] }]);
  assert.deepEqual(rolesOf({ publisher: ['billing, crm', 'crm,shipping'] }), [
    { role: 'publisher', senders: ['billing', 'crm', 'shipping'] },
  ]);
  assert.deepEqual(rolesOf({ subscriber: ['billing:*,crm:contact.*', 'billing:*'] }), [
    { role: 'subscriber', selector: ['billing:*', 'crm:contact.*'] },
  ]);
  assert.deepEqual(rolesOf({ admin: true, publisher: ['billing'], subscriber: ['*:*'] }), [
    { role: 'admin' },
    { role: 'publisher', senders: ['billing'] },
    { role: 'subscriber', selector: ['*:*'] },
  ]);
});

test('role flags: none at all, a bad sender or a bad selector is a usage error naming the flag and the value', () => {
  for (const flags of [{}, { admin: false }]) {
    assert.throws(
      () => rolesOf(flags),
      (e: unknown) => e instanceof UsageError && /^give at least one role: --admin, --publisher/.test(e.message),
    );
  }
  for (const bad of ['', ',', 'billing,', 'bil@ing', 'billing:*']) {
    assert.throws(
      () => rolesOf({ publisher: [bad] }),
      (e: unknown) => e instanceof UsageError && e.message.startsWith(`invalid --publisher ${JSON.stringify(bad)}: invalid sender`),
      bad,
    );
  }
  for (const bad of ['billing', 'a:b:c:', 'bil@ing:*']) {
    assert.throws(
      () => rolesOf({ subscriber: ['*:*', bad] }),
      (e: unknown) => e instanceof UsageError && e.message.startsWith(`invalid --subscriber ${JSON.stringify(bad)}: `),
      bad,
    );
  }
});

test('a user and a token in one line', () => {
  const createdAt = '2025-01-31T09:15:00.000Z';
  assert.equal(
    userLine({
      name: 'alice',
      roles: [{ role: 'publisher', senders: ['billing', 'crm'] }, { role: 'admin' }],
      createdAt,
      amqpUsername: null,
    }),
    `alice  publisher=billing,crm admin  created ${createdAt}`,
  );
  assert.equal(
    userLine({ name: 'bob', roles: [{ role: 'subscriber', selector: ['billing:*'] }], createdAt, amqpUsername: 'herald-bob' }),
    `bob  subscriber=billing:*  created ${createdAt}  amqp herald-bob`,
  );
  assert.equal(tokenLine({ id: 'i', name: 'n', createdAt, lastUsedAt: null }), `i  n  created ${createdAt}  last used never`);
});

test('the default token name is cli-<time>, within the hub rule for names', () => {
  const name = defaultTokenName(new Date('2025-01-31T09:15:00.123Z'));
  assert.equal(name, 'cli-2025-01-31T09-15-00.123Z');
  assert.match(name, /^[A-Za-z0-9_.-]{1,64}$/);
  assert.notEqual(defaultTokenName(new Date(1)), defaultTokenName(new Date(2)), 'two tokens a millisecond apart do not collide');
});
