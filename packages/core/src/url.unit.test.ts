import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { redactSecrets, redactUrl } from './url.ts';

describe('redacting secrets', () => {
  test('the password of a URL, parsable or not', () => {
    assert.equal(redactUrl('amqp://guest:s3cret@127.0.0.1:5672/v'), 'amqp://guest:***@127.0.0.1:5672/v');
    assert.equal(redactUrl('amqp://guest@127.0.0.1'), 'amqp://guest@127.0.0.1');
    // Not a URL to the WHATWG parser (a port out of range), still a password in it.
    assert.equal(redactUrl('postgres://app:hunter2@db:99999/x'), 'postgres://app:***@db:99999/x');
  });

  test('every URL in a line of text, passwords with @ and : in them, password= parameters', () => {
    const line = 'invalid HERALD_AMQP_URL "amqp://u:p@ss:w@rd@host:1/x": expected … also postgres://a:b@h2/db?sslmode=require';
    const out = redactSecrets(line);
    assert.ok(!out.includes('p@ss') && !out.includes('w@rd') && !out.includes(':b@'), out);
    assert.ok(out.includes('amqp://u:***@host:1/x') && out.includes('postgres://a:***@h2/db'), out);
    assert.equal(redactSecrets('host=db password=hunter2 user=app'), 'host=db password=*** user=app');
    assert.equal(redactSecrets('postgres://h/db?user=a&password=x1&ssl=1'), 'postgres://h/db?user=a&password=***&ssl=1');
    assert.equal(redactSecrets('no secrets here: http://host/path@x'), 'no secrets here: http://host/path@x');
  });
});
