import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileMatcher, parseSelector } from '@herald/core';
import { countTerms, matchingOffsetsSql, patternShape } from './selector-sql.ts';

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

test('countTerms: the weighted per-pattern counts give the count of the union, for any overlap of names and *', () => {
  const senders = ['a', 'b', 'c'];
  const types = ['x', 'y', 'z.w'];
  const universe = senders.flatMap((s) => types.map((t) => [s, t] as const));
  // A few copies of each (sender, type), so a wrong coefficient cannot cancel by chance.
  const weight = (s: string, t: string) => 1 + senders.indexOf(s) * 3 + types.indexOf(t) * 7;
  const all = ['a:*', 'b:*', '*:x', '*:z.w', 'a:x', 'b:y', 'c:z.w', '*:*'];
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let round = 0; round < 300; round++) {
    const picked = all.filter(() => rand() < 0.35);
    if (picked.length === 0) continue;
    const selector = parseSelector(picked);
    const m = compileMatcher(selector);
    const terms = countTerms(selector.patterns);
    assert.ok(terms, picked.join(','));
    const want = universe.filter(([s, t]) => m(s, t)).reduce((n, [s, t]) => n + weight(s, t), 0);
    const got = terms.reduce((n, term) => {
      const tm = compileMatcher(parseSelector(`${term.pattern.sender}:${term.pattern.type}`));
      return n + term.coefficient * universe.filter(([s, t]) => tm(s, t)).reduce((k, [s, t]) => k + weight(s, t), 0);
    }, 0);
    assert.equal(got, want, picked.join(','));
  }
  assert.deepEqual(
    countTerms(parseSelector('a:x, a:*').patterns)?.map((t) => [`${t.pattern.sender}:${t.pattern.type}`, t.coefficient]),
    [['a:*', 1]],
  );
  assert.equal(countTerms(parseSelector('a:x, a:y.*').patterns), undefined, 'a wildcard type has no index range');
  assert.deepEqual(
    ['a:b', 'a:*', '*:b', '*:*', 'a:b.#', '*:#.b'].map((p) => patternShape(parseSelector(p).patterns[0] as never)),
    ['sender-type', 'sender', 'type', 'all', undefined, undefined],
  );
});
