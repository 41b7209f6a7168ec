import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { invalidSelectorCases, selectorCases } from '@herald/testing';
import fc from 'fast-check';
import { ValidationError } from './errors.ts';
import { bindingKeys, compileMatcher, parseSelector, sqlPredicate } from './selector.ts';

/**
 * AMQP topic matching of a routing key against one binding key, written from the AMQP rules
 * (words split on dots; `*` one word, `#` zero or more) independently of the selector code, so the
 * property test below compares two implementations, not one with itself.
 */
function topicMatches(bindingKey: string, routingKey: string): boolean {
  const b = bindingKey.split('.');
  const r = routingKey.split('.');
  const memo = new Map<string, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = `${i},${j}`;
    const cached = memo.get(key);
    if (cached !== undefined) return cached;
    let result: boolean;
    if (i === b.length) result = j === r.length;
    else if (b[i] === '#') result = go(i + 1, j) || (j < r.length && go(i, j + 1));
    else result = j < r.length && (b[i] === '*' || b[i] === r[j]) && go(i + 1, j + 1);
    memo.set(key, result);
    return result;
  };
  return go(0, 0);
}

function split(routingKey: string): [string, string] {
  const dot = routingKey.indexOf('.');
  return [routingKey.slice(0, dot), routingKey.slice(dot + 1)];
}

describe('selector case table', () => {
  for (const c of selectorCases) {
    test(`matcher and binding keys: ${c.name}`, () => {
      const match = compileMatcher(c.selector);
      const keys = bindingKeys(c.selector);
      for (const rk of c.match) {
        assert.equal(match(...split(rk)), true, `matcher should match ${rk}`);
        assert.ok(
          keys.some((k) => topicMatches(k, rk)),
          `binding keys ${keys.join(' ')} should route ${rk}`,
        );
      }
      for (const rk of c.miss) {
        assert.equal(match(...split(rk)), false, `matcher should miss ${rk}`);
        assert.ok(!keys.some((k) => topicMatches(k, rk)), `binding keys ${keys.join(' ')} should not route ${rk}`);
      }
    });
  }

  for (const c of invalidSelectorCases) {
    test(`rejects ${JSON.stringify(c.selector)}`, () => {
      assert.throws(
        () => parseSelector(c.selector),
        (err: unknown) => err instanceof ValidationError && err.code === 'INVALID_SELECTOR' && err.message.includes(c.mentions),
      );
    });
  }
});

describe('canonical form', () => {
  test('order, spacing and duplicates do not change the canonical text or the hash', () => {
    const a = parseSelector('shipping:*, billing:invoice.paid,billing:invoice.paid');
    const b = parseSelector([' billing:invoice.paid ', 'shipping:*']);
    assert.equal(a.canonical, 'billing:invoice.paid,shipping:*');
    assert.equal(a.canonical, b.canonical);
    assert.equal(a.hash, b.hash);
    assert.match(a.hash, /^[0-9a-f]{16}$/);
  });

  test('# spellings collapse: billing:# is billing:*, a.#.#.b is a.#.b', () => {
    assert.equal(parseSelector('billing:#').canonical, 'billing:*');
    assert.equal(parseSelector('x:a.#.#.b').canonical, 'x:a.#.b');
  });

  test('different selectors have different hashes', () => {
    assert.notEqual(parseSelector('billing:*').hash, parseSelector('shipping:*').hash);
  });

  test('binding keys of the five receiver kinds', () => {
    assert.deepEqual(bindingKeys('billing:*'), ['billing.#']);
    assert.deepEqual(bindingKeys('*:invoice.paid, *:invoice.voided'), ['*.invoice.paid', '*.invoice.voided']);
    assert.deepEqual(bindingKeys('billing:invoice.paid, shipping:parcel.sent'), ['billing.invoice.paid', 'shipping.parcel.sent']);
    assert.deepEqual(bindingKeys('billing:*, shipping:*'), ['billing.#', 'shipping.#']);
    // Two `#`, or a long tail after one (RabbitMQ tries every split at a `#`): bound up to the first, a superset.
    assert.deepEqual(bindingKeys('*:a.#.b.#.c, crm:*.#.*.#'), ['*.a.#', 'crm.*.#']);
    assert.deepEqual(bindingKeys('*:#.x.#'), ['*.#']);
    assert.deepEqual(bindingKeys('a:x.#.1.2.3.4, b:x.#.1.2.3.4.5'), ['a.x.#.1.2.3.4', 'b.x.#']);
    assert.deepEqual(bindingKeys('*:*'), ['#']);
  });

  test('SQL predicate binds every name as a parameter, never inline', () => {
    const p = sqlPredicate('billing:invoice.paid, *:a.*', { firstParam: 3 });
    assert.equal(p.sql, "(('.' || type) ~ $3 OR (sender = $4 AND type = $5))");
    assert.deepEqual(p.params, ['^\\.a\\.[^.]+$', 'billing', 'invoice.paid']);
    assert.deepEqual(sqlPredicate('*:*'), { sql: 'TRUE', params: [] });
  });
});

describe('property: binding keys and matcher agree', () => {
  const word = fc.constantFrom('a', 'b', 'c', 'billing', 'x-1');
  const senderPat = fc.oneof(word, fc.constant('*'));
  const typeSeg = fc.oneof(word, word, fc.constant('*'), fc.constant('#'));
  const typePat = fc.oneof(
    fc.constant('*'),
    fc.array(typeSeg, { minLength: 1, maxLength: 4 }).map((s) => s.join('.')),
  );
  const pattern = fc.tuple(senderPat, typePat).map(([s, t]) => `${s}:${t}`);
  const selector = fc.array(pattern, { minLength: 1, maxLength: 3 });
  const event = fc.tuple(
    word,
    fc.array(word, { minLength: 1, maxLength: 5 }).map((s) => s.join('.')),
  );

  test('for random selectors and events (exactly, unless a type has two #, or five segments after one: then a superset)', () => {
    fc.assert(
      fc.property(selector, fc.array(event, { minLength: 1, maxLength: 20 }), (sel, events) => {
        const match = compileMatcher(sel);
        const keys = bindingKeys(sel);
        const exact = parseSelector(sel).patterns.every((p) => {
          const segments = p.type.split('.');
          const first = segments.indexOf('#');
          return first < 0 || (segments.length - first - 1 <= 4 && segments.indexOf('#', first + 1) < 0);
        });
        for (const [sender, type] of events) {
          const routed = keys.some((k) => topicMatches(k, `${sender}.${type}`));
          const where = `${sel.join(',')} vs ${sender}.${type} (keys ${keys.join(' ')})`;
          if (exact) assert.equal(match(sender, type), routed, where);
          else if (match(sender, type)) assert.ok(routed, where);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
