import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ErrorCodes, hasCode } from '@herald/core';
import { CATALOG_LIMITS } from '../catalog/index.ts';
import { BUDGETS, CAPS, capReached, createCap, FIXED_CAPS } from './caps.ts';

test('a cap refuses the slot past its max with LIMIT_EXCEEDED naming it and its setting; a slot given back lets the next in', () => {
  const cap = createCap('sseStreams', 2);
  const a = cap.take();
  cap.take();
  assert.equal(cap.used, 2);
  assert.throws(
    () => cap.take(),
    (err: unknown) =>
      hasCode(err, ErrorCodes.LIMIT_EXCEEDED) &&
      err.message === 'too many concurrent SSE streams: this hub holds at most 2 at once (HERALD_MAX_SSE_STREAMS); retry later' &&
      err.details?.setting === 'HERALD_MAX_SSE_STREAMS' &&
      err.details?.max === 2,
  );
  a();
  a(); // giving back twice frees one slot, not two
  assert.equal(cap.used, 1);
  cap.take();
  assert.throws(
    () => cap.take(),
    (err: unknown) => hasCode(err, ErrorCodes.LIMIT_EXCEEDED),
  );
});

test('slots held elsewhere count: a creation in flight and the running ones share the cap', () => {
  let running = 1;
  const cap = createCap('replays', 2, () => running);
  const creating = cap.take();
  assert.throws(
    () => cap.take(),
    (err: unknown) => hasCode(err, ErrorCodes.LIMIT_EXCEEDED),
  );
  running = 2; // the creation is running now …
  creating(); // … and gives its slot back: still full
  assert.throws(
    () => cap.take(),
    (err: unknown) => hasCode(err, ErrorCodes.LIMIT_EXCEEDED),
  );
  running = 1;
  cap.take();
});

test('the default is the table’s; each refusal says what to do', () => {
  for (const name of Object.keys(CAPS) as (keyof typeof CAPS)[]) {
    assert.equal(createCap(name).max, CAPS[name].default, name);
    assert.match(capReached(name, 1).message, new RegExp(`\\(${CAPS[name].setting}\\); \\S`), name);
  }
});

test('docs/reliability.md lists every cap with its setting and default', () => {
  const doc = readFileSync(new URL('../../../../docs/reliability.md', import.meta.url), 'utf8');
  for (const cap of Object.values(CAPS)) {
    const row = doc.split('\n').find((line) => line.startsWith('|') && line.includes(`\`${cap.setting}\``));
    assert.ok(row, `docs/reliability.md should have a row for ${cap.setting}`);
    assert.ok(row.includes(cap.default.toLocaleString('en-US')), `${cap.setting}: default ${cap.default} in ${row}`);
  }
});

test('the fixed caps are the catalog’s bounds, and docs/reliability.md lists each with its value', () => {
  assert.deepEqual(
    [CATALOG_LIMITS.maxVersions, CATALOG_LIMITS.maxEntries, CATALOG_LIMITS.maxValidated, CATALOG_LIMITS.maxObservedTypes],
    [100, 10_000, 1000, 100_000],
  );
  assert.deepEqual(
    [FIXED_CAPS.catalogVersions.max, FIXED_CAPS.catalogEntries.max, FIXED_CAPS.catalogValidated.max, FIXED_CAPS.catalogObservedTypes.max],
    [CATALOG_LIMITS.maxVersions, CATALOG_LIMITS.maxEntries, CATALOG_LIMITS.maxValidated, CATALOG_LIMITS.maxObservedTypes],
  );
  const doc = readFileSync(new URL('../../../../docs/reliability.md', import.meta.url), 'utf8');
  for (const [name, cap] of Object.entries(FIXED_CAPS)) {
    const row = doc.split('\n').find((line) => line.startsWith('|') && line.includes(`\`FIXED_CAPS.${name}\``));
    assert.ok(row, `docs/reliability.md should have a row for FIXED_CAPS.${name}`);
    assert.ok(row.includes(` ${cap.max.toLocaleString('en-US')} `), `${name}: ${cap.max} in ${row}`);
  }
});

test('docs/reliability.md lists every budget of the direct publish path with its setting and default', () => {
  const doc = readFileSync(new URL('../../../../docs/reliability.md', import.meta.url), 'utf8');
  for (const budget of Object.values(BUDGETS)) {
    const row = doc.split('\n').find((line) => line.startsWith('|') && line.includes(`\`${budget.setting}\``));
    assert.ok(row, `docs/reliability.md should have a row for ${budget.setting}`);
    assert.ok(row.includes(` ${budget.default.toLocaleString('en-US')} `), `${budget.setting}: default ${budget.default} in ${row}`);
  }
});
