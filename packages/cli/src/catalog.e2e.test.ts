// `herald catalog` against a real hub process (RabbitMQ, the embedded store) that requires
// authentication: put from files, list, show, the Markdown and AsyncAPI outputs (to stdout and
// --out); who may write (a publisher of the sender) and what each user reads (the types its roles
// cover); the SDK's loadCatalogSchemas feeding a publisher that refuses a violating event.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPublisher, ErrorCodes, HeraldError, loadCatalogSchemas } from '@herald/client';
import {
  asyncApiDiagnostics,
  createTestVhost,
  freePort,
  type HeraldProcess,
  restClient,
  spawnHerald,
  startHubProcess,
  type TestVhost,
} from '@herald/testing';

const ADMIN_TOKEN = randomBytes(32).toString('base64url');
const run = randomBytes(3).toString('hex');

interface Run {
  code: number | string;
  stdout: string;
  stderr: string;
}

const SCHEMA = {
  type: 'object',
  properties: { invoiceId: { type: 'string' }, amount: { type: 'integer', minimum: 0 } },
  required: ['invoiceId', 'amount'],
};

describe('herald catalog (e2e: hub process with HERALD_AUTH=required, the CLI process)', { timeout: 180_000 }, () => {
  let vhost: TestVhost;
  let dir: string;
  let hub: HeraldProcess;
  let base: string;
  const tokens: Record<'publisher' | 'subscriber' | 'other', string> = { publisher: '', subscriber: '', other: '' };

  const herald = async (args: string[], token: string = ADMIN_TOKEN): Promise<Run> => {
    const p = spawnHerald(args, { HERALD_HUB_URL: base, HERALD_TOKEN: token });
    let stdout = '';
    p.child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const code = await p.exited;
    return { code, stdout, stderr: p.stderr() };
  };

  before(async () => {
    vhost = await createTestVhost('cli-catalog');
    dir = await mkdtemp(join(tmpdir(), 'herald-cli-catalog-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: join(dir, 'store'),
      HERALD_HTTP_PORT: String(port),
      HERALD_AUTH: 'required',
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    const admin = restClient(base, ADMIN_TOKEN);
    const user = async (name: string, roles: unknown[]) => {
      assert.equal((await admin('POST', '/api/v1/users', { name, roles })).status, 201);
      const t = await admin('POST', `/api/v1/users/${name}/tokens`, { name: 'e2e' });
      return t.json().token as string;
    };
    tokens.publisher = await user(`cat-pub-${run}`, [{ role: 'publisher', senders: ['billing'] }]);
    tokens.subscriber = await user(`cat-sub-${run}`, [{ role: 'subscriber', selector: ['shipping:*'] }]);
    tokens.other = await user(`cat-none-${run}`, [{ role: 'subscriber', selector: ['crm:*'] }]);
    await writeFile(join(dir, 'schema.json'), JSON.stringify(SCHEMA));
    await writeFile(join(dir, 'example.json'), JSON.stringify({ invoiceId: 'inv-1', amount: 10 }));
    await writeFile(join(dir, 'bad-example.json'), JSON.stringify({ invoiceId: 'inv-1' }));
    await writeFile(join(dir, 'parcel.json'), JSON.stringify({ type: 'object', required: ['parcel'] }));
  });
  after(async () => {
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await rm(dir, { recursive: true, force: true });
  });

  test('put from files (as a publisher of the sender), list, show; a bad example or file exits with one line', async () => {
    const put = await herald(
      [
        'catalog',
        'put',
        'billing',
        'invoice.paid',
        '--schema',
        join(dir, 'schema.json'),
        '--example',
        join(dir, 'example.json'),
        '--description',
        'An invoice was paid',
        '--validate',
      ],
      tokens.publisher,
    );
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout, /^billing:invoice\.paid {2}v1 {2}validated/);
    const bad = await herald([
      'catalog',
      'put',
      'billing',
      'invoice.paid',
      '--schema',
      join(dir, 'schema.json'),
      '--example',
      join(dir, 'bad-example.json'),
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /400 INVALID_REQUEST: example does not match the schema: \(root\) must have required property 'amount'/);
    const missing = await herald(['catalog', 'put', 'billing', 'invoice.paid', '--schema', join(dir, 'nope.json')]);
    assert.equal(missing.code, 2, 'a file that cannot be read is a usage error');
    assert.match(missing.stderr, /invalid --schema .*nope\.json: cannot read it/);
    // Another sender's type: the publisher may not write it.
    const foreign = await herald(['catalog', 'put', 'shipping', 'parcel.sent', '--schema', join(dir, 'parcel.json')], tokens.publisher);
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, /403 FORBIDDEN/);
    assert.equal((await herald(['catalog', 'put', 'shipping', 'parcel.sent', '--schema', join(dir, 'parcel.json')])).code, 0);
    const list = await herald(['catalog', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      list.stdout
        .trim()
        .split('\n')
        .map((l) => l.split('  ')[0]),
      ['billing:invoice.paid', 'shipping:parcel.sent'],
    );
    const show = await herald(['catalog', 'show', 'billing', 'invoice.paid', '--json']);
    assert.equal(JSON.parse(show.stdout).versions.length, 1);
  });

  test('reading: each user sees the types its roles cover; a type outside them is a 404; a user whose roles cover none reads none', async () => {
    const names = async (token: string) =>
      ((await restClient(base, token)('GET', '/api/v1/catalog')).json().items as { sender: string; type: string }[]).map(
        (t) => `${t.sender}:${t.type}`,
      );
    assert.deepEqual(await names(tokens.publisher), ['billing:invoice.paid']);
    assert.deepEqual(await names(tokens.subscriber), ['shipping:parcel.sent']);
    assert.deepEqual(await names(tokens.other), []);
    assert.equal((await restClient(base, tokens.subscriber)('GET', '/api/v1/catalog/billing/invoice.paid')).status, 404);
    assert.equal((await restClient(base)('GET', '/api/v1/catalog')).status, 401);
    assert.equal((await restClient(base, tokens.subscriber)('PUT', '/api/v1/catalog/shipping/parcel.sent', { schema: {} })).status, 403);
    assert.equal((await restClient(base, tokens.subscriber)('DELETE', '/api/v1/catalog/shipping/parcel.sent')).status, 403);
  });

  test('--format md to stdout: each event with its description, guarantee, schema, example, producers and consumers', async () => {
    const md = await herald(['catalog', '--format', 'md']);
    assert.equal(md.code, 0, md.stderr);
    assert.match(md.stdout, /^# Event catalog\n/);
    assert.match(md.stdout, /## billing:invoice\.paid\n\nAn invoice was paid\n/);
    assert.match(md.stdout, /\*\*Delivery guarantee:\*\* At least once.*Validated at ingest/);
    assert.ok(md.stdout.includes(`\`\`\`json\n${JSON.stringify(SCHEMA, null, 2)}\n\`\`\``), 'the schema as a JSON block');
    assert.match(md.stdout, /### Example\n\n```json\n\{\n {2}"invoiceId": "inv-1"/);
    assert.match(md.stdout, /### Producers\n\n_None seen\._/);
    assert.match(md.stdout, /## shipping:parcel\.sent/);
    // Who produces and consumes a type is for admins: a subscriber's Markdown has its types without them.
    const reader = await herald(['catalog', '--format', 'md'], tokens.subscriber);
    assert.equal(reader.code, 0, reader.stderr);
    assert.match(reader.stdout, /## shipping:parcel\.sent/);
    assert.doesNotMatch(reader.stdout, /### Producers|### Consumers|billing/);
  });

  test('--format asyncapi --out file: an AsyncAPI 3.0 document @asyncapi/parser accepts', async () => {
    const out = join(dir, 'asyncapi.json');
    const r = await herald(['catalog', '--format', 'asyncapi', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '', 'nothing on stdout with --out');
    const doc = JSON.parse(await readFile(out, 'utf8'));
    assert.equal(doc.asyncapi, '3.0.0');
    assert.deepEqual(Object.keys(doc.channels).sort(), ['billing.invoice.paid', 'shipping.parcel.sent']);
    assert.deepEqual(
      (await asyncApiDiagnostics(doc)).filter((d) => d.severity === 0),
      [],
    );
  });

  test('the SDK: loadCatalogSchemas with a publisher token feeds a publisher that refuses a violating event', async () => {
    const schemas = await loadCatalogSchemas({ url: base, token: tokens.publisher, sender: 'billing' });
    assert.deepEqual(Object.keys(schemas), ['invoice.paid']);
    const publisher = createPublisher({ url: vhost.url, sender: 'billing', schemas });
    try {
      await assert.rejects(
        publisher.publish('invoice.paid', { invoiceId: 'x', amount: -1 }),
        (err: unknown) => err instanceof HeraldError && err.code === ErrorCodes.SCHEMA_VIOLATION && /amount must be >= 0/.test(err.message),
      );
      await publisher.publish('invoice.paid', { invoiceId: 'x', amount: 1 });
    } finally {
      await publisher.close();
    }
    await assert.rejects(
      loadCatalogSchemas({ url: base, token: 'hrd_nonsense' }),
      (err: unknown) => err instanceof HeraldError && err.code === ErrorCodes.UNAUTHENTICATED,
    );
  });
});
