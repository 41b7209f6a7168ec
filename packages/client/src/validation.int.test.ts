// Validation before publishing, on a real RabbitMQ: an event whose data does not match its type's
// JSON Schema (or a `validate` function) rejects with SCHEMA_VIOLATION and never reaches the
// broker; the next valid one goes through. Bad schemas and options are refused at creation.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, HeraldError, INGEST_EXCHANGE } from '@herald/core';
import { createTestVhost, repoRoot, SOURCE_NODE_ARGS, type TestVhost } from '@herald/testing';
import { type Channel, type ChannelModel, type ConsumeMessage, connect } from 'amqplib';
import { createPublisher, declareTopology, schemaValidator } from './index.ts';

let vhost: TestVhost;
let conn: ChannelModel;
let ch: Channel;

before(async () => {
  vhost = await createTestVhost('client-validate');
  await declareTopology({ url: vhost.url, mode: 'archive' });
  conn = await connect(vhost.url);
  ch = await conn.createChannel();
});

after(async () => {
  await conn?.close().catch(() => undefined);
  await vhost?.delete();
});

/** Every message published to herald.ingest with `bindingKey`, as it arrives. */
async function ingestQueue(bindingKey: string): Promise<ConsumeMessage[]> {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, INGEST_EXCHANGE, bindingKey);
  const got: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => m && got.push(m), { noAck: true });
  return got;
}

const violation = (mentions: RegExp) => (err: unknown) => {
  assert.ok(err instanceof HeraldError, String(err));
  assert.equal(err.code, ErrorCodes.SCHEMA_VIOLATION);
  assert.match(err.message, mentions);
  return true;
};

const INVOICE = {
  type: 'object',
  properties: { invoiceId: { type: 'string' }, amount: { type: 'integer', minimum: 0 }, email: { type: 'string', format: 'email' } },
  required: ['invoiceId', 'amount'],
};

describe('publisher validation', () => {
  test('schemas: a violating event rejects with SCHEMA_VIOLATION before anything is sent; a valid one goes', async () => {
    const got = await ingestQueue('billing.#');
    const publisher = createPublisher({ url: vhost.url, sender: 'billing', schemas: { 'invoice.paid': INVOICE } });
    try {
      await assert.rejects(
        publisher.publish('invoice.paid', { invoiceId: 'a', amount: -1 }),
        violation(/billing:invoice\.paid .*\/amount must be >= 0/),
      );
      await assert.rejects(
        publisher.publish('invoice.paid', { invoiceId: 'a', amount: 1, email: 'nope' }),
        violation(/must match format "email"/),
      );
      await assert.rejects(publisher.publish('invoice.paid', Buffer.from('raw bytes')), violation(/not JSON/));
      const ok = await publisher.publish('invoice.paid', { invoiceId: 'b', amount: 2 });
      // A type without a schema is not checked.
      const other = await publisher.publish('invoice.voided', 'anything');
      await publisher.flush();
      const deadline = Date.now() + 10_000;
      while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        got.map((m) => m.properties.messageId),
        [ok.id, other.id],
      );
      assert.equal(got.length, 2, 'only the valid events reached RabbitMQ');
      assert.deepEqual(JSON.parse(got[0]!.content.toString()), { invoiceId: 'b', amount: 2 });
    } finally {
      await publisher.close();
    }
  });

  test('validate: a function that returns a reason refuses the event; one that throws too', async () => {
    const publisher = createPublisher({
      url: vhost.url,
      sender: 'billing',
      validate: (type, data) => {
        if (type === 'boom') throw new Error('kaput');
        return (data as { ok?: boolean }).ok ? undefined : 'ok must be true';
      },
    });
    try {
      await assert.rejects(publisher.publish('check.me', { ok: false }), violation(/ok must be true/));
      await assert.rejects(publisher.publish('boom', { ok: true }), violation(/the validator threw: kaput/));
      await publisher.publish('check.me', { ok: true });
    } finally {
      await publisher.close();
    }
  });

  test('bad options are refused at creation: a schema that does not compile, validate not a function', () => {
    assert.throws(
      () => createPublisher({ url: vhost.url, sender: 'billing', schemas: { 'x.y': { type: 'objekt' } } }),
      (err: unknown) => err instanceof HeraldError && err.code === ErrorCodes.INVALID_CONFIG && /schemas\.x\.y/.test(err.message),
    );
    assert.throws(
      () => createPublisher({ url: vhost.url, sender: 'billing', validate: 'yes' as never }),
      (err: unknown) => err instanceof HeraldError && err.code === ErrorCodes.INVALID_CONFIG && /validate/.test(err.message),
    );
    assert.equal(schemaValidator({ a: true })('a', 1), undefined);
    assert.match(schemaValidator({ a: false })('a', 1) ?? '', /boolean schema is false/);
  });

  test('without ajv installed: schemas is refused at creation with INVALID_CONFIG saying what to install; validate needs no ajv', () => {
    // ajv is installed in this workspace: the child process hides it from module resolution.
    const dir = mkdtempSync(join(tmpdir(), 'herald-no-ajv-'));
    try {
      writeFileSync(
        join(dir, 'hide-ajv.cjs'),
        `const Module = require('node:module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'ajv' || request === 'ajv-formats') {
    const err = new Error("Cannot find module '" + request + "'");
    err.code = 'MODULE_NOT_FOUND';
    throw err;
  }
  return resolve.call(this, request, ...rest);
};`,
      );
      const index = fileURLToPath(new URL('./index.ts', import.meta.url));
      writeFileSync(
        join(dir, 'main.mts'),
        `import { createPublisher, normalizePublisherOptions } from ${JSON.stringify(index)};
let out;
try { createPublisher({ sender: 'billing', schemas: { 'a.b': { type: 'object' } } }); out = { created: true }; }
catch (err) { out = { code: err.code, message: err.message }; }
out.validateAlone = typeof normalizePublisherOptions({ sender: 'billing', validate: () => undefined }).check;
console.log(JSON.stringify(out));`,
      );
      const r = spawnSync(process.execPath, ['--require', join(dir, 'hide-ajv.cjs'), ...SOURCE_NODE_ARGS, join(dir, 'main.mts')], {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 60_000,
      });
      const line = r.stdout.trim().split('\n').pop() ?? '';
      assert.ok(line.startsWith('{'), `${r.stdout}\n${r.stderr}`);
      const out = JSON.parse(line) as { code?: string; message?: string; validateAlone?: string };
      assert.equal(out.validateAlone, 'function', 'a validate function alone loads no ajv');
      assert.equal(out.code, ErrorCodes.INVALID_CONFIG);
      assert.match(out.message ?? '', /invalid option schemas: validating against JSON Schemas needs the ajv package \(npm install ajv@8/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
