import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unreachable } from './unreachable.ts';

/** An error shaped as amqplib and node:net raise them: a message and a `code`. */
const error = (message: string, code: string | number) => Object.assign(new Error(message), { code });

test('a refused connection is "cannot reach", whatever digits its port has (40649 holds 406, 40417 holds 404)', () => {
  for (const port of [40649, 40417, 40312, 15304, 5672]) {
    const err = unreachable(`amqp://guest:guest@127.0.0.1:${port}`, error(`connect ECONNREFUSED 127.0.0.1:${port}`, 'ECONNREFUSED'));
    assert.equal(
      err.message,
      `cannot reach RabbitMQ at amqp://127.0.0.1:${port} (ECONNREFUSED): start it with \`rabbitmq-server -detached\` or set HERALD_AMQP_URL`,
    );
  }
});

test('AMQP refusals are told apart by reply code: topology (406, 404), credentials (403), vhost (530)', () => {
  const url = 'amqp://guest:secret@127.0.0.1:5672/prod';
  const topology = unreachable(
    url,
    error('Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg \'durable\'"', 406),
  );
  assert.match(topology.message, /^RabbitMQ at amqp:\/\/127\.0\.0\.1:5672\/prod refused Herald's topology: /);
  assert.match(unreachable(url, error('Channel closed by server: 404 (NOT-FOUND)', 404)).message, /refused Herald's topology/);
  const login = unreachable(
    url,
    error('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused"', 403),
  );
  assert.match(login.message, /^cannot reach RabbitMQ at amqp:\/\/127\.0\.0\.1:5672\/prod \(403\): check the user and password/);
  assert.doesNotMatch(login.message, /secret/);
  const vhost = unreachable(
    url,
    error('Handshake terminated by server: 530 (NOT-ALLOWED) with message "NOT_ALLOWED - vhost prod not found"', 530),
  );
  assert.match(vhost.message, /\(530\): check that the vhost exists/);
});
