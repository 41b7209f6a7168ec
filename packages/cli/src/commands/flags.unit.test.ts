import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../usage.ts';
import { amqpUrl, hubOf, token } from './flags.ts';

test('--hub-url, else HERALD_HUB_URL, else HERALD_HTTP_PORT, else :8080; the /api/v1 suffix tolerated', () => {
  assert.deepEqual(hubOf({}, {}), { url: 'http://127.0.0.1:8080', token: undefined });
  assert.equal(hubOf({}, { HERALD_HTTP_PORT: '9090' }).url, 'http://127.0.0.1:9090');
  assert.equal(hubOf({}, { HERALD_HUB_URL: 'http://hub:8080/api/v1/', HERALD_HTTP_PORT: '9090' }).url, 'http://hub:8080');
  assert.equal(hubOf({ hubUrl: 'https://h/' }, { HERALD_HUB_URL: 'http://hub:8080' }).url, 'https://h');
  assert.equal(hubOf({ hubUrl: '' }, { HERALD_HUB_URL: 'http://hub:8080' }).url, 'http://hub:8080', 'empty counts as unset');
});

test('a hub URL that is not http(s) is a usage error naming where it came from, its password masked', () => {
  assert.throws(
    () => hubOf({ hubUrl: 'hub:8080' }, {}),
    (e: unknown) => e instanceof UsageError && /^invalid --hub-url "hub:8080"/.test(e.message),
  );
  assert.throws(
    () => hubOf({}, { HERALD_HUB_URL: 'amqp://u:secret@h' }),
    (e: unknown) => e instanceof UsageError && /^invalid HERALD_HUB_URL "amqp:\/\/u:\*\*\*@h"/.test(e.message),
  );
});

test('--token, else HERALD_TOKEN, else none; a token a header cannot carry is refused without echoing it', () => {
  assert.equal(token(undefined, {}), undefined);
  assert.equal(token(undefined, { HERALD_TOKEN: '' }), undefined);
  assert.equal(token(undefined, { HERALD_TOKEN: 'env-t' }), 'env-t');
  assert.equal(token('flag-t', { HERALD_TOKEN: 'env-t' }), 'flag-t');
  assert.equal(hubOf({ token: 't' }, {}).token, 't');
  for (const bad of ['a b', 'a\nb', 'a\u0000', 'é', 'x'.repeat(4097)]) {
    assert.throws(
      () => token(bad, {}),
      (e: unknown) => e instanceof UsageError && e.message === 'invalid --token: expected up to 4096 printable ASCII characters, no spaces',
    );
  }
  assert.throws(
    () => token(undefined, { HERALD_TOKEN: 'se cret' }),
    (e: unknown) => e instanceof UsageError && !e.message.includes('se cret'),
  );
});

test('--amqp-url, else HERALD_AMQP_URL, else the local default', () => {
  assert.equal(amqpUrl(undefined, {}), 'amqp://guest:guest@127.0.0.1:5672');
  assert.equal(amqpUrl(undefined, { HERALD_AMQP_URL: 'amqp://x' }), 'amqp://x');
  assert.equal(amqpUrl('amqp://y', { HERALD_AMQP_URL: 'amqp://x' }), 'amqp://y');
});
