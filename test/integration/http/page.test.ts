import assert from 'node:assert/strict';
import { access, constants, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import {
  postMessage,
  request,
  startServer,
  temporaryDirectory,
  type RunningServer,
} from '../../helpers/server.js';
import { serviceSkip } from '../../helpers/services.js';
import { sha256Hex } from '../../harness/sha256.js';

/** Debian's chromium package; .ci/services installs it. */
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));

const skip = await serviceSkip(
  'Chromium',
  () => access(CHROMIUM, constants.X_OK),
  'apt-get install -y chromium (bash .ci/services does this)',
);

const ADMIN = 'page-test-admin-token';
let server: RunningServer;
let context: BrowserContext;
before(async () => {
  if (skip) return;
  server = await startServer({ args: ['--admin-token', ADMIN] });
  context = await chromium.launchPersistentContext(await temporaryDirectory('digestd-chromium-'), {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
});
after(async () => {
  await context?.close();
  await server?.stop();
});

describe('the web page at /', { skip: skip ?? false }, () => {
  it('stores a pasted message, links its digest, and shows the message again, without console errors', async () => {
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning')
        problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (failed) => problems.push(`request failed: ${failed.url()}`));

    const response = await page.goto(`${server.url}/`);
    assert.equal(response?.status(), 200);
    assert.equal(await page.title(), 'digestd');

    const message = 'Hello from Chromium: ünïcødé ✓\nsecond line <b>not bold</b>';
    await page.fill('#message', message);
    await page.click('#store');
    const link = page.locator('#digest-link');
    await link.waitFor();
    assert.equal(await link.textContent(), sha256Hex(message));
    assert.equal(await link.getAttribute('href'), `#${sha256Hex(message)}`);

    await link.click();
    await page.locator('#view:not([hidden])').waitFor();
    assert.equal(await page.locator('#message-view').textContent(), message);
    assert.equal(await page.locator('#message-view b').count(), 0, 'the message is shown as text, not HTML');
    assert.equal(new URL(page.url()).hash, `#${sha256Hex(message)}`);

    // A digest typed into the second form opens a message stored by someone else.
    const other = 'stored through the API';
    assert.equal((await postMessage(server, other)).status, 201);
    await page.fill('#digest', sha256Hex(other).toUpperCase());
    await page.click('#open');
    await page.locator('#message-view', { hasText: other }).waitFor();
    assert.equal(await page.locator('#message-view').textContent(), other);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}page-round-trip.png`, fullPage: true });
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('opens a digest from the address and says when it is unknown', async () => {
    const stored = 'opened from the address bar';
    assert.equal((await postMessage(server, stored)).status, 201);
    const page = await context.newPage();
    await page.goto(`${server.url}/#${sha256Hex(stored)}`);
    await page.locator('#message-view', { hasText: stored }).waitFor();
    assert.equal(await page.locator('#message-view').textContent(), stored);
    await page.goto(`${server.url}/#${'0'.repeat(64)}`);
    await page.locator('#open-result', { hasText: 'Message not found (MESSAGE_NOT_FOUND)' }).waitFor();
    assert.equal(await page.locator('#view').isHidden(), true);
    await page.close();
  });

  it('says when a message was taken down, when opened and when stored again', async () => {
    const removed = `taken down, then opened ${Math.random()}`;
    assert.equal((await postMessage(server, removed)).status, 201);
    const deleted = await request(`${server.url}/messages/${sha256Hex(removed)}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN}` },
      ca: server.ca,
    });
    assert.equal(deleted.status, 200, deleted.body);
    const page = await context.newPage();
    await page.goto(`${server.url}/#${sha256Hex(removed)}`);
    await page.locator('#open-result', { hasText: 'taken down and is no longer served' }).waitFor();
    assert.equal(await page.locator('#view').isHidden(), true);
    await page.fill('#message', removed);
    await page.click('#store');
    await page.locator('#store-result', { hasText: 'taken down: it cannot be stored again' }).waitFor();
    await page.close();
  });

  it('is served with a Content-Security-Policy allowing only its own origin', async () => {
    const page = await context.newPage();
    const response = await page.goto(`${server.url}/`);
    const policy = (await response?.allHeaders())?.['content-security-policy'] ?? '';
    assert.match(policy, /default-src 'none'/);
    assert.match(policy, /script-src 'self'/);
    await page.close();
  });
});

describe('the API documentation at /docs', { skip: skip ?? false }, () => {
  it('shows the error body with its placeholders as written, not taken for HTML tags', async () => {
    const page = await context.newPage();
    const response = await page.goto(`${server.url}/docs/`);
    assert.equal(response?.status(), 200);
    const description = page.locator('.info .description');
    await description.waitFor();
    const text = (await description.textContent()) ?? '';
    assert.ok(
      text.includes('{"err_msg": "<a sentence>", "code": "<MACHINE_CODE>"}'),
      `the description reads: ${text}`,
    );
    await page.close();
  });
});
