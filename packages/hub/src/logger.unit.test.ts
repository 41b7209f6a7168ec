import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from './logger.ts';

test('no password of a URL reaches a log line: messages, fields, nested objects, errors and their causes', () => {
  const lines: string[] = [];
  const log = createLogger('info', { write: (line: string) => lines.push(line) });
  const cause = new Error('getaddrinfo for postgres://app:db-secret@db/herald');
  const err = Object.assign(new Error('connect amqp://hub:amqp-secret@rabbit:5672 refused', { cause }), {
    url: 'amqp://hub:amqp-secret@x',
  });
  log.error({ err, where: { urls: ['postgres://a:nested-secret@h/d'] } }, 'cannot reach amqp://hub:msg-secret@rabbit');
  log.child({ part: 'x' }).warn('password=param-secret in a driver message');
  log.debug({ u: 'amqp://a:debug-secret@h' }, 'below the level');
  const out = lines.join('');
  assert.equal(lines.length, 2);
  for (const secret of ['db-secret', 'amqp-secret', 'nested-secret', 'msg-secret', 'param-secret', 'debug-secret'])
    assert.ok(!out.includes(secret), `${secret} in ${out}`);
  assert.match(out, /amqp:\/\/hub:\*\*\*@rabbit/);
  assert.match(out, /"part":"x"/);
  assert.match(out, /connect amqp:\/\/hub:\*\*\*@rabbit:5672 refused/);
});
