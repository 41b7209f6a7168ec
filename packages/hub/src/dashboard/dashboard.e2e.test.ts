// The dashboard in a real browser (Debian's chromium through playwright-core) against a real hub
// process (router mode, PostgreSQL, RabbitMQ): the overview's rates move while events are
// published; a flow is paused from the page, its held count grows, it is resumed; a replay reaches
// done; an exchange made from the page delivers exactly its selector's events to an AMQP queue; a
// subscription whose consumer is cut off shows sleeping. With authentication on, the page asks for
// a token and then shows the overview. Screenshots of each page go to test-output/dashboard/.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { INGEST_EXCHANGE } from '@herald/core';
import {
  createRawPublisher,
  createTestDatabase,
  createTestVhost,
  freePort,
  type HeraldProcess,
  makeEvents,
  type RawPublisher,
  repoRoot,
  startHubProcess,
  type TestDatabase,
  type TestVhost,
  waitFor,
} from '@herald/testing';
import amqp from 'amqplib';
import { type Browser, chromium, type Page } from 'playwright-core';

const OUT = join(repoRoot, 'test-output', 'dashboard');
const run = randomBytes(3).toString('hex');

async function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
}

describe('dashboard (e2e: hub process, chromium)', { timeout: 180_000 }, () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: HeraldProcess;
  let base: string;
  let browser: Browser;
  let page: Page;
  let pub: RawPublisher;
  let publishing = true;
  let loop: Promise<void>;
  const errors: string[] = [];

  const shot = (name: string) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
  const go = async (name: string) => {
    await page.click(`[data-testid="nav-${name}"]`);
    await page.waitForSelector(`main[data-page="${name}"]`);
  };

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    vhost = await createTestVhost('dashboard');
    db = await createTestDatabase('dashboard');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_MODE: 'router',
      HERALD_HTTP_PORT: String(port),
    });
    pub = await createRawPublisher(vhost.url);
    // A steady trickle of events of four senders × three types, so rates move while the test runs.
    loop = (async () => {
      while (publishing) {
        await pub.publishMany(INGEST_EXCHANGE, makeEvents(12), 12);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    browser = await launch();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
  });
  after(async () => {
    publishing = false;
    await loop;
    await pub?.close();
    await browser?.close();
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  test('the page is served with a strict CSP and its libraries from the hub', async () => {
    const res = await fetch(`${base}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    const lib = await fetch(`${base}/dashboard/vendor/hooks.mjs`);
    assert.equal(lib.status, 200);
    assert.doesNotMatch(await lib.text(), /from\s*"preact"/);
    assert.equal((await fetch(`${base}/dashboard/nothing.js`)).status, 404);
  });

  test('the overview: rates move while events are published, flows listed', async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector('[data-testid="stream-status"]:text("live")');
    await waitFor('a rate in above 0', async () => Number(await page.textContent('[data-testid="rate-in"]')) > 0, 30_000, 200);
    const first = Number(await page.textContent('[data-testid="total-in"]'));
    await waitFor('the total in grows', async () => Number(await page.textContent('[data-testid="total-in"]')) > first, 30_000, 200);
    await page.waitForSelector('[data-flow="billing:invoice.paid"]');
    await shot('overview');
  });

  test('a flow paused from the page: its held count grows, then it is resumed', async () => {
    await go('pauses');
    await page.fill('[data-testid="pause-form"] input[name="selector"]', 'billing:*');
    await page.fill('[data-testid="pause-form"] input[name="ttl"]', '120');
    await page.fill('[data-testid="pause-form"] input[name="reason"]', 'dashboard test');
    await page.click('[data-testid="pause-form"] button[type="submit"]');
    const held = () => page.textContent('[data-pause="billing:*"] [data-testid="held"]').then(Number);
    await waitFor('held events', async () => (await held().catch(() => 0)) > 0, 30_000, 200);
    const before = await held();
    await waitFor('the held count grows', async () => (await held()) > before, 30_000, 200);
    await shot('pauses');
    await go('overview');
    await page.waitForSelector('[data-flow="billing:invoice.paid"] .badge.paused');
    await shot('overview-paused');
    await go('pauses');
    await page.click('[data-pause="billing:*"] [data-testid="resume"]');
    await waitFor('the pause gone', async () => (await page.$('[data-pause="billing:*"]')) === null, 30_000, 200);
  });

  test('a replay started from the page reaches done', async () => {
    await go('replays');
    await page.fill('[data-testid="replay-form"] input[name="selector"]', 'crm:user.created');
    await page.fill('[data-testid="replay-form"] input[name="from"]', '5');
    await page.click('[data-testid="replay-form"] button[type="submit"]');
    await page.waitForSelector('[data-testid="replay-status"]:text("done")', { timeout: 30_000 });
    assert.equal(await page.textContent('[data-testid="replay-count"]'), '5');
    await shot('replays');
  });

  test('an exchange made from the page: a queue bound to it receives exactly the selector’s events', async () => {
    const name = `dash.feed-${run}`;
    await go('exchanges');
    await page.fill('[data-testid="exchange-form"] input[name="name"]', name);
    await page.fill('[data-testid="exchange-form"] input[name="selector"]', 'shipping:parcel.*');
    await page.click('[data-testid="exchange-form"] button[type="submit"]');
    await page.waitForSelector(`[data-exchange="${name}"]`);
    await shot('exchanges');
    const conn = await amqp.connect(vhost.url);
    const ch = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, name, '#');
    const keys: string[] = [];
    await ch.consume(q.queue, (m) => m && keys.push(m.fields.routingKey), { noAck: true });
    await waitFor('shipping events through the exchange', () => keys.length >= 20, 30_000, 100);
    await ch.close();
    await conn.close();
    assert.deepEqual([...new Set(keys)], ['shipping.parcel.sent'], 'only the selector’s events');
  });

  test('a subscription whose consumer is cut off shows sleeping', async () => {
    const sub = `dash-sub-${run}`;
    await go('subscriptions');
    await page.fill('[data-testid="subscription-form"] input[name="name"]', sub);
    await page.fill('[data-testid="subscription-form"] input[name="selector"]', 'auth:*');
    await page.click('[data-testid="subscription-form"] button[type="submit"]');
    await page.waitForSelector(`[data-subscription="${sub}"]`);
    // A consumer over SSE, on a raw socket the test can break.
    const req = httpRequest(`${base}/api/v1/subscriptions/${sub}/stream`);
    req.on('error', () => undefined);
    req.on('response', (res) => res.resume());
    req.end();
    const state = `[data-subscription="${sub}"] [data-testid="state"]`;
    await page.waitForSelector(`${state}:text("active")`, { timeout: 30_000 });
    req.destroy();
    await page.waitForSelector(`${state}:text("sleeping")`, { timeout: 30_000 });
    assert.match((await page.textContent(`[data-subscription="${sub}"]`)) ?? '', /disconnected/);
    await shot('subscriptions');
    await go('receivers');
    await page.waitForSelector('[data-testid="receivers"] progress');
    await shot('receivers');
  });

  test('the other pages: users, events with one opened, dead letters', async () => {
    await go('users');
    await shot('users');
    await go('events');
    await page.fill('[data-testid="events-form"] input[name="selector"]', 'billing:invoice.paid');
    await page.click('[data-testid="events-form"] button[type="submit"]');
    await page.click('[data-testid="events"] tbody tr.clickable');
    await page.waitForSelector('[data-testid="event-body"]:text("pad")');
    await shot('events');
    await go('dead-letters');
    await page.click('main form button[type="submit"]');
    await page.waitForSelector('[data-testid="dead-letters"], main:text("Not available yet")');
    await shot('dead-letters');
    assert.deepEqual(
      errors.filter((e) => !/status of 40[134]/.test(e)),
      [],
      'no script errors or CSP violations',
    );
  });
});

describe('dashboard with authentication on (e2e)', { timeout: 120_000 }, () => {
  const token = randomBytes(32).toString('base64url');
  let vhost: TestVhost;
  let db: TestDatabase;
  let hub: HeraldProcess;
  let browser: Browser;
  let port = 0;

  before(async () => {
    vhost = await createTestVhost('dashboard-auth');
    db = await createTestDatabase('dashboard_auth');
    port = await freePort();
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_MODE: 'router',
      HERALD_HTTP_PORT: String(port),
      HERALD_AUTH: 'required',
      HERALD_ADMIN_TOKEN: token,
    });
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await hub?.kill('SIGKILL');
    await vhost?.delete();
    await db?.drop();
  });

  test('the page asks for a token and, given it, shows the overview', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForSelector('[data-testid="token-form"]');
    await page.screenshot({ path: join(OUT, 'token-prompt.png') });
    await page.fill('[data-testid="token-form"] input[name="token"]', token);
    await page.click('[data-testid="token-form"] button[type="submit"]');
    await page.waitForSelector('[data-testid="stream-status"]:text("live")');
    await page.waitForSelector('[data-testid="flows"]');
    assert.equal(await page.$('[data-testid="token-form"]'), null);
  });
});
