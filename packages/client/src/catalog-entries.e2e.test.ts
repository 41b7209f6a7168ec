// putCatalogEntries against a hub process (router mode, the embedded store): entries are kept with
// their versions, putting them again keeps them, two services putting the same new type at once
// both succeed; a refused entry and an unreachable hub reject with the problem's code.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ErrorCodes, HeraldError } from '@herald/core';
import { createTestVhost, freePort, type HeraldProcess, restClient, startHubProcess, type TestVhost } from '@herald/testing';
import { type CatalogEntry, putCatalogEntries } from './index.ts';

const SCHEMA = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };

describe('putCatalogEntries (e2e: hub process)', { timeout: 90_000 }, () => {
  let vhost: TestVhost;
  let dir: string;
  let hub: HeraldProcess;
  let url: string;

  before(async () => {
    vhost = await createTestVhost('client-catalog');
    dir = await mkdtemp(join(tmpdir(), 'herald-client-catalog-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: join(dir, 'store'),
      HERALD_MODE: 'router',
      HERALD_HTTP_PORT: String(port),
    });
  });
  after(async () => {
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await rm(dir, { recursive: true, force: true });
  });

  test('puts every entry; the same again keeps the versions, a changed schema is the next', async () => {
    const entries: CatalogEntry[] = [
      { sender: 'shop', type: 'cart.filled', schema: SCHEMA, description: 'A cart was filled', example: { n: 3 }, validate: true },
      { sender: 'shop', type: 'cart.emptied', schema: SCHEMA },
    ];
    assert.deepEqual(await putCatalogEntries(entries, { url }), [
      { sender: 'shop', type: 'cart.filled', version: 1 },
      { sender: 'shop', type: 'cart.emptied', version: 1 },
    ]);
    const filled = (await restClient(url)('GET', '/api/v1/catalog/shop/cart.filled')).json();
    assert.equal(filled.description, 'A cart was filled');
    assert.deepEqual(filled.example, { n: 3 });
    assert.equal(filled.validate, true);
    assert.deepEqual(
      (await putCatalogEntries(entries, { url })).map((v) => v.version),
      [1, 1],
    );
    const changed = await putCatalogEntries([{ ...(entries[1] as CatalogEntry), schema: { ...SCHEMA, required: [] } }], { url });
    assert.deepEqual(changed, [{ sender: 'shop', type: 'cart.emptied', version: 2 }]);
  });

  test('two services putting the same new type at once: both resolve, with version 1', async () => {
    const entry: CatalogEntry[] = [{ sender: 'shop', type: 'cart.raced', schema: SCHEMA }];
    const all = await Promise.all(Array.from({ length: 4 }, () => putCatalogEntries(entry, { url })));
    assert.deepEqual(
      all.map((r) => r[0]?.version),
      [1, 1, 1, 1],
    );
  });

  test('a refused entry rejects with the problem code and field; the ones before it are kept', async () => {
    await assert.rejects(
      putCatalogEntries(
        [
          { sender: 'shop', type: 'cart.kept', schema: SCHEMA },
          { sender: 'shop', type: 'cart.bad', schema: { type: 'object', minimumLength: 3 } },
        ],
        { url },
      ),
      (err: unknown) =>
        err instanceof HeraldError &&
        err.code === ErrorCodes.INVALID_REQUEST &&
        err.details?.parameter === 'schema' &&
        err.details?.type === 'cart.bad' &&
        /shop:cart\.bad.*400/.test(err.message),
    );
    assert.equal((await restClient(url)('GET', '/api/v1/catalog/shop/cart.kept')).status, 200);
  });

  test('an unreachable hub: UNAVAILABLE, saying why', async () => {
    await assert.rejects(
      putCatalogEntries([{ sender: 'shop', type: 'cart.lost', schema: SCHEMA }], { url: `http://127.0.0.1:${await freePort()}` }),
      (err: unknown) => err instanceof HeraldError && err.code === ErrorCodes.UNAVAILABLE && /ECONNREFUSED/.test(err.message),
    );
  });
});
