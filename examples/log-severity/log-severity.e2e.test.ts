// Runs the log-severity example as a user would (`npm run example -- log-severity`, through
// scripts/example.mjs) against a real router hub process, and checks what it prints.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestVhost, type RouterHub, restClient, startRouterHub, waitFor } from '@herald/testing';
import { runExample as run } from '../test-kit.ts';

/** The hub's REST API, where the example puts its catalog entries. */
let hubUrl = '';
const runExample = (args: string[], amqpUrl: string) => run('log-severity', args, { HERALD_AMQP_URL: amqpUrl, HERALD_HUB_URL: hubUrl });

interface Report {
  sender: string;
  published: Record<string, number>;
  consumers: Record<string, { selector: string[]; counts: Record<string, number>; duplicates: number; foreign: number }>;
  ok: boolean;
}

const prefix = () => `t${randomBytes(3).toString('hex')}-`;

describe('examples/log-severity against a router hub', { timeout: 170_000 }, () => {
  let fx: RouterHub;

  before(async () => {
    fx = await startRouterHub('logsev');
    hubUrl = fx.http;
  });
  after(async () => {
    await fx?.close();
  });

  test('--json: each of the four consumers counts exactly the types its selector matches', async () => {
    const p = prefix();
    const run = await runExample(
      ['--json', '--prefix', p, '--debug', '13', '--info', '7', '--critical', '5', '--error', '3'],
      fx.vhost.url,
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const report = JSON.parse(run.stdout.trim()) as Report;
    assert.equal(report.sender, `${p}app`);
    assert.deepEqual(report.published, { 'log.debug': 13, 'log.info': 7, 'log.critical': 5, 'log.error': 3 });
    const counts = Object.fromEntries(Object.entries(report.consumers).map(([name, c]) => [name, c.counts]));
    assert.deepEqual(counts, {
      all: { 'log.debug': 13, 'log.info': 7, 'log.critical': 5, 'log.error': 3 },
      'debug-info': { 'log.debug': 13, 'log.info': 7 },
      critical: { 'log.critical': 5 },
      error: { 'log.error': 3 },
    });
    assert.deepEqual(report.consumers['debug-info']?.selector, [`${p}app:log.debug`, `${p}app:log.info`]);
    for (const c of Object.values(report.consumers)) assert.equal(c.foreign, 0);
    assert.equal(report.ok, true);
  });

  test('the run puts its four types in the hub catalog, validated, and the hub observes the logger producing them', async () => {
    const p = prefix();
    const run = await runExample(['--json', '--prefix', p, '--debug', '2', '--info', '0', '--critical', '0', '--error', '0'], fx.vhost.url);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const call = restClient(fx.http);
    for (const type of ['log.debug', 'log.info', 'log.critical', 'log.error']) {
      const t = (await call('GET', `/api/v1/catalog/${p}app/${type}`)).json();
      assert.equal(t.version, 1, type);
      assert.equal(t.validate, true, type);
      assert.match(String(t.description), /log record/, type);
    }
    let producers: { sender: string; events: number }[] = [];
    await waitFor(
      'the logger observed as the producer of log.debug',
      async () => {
        producers = (await call('GET', `/api/v1/catalog/${p}app/log.debug`)).json().producers as typeof producers;
        // Counts are written every 5 s: the two records may land in two writes.
        return (producers[0]?.events ?? 0) >= 2;
      },
      30_000,
      250,
    );
    assert.deepEqual(
      producers.map((x) => [x.sender, x.events]),
      [[`${p}app`, 2]],
    );
  });

  test('the default run prints the table of counts per consumer and type', async () => {
    const run = await runExample(['--prefix', prefix()], fx.vhost.url);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const row = (name: string) => run.stdout.split('\n').find((l) => l.startsWith(`${name} `)) ?? '';
    // Defaults: debug 40, info 30, critical 20, error 10; columns log.debug log.info log.critical log.error total.
    const numbers = (name: string) => row(name).split(/\s+/).slice(1, 6).map(Number);
    assert.deepEqual(numbers('all'), [40, 30, 20, 10, 100], run.stdout);
    assert.deepEqual(numbers('debug-info'), [40, 30, 0, 0, 70], run.stdout);
    assert.deepEqual(numbers('critical'), [0, 0, 20, 0, 20], run.stdout);
    assert.deepEqual(numbers('error'), [0, 0, 0, 10, 10], run.stdout);
    assert.match(run.stdout, /every consumer received exactly what its selector matches/);
  });

  test('two runs at once on the same sender count only their own records', async () => {
    const p = prefix();
    const [a, b] = await Promise.all([
      runExample(['--json', '--prefix', p, '--debug', '20', '--info', '0', '--critical', '0', '--error', '20'], fx.vhost.url),
      runExample(['--json', '--prefix', p, '--debug', '20', '--info', '0', '--critical', '0', '--error', '20'], fx.vhost.url),
    ]);
    for (const run of [a, b]) {
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const report = JSON.parse(run.stdout.trim()) as Report;
      assert.deepEqual(report.consumers.all?.counts, { 'log.debug': 20, 'log.error': 20 });
      assert.deepEqual(report.consumers['debug-info']?.counts, { 'log.debug': 20 });
      assert.deepEqual(report.consumers.critical?.counts, {});
    }
  });

  test('without a hub it fails loudly and exits 1; a bad count is refused with the usage', async () => {
    const vhost = await createTestVhost('logsev-nohub');
    try {
      const run = await runExample(['--prefix', prefix(), '--timeout', '20000'], vhost.url);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, /^log-severity: .*herald\.ingest/m);
    } finally {
      await vhost.delete();
    }
    const bad = await runExample(['--debug', '-1'], fx.vhost.url);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /usage: npm run example -- log-severity/);
  });
});
