import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStore } from './open.ts';
import { storeSuite } from './store.suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'herald-embedded-'));
storeSuite(
  'embedded',
  () => openStore({ dataDir: dir }),
  async () => rmSync(dir, { recursive: true, force: true }),
);

test('a second process cannot open the same embedded store; a stale lock is taken over; closing unlocks', async () => {
  const d = mkdtempSync(join(tmpdir(), 'herald-lock-'));
  try {
    const { writeFileSync } = await import('node:fs');
    // pid 1 always runs: the directory counts as in use.
    writeFileSync(join(d, 'herald.lock'), '1');
    await assert.rejects(openStore({ dataDir: d }), /in use by process 1/);
    // A pid that cannot exist: the lock is stale and taken over.
    writeFileSync(join(d, 'herald.lock'), '2147483646');
    const s = await openStore({ dataDir: d });
    await s.migrate();
    assert.equal(await s.headOffset(), 0n);
    // Not twice in one process either, while it is open.
    await assert.rejects(openStore({ dataDir: d }), /already open in this process/);
    await s.close();
    await s.close(); // idempotent
    assert.equal(existsSync(join(d, 'herald.lock')), false, 'the lock file goes on close');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
