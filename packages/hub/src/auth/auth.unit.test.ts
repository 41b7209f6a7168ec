import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientKey } from './auth.ts';

test('clientKey: IPv4 as it is, an IPv4-mapped IPv6 as its IPv4, IPv6 by its /64 in every spelling', () => {
  assert.equal(clientKey('10.1.2.3'), '10.1.2.3');
  assert.equal(clientKey('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(clientKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:0DB8:0001:0002:ffff:0:0:9'), '2001:db8:1:2::/64');
  assert.equal(clientKey('[2001:db8:1:2::1]'), '2001:db8:1:2::/64');
  assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(clientKey('::1'), '0:0:0:0::/64');
  assert.equal(clientKey('2001:db8::'), '2001:db8:0:0::/64');
  assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
});
