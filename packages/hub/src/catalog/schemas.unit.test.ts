import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, ValidationError } from '@herald/core';
import { CATALOG_LIMITS, canonicalJson, checkExample, compileSchema, errorsText, unsafePattern } from './schemas.ts';

const refusedWith = (re: RegExp) => (err: unknown) => {
  assert.ok(err instanceof ValidationError, String(err));
  assert.equal(err.code, ErrorCodes.INVALID_REQUEST);
  assert.equal(err.details?.parameter, 'schema');
  assert.match(err.message, re);
  return true;
};

describe('unsafePattern', () => {
  const cases: [string, RegExp | undefined][] = [
    ['^[a-z]+$', undefined],
    ['^\\d{3}-\\d{4}$', undefined],
    ['^(ab)*$', undefined],
    ['^(?:x|y)?z+$', undefined],
    ['[(a+)+]', undefined], // inside a class: no group, no quantifier on one
    ['\\(a+\\)+', undefined], // escaped parentheses
    ['^(a+)+$', /quantified group holds a quantifier/],
    ['(a*)*', /quantified group holds a quantifier/],
    ['((ab)+c)*', /quantified group holds a quantifier/],
    ['(x{2,})+', /quantified group holds a quantifier/],
    ['(a)\\1', /backreference/],
    ['(?<n>a)\\k<n>', /backreference/],
    ['(?=a)b', /lookaround/],
    ['(?<!a)b', /lookaround/],
    ['a'.repeat(CATALOG_LIMITS.patternChars + 1), /longer than/],
  ];
  for (const [pattern, why] of cases) {
    test(`${pattern.slice(0, 30)} → ${why ?? 'safe'}`, () => {
      const got = unsafePattern(pattern);
      if (why === undefined) assert.equal(got, undefined);
      else assert.match(got ?? '', why);
    });
  }
});

describe('compileSchema', () => {
  test('a schema compiles into a check that names the failing path; formats are checked', () => {
    const check = compileSchema({
      type: 'object',
      properties: { email: { type: 'string', format: 'email' }, n: { type: 'integer' } },
      required: ['n'],
    });
    assert.equal(check({ n: 1, email: 'a@example.com' }), undefined);
    assert.equal(check({ n: 'x' }), '/n must be integer');
    assert.equal(check({ n: 1, email: 'nope' }), '/email must match format "email"');
    assert.equal(check([]), '(root) must be object');
    assert.equal(compileSchema(true)(42), undefined);
    assert.match(compileSchema(false)(42) ?? '', /boolean schema is false/);
  });

  test('refused: not a schema, too large, too deep, references outside, unsafe patterns, what ajv cannot compile', () => {
    assert.throws(() => compileSchema('string'), refusedWith(/must be a JSON Schema/));
    assert.throws(() => compileSchema(null), refusedWith(/must be a JSON Schema/));
    assert.throws(() => compileSchema([{ type: 'string' }]), refusedWith(/must be a JSON Schema/));
    assert.throws(() => compileSchema({ enum: ['x'.repeat(CATALOG_LIMITS.schemaBytes)] }), refusedWith(/larger than 65536 bytes/));
    let deep: unknown = { type: 'string' };
    for (let i = 0; i < CATALOG_LIMITS.schemaDepth; i++) deep = { not: deep };
    assert.throws(() => compileSchema(deep), refusedWith(/nests deeper than 32 levels/));
    assert.throws(() => compileSchema({ $ref: 'https://example.com/s.json' }), refusedWith(/schema\.\$ref: only references inside/));
    assert.throws(() => compileSchema({ items: [{ $ref: 'file:///etc/passwd' }] }), refusedWith(/schema\.items\[0\]\.\$ref/));
    assert.throws(() => compileSchema({ $dynamicRef: 'other#x' }), refusedWith(/only references inside/));
    assert.throws(() => compileSchema({ properties: { a: { pattern: '(a+)+' } } }), refusedWith(/schema\.properties\.a\.pattern/));
    assert.throws(() => compileSchema({ patternProperties: { '(x*)*': {} } }), refusedWith(/is refused: a quantified group/));
    assert.throws(
      () => compileSchema({ type: 'string', pattern: '[' }),
      refusedWith(/does not compile: .*pattern|Invalid regular expression/),
    );
    assert.throws(() => compileSchema({ type: 'strin' }), refusedWith(/does not compile: schema is invalid/));
    assert.throws(() => compileSchema({ typo: 1 }), refusedWith(/does not compile: strict mode: unknown keyword: "typo"/));
    assert.throws(() => compileSchema({ $ref: '#/definitions/missing' }), refusedWith(/does not compile: .*can't resolve reference/));
    assert.throws(
      () => compileSchema({ $schema: 'https://json-schema.org/draft/2020-12/schema' }),
      refusedWith(/does not compile: no schema with key or ref/),
    );
  });

  test('uniqueItems: with items of a scalar type or a bounded maxItems only (else quadratic in the array)', () => {
    assert.equal(compileSchema({ type: 'array', uniqueItems: true, items: { type: 'string' } })(['a', 'b']), undefined);
    assert.match(compileSchema({ type: 'array', uniqueItems: true, maxItems: 10 })([{}, {}]) ?? '', /must NOT have duplicate items/);
    assert.throws(() => compileSchema({ type: 'array', uniqueItems: true }), refusedWith(/uniqueItems needs maxItems of at most 1000/));
    assert.throws(
      () => compileSchema({ properties: { tags: { uniqueItems: true, maxItems: 100_000, items: { type: 'object' } } } }),
      refusedWith(/schema\.properties\.tags\.uniqueItems/),
    );
    // False means no check: nothing to bound.
    compileSchema({ type: 'array', uniqueItems: false });
  });

  test('values are not schemas: a $ref or pattern inside enum, const, default or examples is data', () => {
    const check = compileSchema({ enum: [{ $ref: 'https://x' }, { pattern: '(a+)+' }], default: { $ref: 'y.json' } });
    assert.equal(check({ $ref: 'https://x' }), undefined);
  });

  test('a property named like a keyword is not read as one', () => {
    const check = compileSchema({ type: 'object', properties: { pattern: { type: 'string' }, $ref: { type: 'string' } } });
    assert.equal(check({ pattern: '(a+)+', $ref: 'https://x' }), undefined);
  });

  test('walked by keyword kind: every schema position is checked, whatever its name', () => {
    const bad = { type: 'string', pattern: '(a+)+' };
    const positions: [string, unknown][] = [
      ['definitions.const', { definitions: { const: bad } }],
      ['$defs.enum', { $defs: { enum: bad } }],
      ['dependencies.default', { dependencies: { default: bad } }],
      ['dependentSchemas.examples', { dependentSchemas: { examples: bad } }],
      ['properties.default', { properties: { default: bad } }],
      ['patternProperties.^x$', { patternProperties: { '^x$': bad } }],
      ['items', { items: bad }],
      ['items[1]', { items: [{}, bad] }],
      ['prefixItems[0]', { prefixItems: [bad] }],
      ['additionalItems', { items: [{}], additionalItems: bad }],
      ['allOf[0].anyOf[1].oneOf[0]', { allOf: [{ anyOf: [{}, { oneOf: [bad] }] }] }],
      ['not', { not: bad }],
      ['if', { if: bad }],
      // biome-ignore lint/suspicious/noThenProperty: the JSON Schema keyword
      ['then', { if: {}, then: bad }],
      ['else', { if: {}, else: bad }],
      ['contains', { contains: bad }],
      ['propertyNames', { propertyNames: bad }],
      ['additionalProperties', { additionalProperties: bad }],
      ['unevaluatedProperties', { unevaluatedProperties: bad }],
      ['definitions.a.properties.b.items', { definitions: { a: { properties: { b: { items: bad } } } } }],
    ];
    for (const [path, schema] of positions)
      assert.throws(
        () => compileSchema(schema),
        refusedWith(new RegExp(`^schema\\.${path.replace(/[.[\]^$]/g, '\\$&')}\\.pattern: the pattern is refused`)),
        path,
      );
    assert.throws(
      () => compileSchema({ definitions: { enum: { $ref: 'https://x' } } }),
      refusedWith(/schema\.definitions\.enum\.\$ref: only references inside/),
    );
    assert.throws(() => compileSchema({ dependencies: { a: { uniqueItems: true } } }), refusedWith(/schema\.dependencies\.a\.uniqueItems/));
  });

  test('data is never walked: enum, const, default, examples and a dependencies list of names hold no schema', () => {
    const data = { pattern: '(a+)+', $ref: 'https://x', uniqueItems: true, properties: { p: { pattern: '(x*)*' } } };
    const check = compileSchema({
      type: 'object',
      properties: { a: { enum: [data] }, b: { const: data }, c: { default: data, examples: [data] } },
      dependencies: { a: ['b', 'c'] },
    });
    assert.equal(check({ a: data, b: data, c: 1 }), undefined);
    assert.match(check({ a: data }) ?? '', /must have properties b, c when property a is present/);
  });

  test('local references and recursion work; deep data under a recursive schema is a violation, not a crash', () => {
    const tree = { definitions: { node: { type: 'array', items: { $ref: '#/definitions/node' } } }, $ref: '#/definitions/node' };
    const check = compileSchema(tree);
    assert.equal(check([[], [[]]]), undefined);
    let data: unknown = [];
    for (let i = 0; i < 100_000; i++) data = [data];
    const why = check(data);
    assert.ok(why === undefined || /validator failed/.test(why), String(why));
  });

  test('a pattern is tried on strings up to patternInputChars; a longer one fails it', () => {
    const check = compileSchema({ type: 'string', pattern: '^a+$' });
    assert.equal(check('a'.repeat(CATALOG_LIMITS.patternInputChars)), undefined);
    assert.match(check('a'.repeat(CATALOG_LIMITS.patternInputChars + 1)) ?? '', /must match pattern/);
  });

  test('checkExample: a 400 on example that names the mismatch; errorsText is bounded', () => {
    const check = compileSchema({ type: 'object', required: ['a'] });
    checkExample(check, { a: 1 });
    assert.throws(
      () => checkExample(check, {}),
      (err: unknown) =>
        err instanceof ValidationError && err.details?.parameter === 'example' && /must have required property 'a'/.test(err.message),
    );
    const many = Array.from({ length: 100 }, (_, i) => ({ instancePath: `/${'x'.repeat(50)}${i}`, message: 'is wrong' }));
    assert.ok(errorsText(many as never).length <= CATALOG_LIMITS.reasonChars + 1);
  });

  test('canonicalJson: equal for any key order, different for any change', () => {
    assert.equal(canonicalJson({ b: 1, a: [1, { d: 2, c: 3 }] }), canonicalJson({ a: [1, { c: 3, d: 2 }], b: 1 }));
    assert.notEqual(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }));
    assert.notEqual(canonicalJson({ a: 1 }), canonicalJson({ a: '1' }));
  });
});

describe('patterns run on RE2', () => {
  test('no pattern backtracks: hostile patterns past the heuristic take milliseconds on the longest string checked', () => {
    const hostile = [
      { $ref: '#/definitions/const', definitions: { const: { type: 'string', pattern: '^(a|a)*$' } } },
      { dependencies: { default: { properties: { x: { type: 'string', pattern: '^(a+)+$' } } } } },
      { type: 'string', pattern: '^(a|a)*$' },
      { type: 'string', pattern: '^\\d*\\d*\\d*x$' },
    ];
    for (const schema of hostile) {
      let check: ReturnType<typeof compileSchema>;
      try {
        check = compileSchema(schema);
      } catch {
        continue; // refused outright is as good
      }
      const input = `${'a'.repeat(CATALOG_LIMITS.patternInputChars - 1)}!`;
      const started = performance.now();
      try {
        check(input);
      } catch {}
      try {
        check({ x: input });
      } catch {}
      assert.ok(performance.now() - started < 500, `${JSON.stringify(schema)} took ${performance.now() - started} ms`);
    }
  });

  test('each pattern of a schema is its own (ajv caches them by their text)', () => {
    const check = compileSchema({
      type: 'object',
      properties: { a: { type: 'string', pattern: '^a$' }, b: { type: 'string', pattern: '^b$' } },
    });
    assert.equal(check({ a: 'a', b: 'b' }), undefined);
    assert.match(check({ a: 'a', b: 'a' }) ?? '', /\/b must match pattern "\^b\$"/);
  });
});
