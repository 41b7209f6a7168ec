// /docs in a real browser (Debian's chromium through playwright-core) against a real hub process
// on the embedded store: the page lists the operations of /openapi.json by tag, sends a request
// from an operation's form, and shows the answer; it runs under its CSP without errors.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestVhost, freePort, type HeraldProcess, startHubProcess, type TestVhost } from '@herald/testing';
import { type Browser, chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';

describe('/docs in a browser (e2e: hub process, chromium)', { skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM} here` }, () => {
  let vhost: TestVhost;
  let hub: HeraldProcess;
  let browser: Browser;
  let base: string;
  let dir: string;

  before(async () => {
    vhost = await createTestVhost('docs-page');
    dir = mkdtempSync(join(tmpdir(), 'herald-docs-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHubProcess({ HERALD_AMQP_URL: vhost.url, HERALD_DATA_DIR: dir, HERALD_HTTP_PORT: String(port) });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  });
  after(async () => {
    await browser?.close();
    await hub?.kill('SIGTERM');
    await vhost?.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  test('lists the operations, sends one, shows its answer; no CSP violation or script error', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (m) => {
      // A 404 asked for (and the browser's favicon.ico) is logged as a failed load: not the page's error.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
    });
    await page.goto(`${base}/docs`);
    const events = page.locator('details#getEventsByOffset');
    await events.waitFor({ timeout: 15_000 });
    assert.ok((await page.locator('main > details').count()) > 20, 'every operation');
    const ready = page.locator('details#getReadyz');
    await ready.locator('summary').click();
    await ready.getByRole('button', { name: 'Send' }).click();
    await ready
      .locator('pre')
      .filter({ hasText: /^200 OK/ })
      .waitFor({ timeout: 10_000 });
    assert.match(await ready.locator('pre').last().innerText(), /"status": "ready"/);
    // A path parameter from the form, and a problem document back.
    await events.locator('summary').click();
    await events.locator('input').first().fill('999999');
    await events.getByRole('button', { name: 'Send' }).click();
    await events.locator('pre').filter({ hasText: /^404/ }).waitFor({ timeout: 10_000 });
    assert.deepEqual(errors, []);
  });
});
