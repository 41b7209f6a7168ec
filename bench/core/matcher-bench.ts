/**
 * The in-memory selector matcher against adversarial selectors: time per match, in µs, for types of
 * 40 segments that almost match. `node --import tsx bench/core/matcher-bench.ts [matches]`
 */
import { compileMatcher, LIMITS } from '../../packages/core/src/index.ts';

const n = Number(process.argv[2] ?? 20_000);
const typeOf = (segments: number, last = 'b') => [...Array.from({ length: segments - 1 }, () => 'a'), last].join('.');
const alternating = (k: number) => Array.from({ length: k }, (_, i) => (i % 2 === 0 ? '#' : '*')).join('.');

const maxSegments = LIMITS.selectorWildcardSegments.value;
const cases: { name: string; selector: string[]; types: string[] }[] = [
  { name: 'one wildcard pattern *:invoice.*', selector: ['*:invoice.*'], types: ['invoice.paid', 'order.paid'] },
  {
    name: '#.*.#.*… (63 segments) against 40-segment types',
    selector: [`*:${alternating(63)}.c`],
    types: [typeOf(40), typeOf(40, 'c')],
  },
  {
    name: `#.a.a.a… patterns filling the limit (${maxSegments} wildcard segments) against a.a.a… types`,
    selector: Array.from({ length: maxSegments / 64 }, (_, i) => `s${i}:#.${Array.from({ length: 30 }, () => 'a').join('.')}.b`).concat(
      Array.from({ length: maxSegments / 64 }, (_, i) => `*:#.${Array.from({ length: 30 }, () => 'a').join('.')}.c${i}`),
    ),
    types: [typeOf(40, 'a'), typeOf(40, 'b')],
  },
  {
    name: `100 patterns, * and # mixed, at the limits`,
    selector: Array.from({ length: LIMITS.selectorPatterns.value }, (_, i) => `*:${i % 2 ? '#' : '*'}.a.*.#.x${i}`),
    types: [typeOf(40), typeOf(40, 'x7')],
  },
];

console.log(`matches per case: ${n}`);
for (const c of cases) {
  const match = compileMatcher(c.selector);
  for (let i = 0; i < 2000; i++) match('s0', c.types[i % c.types.length] as string);
  const t0 = process.hrtime.bigint();
  let hits = 0;
  for (let i = 0; i < n; i++) if (match('s0', c.types[i % c.types.length] as string)) hits++;
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  console.log(`${us.toFixed(3).padStart(8)} µs/match  ${c.name}  (hits ${hits})`);
}
