// The repositories of the hub's tables on both drivers: the same suite on PostgreSQL and on the embedded store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@herald/testing';
import { openStore } from './open.ts';
import { repositoriesSuite } from './repositories.suite.ts';

let db: TestDatabase | undefined;
repositoriesSuite(
  'PostgreSQL',
  async () => {
    db = await createTestDatabase('repositories');
    return openStore({ url: db.url });
  },
  async () => db?.drop(),
);

const dir = mkdtempSync(join(tmpdir(), 'herald-repositories-'));
repositoriesSuite(
  'embedded',
  () => openStore({ dataDir: dir }),
  async () => rmSync(dir, { recursive: true, force: true }),
);
