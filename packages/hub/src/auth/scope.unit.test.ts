import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { matches, parsePattern, parseSelector } from '@herald/core';
import fc from 'fast-check';
import { patternCovers, typeCovers, uncovered } from './scope.ts';

describe('scope: a granted selector covers an asked one', () => {
  test('types: names, * (one segment), # (any number), and a whole * (any type)', () => {
    const yes: [string, string][] = [
      ['*', 'invoice.paid'],
      ['*', '*'],
      ['*', 'invoice.#'],
      ['invoice.*', 'invoice.paid'],
      ['invoice.#', 'invoice'],
      ['invoice.#', 'invoice.*.x'],
      ['invoice.#', 'invoice.#'],
      ['#.paid', 'invoice.paid'],
      ['*.#', '*'],
      ['#.x', '#.a.x'],
      ['a.#.x', 'a.x'],
      ['a.#.x', 'a.*.#.x'],
    ];
    const no: [string, string][] = [
      ['invoice.paid', '*'],
      ['invoice.*', 'invoice'],
      ['invoice.*', 'invoice.#'],
      ['invoice.*', 'invoice.a.b'],
      ['#.paid', '#'],
      ['a.#', '*'],
      ['a.#.x', 'a.#'],
      ['invoice.paid', 'invoice.sent'],
      ['*.*', '*'],
    ];
    for (const [g, a] of yes) assert.equal(typeCovers(g, a), true, `${g} covers ${a}`);
    for (const [g, a] of no) assert.equal(typeCovers(g, a), false, `${g} does not cover ${a}`);
  });

  test('senders: * covers every sender, a name only itself', () => {
    assert.equal(patternCovers(parsePattern('*:*'), parsePattern('billing:invoice.paid')), true);
    assert.equal(patternCovers(parsePattern('billing:*'), parsePattern('billing:invoice.paid')), true);
    assert.equal(patternCovers(parsePattern('billing:*'), parsePattern('*:invoice.paid')), false);
    assert.equal(patternCovers(parsePattern('billing:*'), parsePattern('shipping:invoice.paid')), false);
  });

  test('a selector is covered when each of its patterns is; the answer names those that are not', () => {
    const granted = [parseSelector('billing:*'), parseSelector('*:audit.#')];
    assert.deepEqual(uncovered(granted, parseSelector('billing:invoice.paid,shipping:audit.x')), []);
    assert.deepEqual(
      uncovered(granted, parseSelector('billing:invoice.paid,shipping:parcel.sent')).map((p) => `${p.sender}:${p.type}`),
      ['shipping:parcel.sent'],
    );
    assert.equal(uncovered(granted, parseSelector('*:*')).length, 1);
  });

  test('property: covered means every type the asked pattern matches, the granted one matches too', () => {
    const seg = fc.constantFrom('a', 'b', 'x', '*', '#');
    const type = fc.array(seg, { minLength: 1, maxLength: 4 }).map((s) => s.join('.'));
    const concrete = fc.array(fc.constantFrom('a', 'b', 'x', 'zz'), { minLength: 1, maxLength: 6 }).map((s) => s.join('.'));
    fc.assert(
      fc.property(type, type, fc.array(concrete, { maxLength: 30 }), (g, a, samples) => {
        let gp: string;
        let ap: string;
        try {
          gp = `s:${parsePattern(`s:${g}`).type}`;
          ap = `s:${parsePattern(`s:${a}`).type}`;
        } catch {
          return;
        }
        if (!patternCovers(parsePattern(gp), parsePattern(ap))) return;
        for (const t of samples) if (matches(ap, 's', t)) assert.ok(matches(gp, 's', t), `${gp} covers ${ap} but misses ${t}`);
      }),
      { numRuns: 2000 },
    );
  });

  test('property: not covered means some type the asked pattern matches escapes the granted one', () => {
    // The witness: each * of the asked pattern as a name the granted one never mentions, each # as nothing or that name.
    const seg = fc.constantFrom('a', 'x', '*', '#');
    const type = fc.array(seg, { minLength: 1, maxLength: 4 }).map((s) => s.join('.'));
    fc.assert(
      fc.property(type, type, (g, a) => {
        const gp = `s:${parsePattern(`s:${g}`).type}`;
        const ap = `s:${parsePattern(`s:${a}`).type}`;
        if (patternCovers(parsePattern(gp), parsePattern(ap))) return;
        const words = expand(parsePattern(ap).type);
        assert.ok(
          words.some((w) => matches(ap, 's', w) && !matches(gp, 's', w)),
          `${gp} does not cover ${ap}, yet every sample matches`,
        );
      }),
      { numRuns: 2000 },
    );
  });
});

/** Types an asked type pattern matches, up to two segments per # and a choice of names per wildcard. */
function expand(type: string): string[] {
  const parts = type === '*' ? ['*', '#'] : type.split('.');
  let words: string[][] = [[]];
  for (const p of parts) {
    const next: string[][] = [];
    for (const w of words) {
      if (p === '*') for (const n of ['a', 'x', 'q']) next.push([...w, n]);
      else if (p === '#') {
        next.push(w);
        for (const n of ['a', 'x', 'q']) next.push([...w, n]);
        for (const n of ['a', 'x', 'q']) for (const m of ['a', 'x', 'q']) next.push([...w, n, m]);
      } else next.push([...w, p]);
    }
    words = next;
  }
  return words.filter((w) => w.length > 0).map((w) => w.join('.'));
}
