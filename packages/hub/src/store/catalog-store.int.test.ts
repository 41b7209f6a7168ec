// The catalog's repository on both drivers: the same suite on PostgreSQL and on the embedded store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@herald/testing';
import { catalogStoreSuite } from './catalog-store.suite.ts';
import { openStore } from './open.ts';

let db: TestDatabase | undefined;
catalogStoreSuite(
  'PostgreSQL',
  async () => {
    db = await createTestDatabase('catalog');
    return openStore({ url: db.url });
  },
  async () => db?.drop(),
);

const dir = mkdtempSync(join(tmpdir(), 'herald-catalog-'));
catalogStoreSuite(
  'embedded',
  () => openStore({ dataDir: dir }),
  async () => rmSync(dir, { recursive: true, force: true }),
);
