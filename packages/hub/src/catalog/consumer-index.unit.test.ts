import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileMatcher, parseSelector } from '@herald/core';
import { ConsumerIndex } from './consumer-index.ts';
import type { ConsumerSource } from './observer.ts';

/** The consumers the index finds for a type, by name, sorted. */
function found(index: ConsumerIndex, sender: string, type: string): string[] {
  const names: string[] = [];
  for (const c of index.consumersOf(sender, type)) if (c !== undefined) names.push(c.name);
  return names.sort();
}

test('the index finds exactly the consumers whose selector matches, each once, as the matcher says', () => {
  const selectors = [
    '*:*',
    'billing:*',
    '*:invoice.paid',
    'billing:invoice.paid',
    'billing:invoice.*',
    '*:invoice.#',
    '*:#.paid',
    'billing:#',
    '*:*.paid',
    'crm:contact.added, billing:*, *:invoice.paid',
    'shipping:parcel.*.late',
    '*:order.#.done',
  ];
  const sources: ConsumerSource[] = selectors.map((s, i) => ({ kind: 'subscription', name: `c${i}`, selector: parseSelector(s) }));
  const index = new ConsumerIndex(sources);
  for (let i = 0; i < sources.length; i++) index.add(i);
  const types: [string, string][] = [
    ['billing', 'invoice.paid'],
    ['billing', 'invoice.voided'],
    ['billing', 'invoice'],
    ['crm', 'contact.added'],
    ['crm', 'invoice.paid.late'],
    ['shipping', 'parcel.sent.late'],
    ['shipping', 'parcel.late'],
    ['orders', 'order.done'],
    ['orders', 'order.a.b.done'],
    ['orders', 'paid'],
  ];
  for (const [sender, type] of types) {
    const expected = sources
      .filter((c) => compileMatcher(c.selector)(sender, type))
      .map((c) => c.name)
      .sort();
    assert.deepEqual(found(index, sender, type), expected, `${sender}:${type}`);
  }
});

test('consumersOf pauses every PAUSE_EVERY candidates; matchers carry over to the next index', () => {
  const sources: ConsumerSource[] = Array.from({ length: 1000 }, (_, i) => ({
    kind: 'exchange',
    name: `x${i}`,
    selector: parseSelector(`*:never${i}.*`),
  }));
  const first = new ConsumerIndex(sources);
  for (let i = 0; i < sources.length; i++) first.add(i);
  let pauses = 0;
  // `*:never<i>.*` sits under its first segment: a type of another first segment tests none of them.
  for (const c of first.consumersOf('a', 'b.c')) if (c === undefined) pauses++;
  assert.equal(pauses, 0);
  const all: ConsumerSource[] = sources.map((c, i) => ({ ...c, selector: parseSelector(`*:*.never${i}`) }));
  const wide = new ConsumerIndex(all);
  for (let i = 0; i < all.length; i++) wide.add(i);
  for (const c of wide.consumersOf('a', 'b.c')) if (c === undefined) pauses++;
  assert.equal(pauses, Math.floor(1000 / 256));
  const next = new ConsumerIndex(sources, first.matchers);
  next.add(0);
  assert.equal(next.matchers.get('*:never0.*'), first.matchers.get('*:never0.*'));
});
