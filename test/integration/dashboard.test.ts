// The web dashboard end to end in a real headless Chromium (Debian's chromium, driven by
// playwright-core): create a key in the page, use it through a real `ladder client` with curl, watch
// its usage rise in the page, disable it there, and see the client refused. The browser trusts the
// API's self-signed certificate by its public-key pin only, and the page must make no request to
// any other origin.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium } from '../helpers/chromium.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { startOperatorServer, tempDataDir, type OperatorServer } from '../helpers/operator.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { curl } from '../helpers/curl.js';

const why = chromiumMissing;
if (why) console.log(`dashboard tests skipped: ${why}`);

/** Chromium's --ignore-certificate-errors-spki-list takes base64 SHA-256 of the SubjectPublicKeyInfo. */
function spkiPin(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

describe('dashboard in headless Chromium', { skip: why ?? false, timeout: 150_000 }, () => {
  let origin: Origin;
  let srv: OperatorServer;
  let browser: Browser;
  let page: Page;
  let client: Peer | undefined;
  const data = tempDataDir();
  const profile = mkdtempSync(join(tmpdir(), 'ladder-chromium-'));
  const foreign: string[] = [];
  const seen: string[] = [];

  before(async () => {
    origin = await startOrigin();
    srv = await startOperatorServer(data.dir);
    browser = await launchChromium([
      '--disable-quic',
      `--ignore-certificate-errors-spki-list=${spkiPin(readFileSync(join(data.dir, 'api-cert.pem'), 'utf8'))}`,
    ]);
    page = await browser.newPage();
    const apiOrigin = new URL(srv.apiUrl).origin;
    page.on('request', (r) => {
      if (!r.url().startsWith(apiOrigin) && !r.url().startsWith('data:')) foreign.push(r.url());
    });
    page.on('dialog', (d) => void d.accept());
    // What the page saw, printed when the test fails, so that a failure names its cause.
    page.on('response', (r) => {
      if (r.status() >= 400) seen.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    });
    page.on('requestfailed', (r) =>
      seen.push(`failed ${r.method()} ${r.url()}: ${r.failure()?.errorText ?? '?'}`),
    );
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') seen.push(`console ${m.text()}`);
    });
    page.on('pageerror', (e) => seen.push(`page error ${e.message}`));
  });
  after(async () => {
    await client?.stop();
    await browser?.close();
    await srv?.peer.stop();
    await origin?.close();
    data.remove();
    rmSync(profile, { recursive: true, force: true });
  });

  test('create a key in the page, use it, watch its usage rise, disable it, see the client refused', async () => {
    try {
      await keyLifecycle();
    } catch (err) {
      const status = await page
        .locator('#status')
        .textContent({ timeout: 2000 })
        .catch((e: Error) => `(unreadable: ${e.message})`);
      console.log(`page #status: ${JSON.stringify(status)}`);
      for (const line of seen) console.log(`page: ${line}`);
      throw err;
    }
  });

  async function keyLifecycle(): Promise<void> {
    await page.goto(`${srv.apiUrl}/`); // redirects to the dashboard
    assert.match(page.url(), /\/dashboard\/$/);
    await page.getByTestId('uptime').filter({ hasNotText: '–' }).waitFor();

    await page.getByTestId('new-name').fill('Grandma’s phone');
    await page.getByTestId('create').click();
    const dialog = page.getByTestId('key-dialog');
    await dialog.waitFor({ state: 'visible' });
    const uri = await page.getByTestId('key-uri').inputValue();
    assert.match(uri, /^ss:\/\/.+@127\.0\.0\.1:\d+#Grandma/);
    // The QR code is an image served by the API: it loads (waiting for it, up to 10 s: the image
    // may still be on its way when the dialog opens).
    const qrLoaded = await page.locator('#qr img').evaluate(
      (el) =>
        new Promise<boolean>((resolve) => {
          const img = el as unknown as {
            complete: boolean;
            naturalWidth: number;
            addEventListener(type: string, fn: () => void): void;
          };
          if (img.complete && img.naturalWidth > 0) return resolve(true);
          img.addEventListener('load', () => resolve(img.naturalWidth > 0));
          img.addEventListener('error', () => resolve(false));
          setTimeout(() => resolve(img.complete && img.naturalWidth > 0), 10_000);
        }),
    );
    assert.ok(qrLoaded, 'QR code image loaded');
    await page.keyboard.press('Escape');

    // A real Ladder client with the key from the page, and curl through its SOCKS5 proxy.
    const socks = await freePort();
    client = await startLadder([
      'client',
      '--server',
      uri,
      '--socks',
      `127.0.0.1:${socks}`,
      '--no-http',
    ]);
    const got = await curl([
      '--socks5-hostname',
      `127.0.0.1:${socks}`,
      `http://127.0.0.1:${origin.port}/bytes/3000000`,
    ]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.sha256, expectedHash(3_000_000));

    const row = page.locator('[data-testid=key-row]', { hasText: 'Grandma' });
    await row.getByTestId('usage').filter({ hasText: /MB/ }).waitFor({ timeout: 15_000 });
    const usage = await row.getByTestId('usage').textContent();
    assert.match(usage ?? '', /^3\.\d+ MB$/, `usage shown: ${usage}`);
    const chartBars = await page.locator('[data-testid=server-chart] rect').count();
    assert.equal(chartBars, 30, 'a bar per day');
    assert.notEqual(await page.getByTestId('connections').textContent(), '0');
    // LADDER_SCREENSHOT=file.png keeps a picture of the page at this point, for people to look at.
    if (process.env.LADDER_SCREENSHOT)
      await page.screenshot({ path: process.env.LADDER_SCREENSHOT, fullPage: true });

    await row.getByTestId('disable').click();
    await row.getByTestId('state').filter({ hasText: 'disabled' }).waitFor();

    // The same client is now refused: no byte of a response, the request times out.
    const refused = await curl(
      ['--socks5-hostname', `127.0.0.1:${socks}`, `http://127.0.0.1:${origin.port}/hello`],
      3,
    );
    assert.notEqual(refused.code, 0);
    assert.equal(refused.body.length, 0);

    // Rename and set limits through the key's dialog; the table shows them.
    await row.getByTestId('share').click();
    await page.getByTestId('edit-name').fill('Grandma (tablet)');
    await page.locator('#edit-form input[name=limit]').fill('5');
    await page.locator('#edit-form input[name=devices]').fill('2');
    await page.getByTestId('save').click();
    await dialog.waitFor({ state: 'hidden' });
    const renamed = page.locator('[data-testid=key-row]', { hasText: 'Grandma (tablet)' });
    await renamed
      .getByTestId('usage')
      .filter({ hasText: /of 5\.00 GB \(30d\)/ })
      .waitFor();
    await renamed.getByTestId('enable').click();
    await renamed.getByTestId('state').filter({ hasText: 'active' }).waitFor();
    const back = await curl([
      '--socks5-hostname',
      `127.0.0.1:${socks}`,
      `http://127.0.0.1:${origin.port}/hello`,
    ]);
    assert.equal(back.code, 0, 'enabled again, the client works');

    await renamed.getByTestId('delete').click(); // the confirm() is accepted
    await renamed.waitFor({ state: 'detached' });
    assert.deepEqual(foreign, [], 'the page asked for nothing outside the API');
  }
});
