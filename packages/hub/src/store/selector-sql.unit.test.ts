import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchingOffsetsSql } from './selector-sql.ts';

test('a selector query is one UNION branch per pattern, each limited and ordered, never an OR of patterns', () => {
  const params: unknown[] = ['7'];
  const sql = matchingOffsetsSql(params, 'billing:*, *:invoice.paid, crm:user.created', {
    bounds: ['"offset" > $1::bigint'],
    order: 'DESC',
    limit: 10,
  });
  assert.equal(sql.match(/\(SELECT "offset" FROM events WHERE /g)?.length, 3);
  assert.equal(sql.match(/ UNION /g)?.length, 2);
  assert.equal(sql.match(/ORDER BY "offset" DESC LIMIT 10/g)?.length, 4, 'each branch and the merge');
  assert.doesNotMatch(sql, / OR /);
  assert.deepEqual([...params].sort(), ['7', 'billing', 'crm', 'invoice.paid', 'user.created']);
});

test('a second selector filters every branch; one pattern is one plain subquery; every event, no WHERE', () => {
  const params: unknown[] = [];
  const sql = matchingOffsetsSql(params, 'billing:*', { also: 'crm:a, crm:b' });
  assert.equal(sql, '(SELECT "offset" FROM events WHERE sender = $5 AND ((sender = $1 AND type = $2) OR (sender = $3 AND type = $4)))');
  assert.deepEqual(params, ['crm', 'a', 'crm', 'b', 'billing']);
  assert.equal(matchingOffsetsSql([], undefined, { limit: 3 }), '(SELECT "offset" FROM events  ORDER BY "offset" ASC LIMIT 3)');
});
