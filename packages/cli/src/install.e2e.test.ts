import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestVhost, freePort, repoRoot, type TestVhost, waitFor } from '@herald/testing';

// The packages as a user gets them: built, packed with `npm pack`, installed from the tarballs into
// an empty folder outside the workspace, and run there with plain node (no tsx, no TypeScript
// loader, no `herald-source` condition).

const PACKAGES = ['core', 'client', 'hub', 'cli'] as const;
const version = (JSON.parse(readFileSync(join(repoRoot, 'packages/cli/package.json'), 'utf8')) as { version: string }).version;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never rejects. */
function run(file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, env: options.env ?? plainEnv(), timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** The environment without what makes node run sources: no NODE_OPTIONS, no HERALD_* of the parent. */
function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS;
  for (const k of Object.keys(env)) if (k.startsWith('HERALD_') || k.startsWith('npm_')) delete env[k];
  return { ...env, ...extra };
}

function ok(r: Run, what: string): string {
  assert.equal(r.code, 0, `${what} exited ${r.code}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const tsc = join(repoRoot, 'node_modules/typescript/bin/tsc');

describe('the packages installed from their tarballs, outside the workspace', { timeout: 600_000 }, () => {
  let dir: string;
  let vhost: TestVhost;
  const packed = new Map<string, { filename: string; files: string[] }>();

  before(async () => {
    vhost = await createTestVhost('install');
    dir = mkdtempSync(join(tmpdir(), 'herald-install-'));
    ok(await run(process.execPath, [join(repoRoot, 'scripts/build.mjs')], { cwd: repoRoot }), 'the build');
    const out = ok(
      await run(npm, ['pack', '--json', '--pack-destination', dir, ...PACKAGES.flatMap((p) => ['--workspace', `packages/${p}`])], {
        cwd: repoRoot,
      }),
      'npm pack',
    );
    for (const p of JSON.parse(out) as { name: string; filename: string; files: { path: string }[] }[])
      packed.set(p.name, { filename: p.filename, files: p.files.map((f) => f.path) });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'herald-install-check', private: true, version: '1.0.0' }));
    const tarballs = [...packed.values()].map((p) => join(dir, p.filename.replace(/^@/, '').replace('/', '-')));
    ok(
      await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs], {
        cwd: dir,
        timeoutMs: 300_000,
      }),
      'npm install of the tarballs',
    );
  });

  after(async () => {
    await vhost?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the tarballs hold built JavaScript, declarations and the license: no tests, no TypeScript sources', () => {
    assert.deepEqual([...packed.keys()].sort(), PACKAGES.map((p) => `@herald/${p}`).sort());
    for (const [name, { files }] of packed) {
      const sources = files.filter((f) => (f.endsWith('.ts') && !f.endsWith('.d.ts')) || f.startsWith('src/'));
      assert.deepEqual(sources, [], `${name} ships sources`);
      assert.deepEqual(
        files.filter((f) => /\.(test|suite)\.|test-kit|e2e-kit|[/]fuzz[/]|tsbuildinfo/.test(f)),
        [],
        `${name} ships tests`,
      );
      assert.ok(files.includes('LICENSE'), `${name} has no LICENSE`);
      assert.ok(files.includes('package.json'));
      assert.ok(
        files.some((f) => f.endsWith('.d.ts')),
        `${name} has no declarations`,
      );
    }
    assert.ok(packed.get('@herald/core')?.files.includes('proto/herald/v1/herald.proto'));
    assert.ok(packed.get('@herald/hub')?.files.includes('dist/store/migrations/001_init.sql'));
    assert.ok(packed.get('@herald/cli')?.files.includes('dist/main.js'));
  });

  test('npx herald --version prints the version', async () => {
    assert.equal(ok(await run(npm, ['exec', '--offline', '--', 'herald', '--version'], { cwd: dir }), 'herald --version').trim(), version);
  });

  test('npx herald hub starts the hub from the installed package; ESM and CommonJS services import the SDK and its outbox, publish and subscribe through it', async () => {
    const http = await freePort();
    const env = plainEnv({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATA_DIR: join(dir, 'data'),
      HERALD_HTTP_PORT: String(http),
      HERALD_GRPC_PORT: String(await freePort()),
    });
    const hub: ChildProcess = spawn(npm, ['exec', '--offline', '--', 'herald', 'hub'], {
      cwd: dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // A group of its own: npm exec does not pass SIGTERM on, so the group is signalled, or the hub
      // would outlive the test holding its pipes open.
      detached: true,
    });
    let output = '';
    hub.stdout?.on('data', (b: Buffer) => {
      output += b.toString();
    });
    hub.stderr?.on('data', (b: Buffer) => {
      output += b.toString();
    });
    try {
      await waitFor(
        'the installed hub answers /readyz',
        async () => (await fetch(`http://127.0.0.1:${http}/readyz`).catch(() => undefined))?.status === 200,
        60_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${output.slice(-4000)}`);
      });

      const service = (load: string, sender: string) => `${load}
const exported = { putCatalogEntries, createHubPublisher, createOutbox, createInbox, createOutboxRelay, migrateOutbox };
for (const [name, f] of Object.entries(exported)) if (typeof f !== 'function') throw new Error(name + ' is ' + typeof f + ', not a function');
console.log('exports: ' + Object.keys(exported).join(' '));
const onError = (err) => console.error('trouble: ' + err.message);
const sub = createSubscriber({ url: process.env.HERALD_AMQP_URL, selector: '${sender}:*', onError }, (event) => {
  if (event.type !== 'installed.works' || event.payload().n !== 1) throw new Error('unexpected ' + JSON.stringify(event));
  console.log('received ' + event.sender + ' ' + event.type);
  done();
});
let done;
const received = new Promise((resolve) => { done = resolve; });
const pub = createPublisher({ url: process.env.HERALD_AMQP_URL, sender: '${sender}', onError });
const main = async () => {
  await sub.queue;
  await pub.publish('installed.works', { n: 1 });
  await Promise.race([received, new Promise((_, reject) => setTimeout(() => reject(new Error('nothing received in 20 s')), 20000))]);
  await pub.close();
  await sub.close();
};
main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
`;
      const esm =
        "import { createHubPublisher, createPublisher, createSubscriber, putCatalogEntries } from '@herald/client';\n" +
        "import { createInbox, createOutbox, createOutboxRelay, migrateOutbox } from '@herald/client/outbox';";
      const cjs =
        "const { createHubPublisher, createPublisher, createSubscriber, putCatalogEntries } = require('@herald/client');\n" +
        "const { createInbox, createOutbox, createOutboxRelay, migrateOutbox } = require('@herald/client/outbox');";
      writeFileSync(join(dir, 'service.mjs'), service(esm, 'esm'));
      writeFileSync(join(dir, 'service.cjs'), service(cjs, 'cjs'));
      const serviceEnv = plainEnv({ HERALD_AMQP_URL: vhost.url });
      const exportsLine = /^exports: putCatalogEntries createHubPublisher createOutbox createInbox createOutboxRelay migrateOutbox$/m;
      const esmOut = ok(await run(process.execPath, ['service.mjs'], { cwd: dir, env: serviceEnv }), 'the ESM service');
      assert.match(esmOut, exportsLine);
      assert.match(esmOut, /received esm installed\.works/);
      const cjsOut = ok(await run(process.execPath, ['service.cjs'], { cwd: dir, env: serviceEnv }), 'the CommonJS service');
      assert.match(cjsOut, exportsLine);
      assert.match(cjsOut, /received cjs installed\.works/);
    } finally {
      const exited = new Promise((resolve) => hub.once('exit', resolve));
      if (hub.pid !== undefined) process.kill(-hub.pid, 'SIGTERM');
      await exited;
    }
  });

  test('a publishing service does not load gRPC; durable subscriptions come from @herald/client/grpc', async () => {
    const script = `import '@herald/client';
const loaded = Object.keys((await import('node:module')).createRequire(import.meta.url).cache);
const grpc = await import('@herald/client/grpc');
if (typeof grpc.subscription !== 'function') throw new Error('no subscription in @herald/client/grpc');
console.log(JSON.stringify(loaded.filter((f) => f.includes('@grpc'))));
`;
    writeFileSync(join(dir, 'entry.mjs'), script);
    assert.equal(ok(await run(process.execPath, ['entry.mjs'], { cwd: dir }), 'entry.mjs').trim(), '[]');
  });

  test('TypeScript checks a typed publisher against the installed declarations, and refuses a wrong payload', async () => {
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(repoRoot, 'node_modules/@types')],
        },
      }),
    );
    const source = (data: string) => `import { createPublisher, createSubscriber, HeraldError } from '@herald/client';
import { subscription } from '@herald/client/grpc';
type Events = { 'invoice.paid': { amount: number; currency: string }; 'invoice.voided': { reason: string } };
const pub = createPublisher<Events>({ sender: 'billing' });
await pub.publish('invoice.paid', ${data}, { signal: AbortSignal.timeout(1000) });
await using sub = createSubscriber<Events>({ selector: 'billing:*' }, (event) => {
  const n: number = event.type === 'invoice.paid' ? event.payload().amount : event.payload().reason.length;
  void n;
});
for await (const e of subscription<Events>('typed', 'billing:*')) {
  if (e.type === 'invoice.voided') console.log(e.payload().reason, e.offset);
  e.ack();
}
const err: unknown = undefined;
if (err instanceof HeraldError) console.log(err.code);
export {};
`;
    writeFileSync(join(dir, 'typed.mts'), source("{ amount: 42, currency: 'EUR' }"));
    ok(await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: dir }), 'tsc on the typed publisher');
    writeFileSync(join(dir, 'typed.mts'), source("{ amount: 'forty-two', currency: 'EUR' }"));
    const wrong = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: dir });
    assert.notEqual(wrong.code, 0, 'a wrong payload type compiled');
    assert.match(wrong.stdout, /typed\.mts.*error TS2322/s);
  });
});
