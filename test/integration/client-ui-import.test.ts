// The control page's other ways in, in Debian's Chromium (playwright-core): a key from a QR code
// image (PNG, and the same code as JPEG), an image with no QR code and a QR code that holds no key
// (clear messages, nothing kept), an Outline online key (ssconf://) fetched over HTTPS, and the
// probe run from the page with the transport it recommends. Servers are real, on loopback.
// Screenshots go to test-output/ (LADDER_TEST_OUTPUT overrides).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import QRCode from 'qrcode';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium, recordForeignRequests } from '../helpers/chromium.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const why = chromiumMissing;
if (why) console.log(`client page import tests skipped: ${why}`);
const OUT = process.env.LADDER_TEST_OUTPUT ?? join(process.cwd(), 'test-output');
const PASSWORD = 'client-ui-import-password';
const userinfo = Buffer.from(`chacha20-ietf-poly1305:${PASSWORD}`).toString('base64url');

describe(
  'client page: QR image, online key, probe',
  { skip: why ?? false, timeout: 150_000 },
  () => {
    let origin: Origin;
    let server: Peer;
    let client: Peer;
    let browser: Browser;
    let page: Page;
    let pageUrl = '';
    let cert: TestCert;
    let keyHost: Server;
    let sp = 0;
    const dir = mkdtempSync(join(tmpdir(), 'ladder-client-ui-import-'));
    const keyFile = join(dir, 'keys.json');
    const foreign: string[] = [];

    before(async () => {
      origin = await startOrigin();
      cert = makeCert();
      sp = await freePort();
      server = await startLadder([
        'server',
        '--allow-private-targets',
        '--listen',
        `127.0.0.1:${sp}`,
        '--key',
        `ss://${userinfo}@127.0.0.1:${sp}`,
      ]);
      // An Outline-style online key host: the legacy JSON document.
      keyHost = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
        if (req.url === '/outline/doc')
          res.end(
            JSON.stringify({
              server: '127.0.0.1',
              server_port: sp,
              password: PASSWORD,
              method: 'chacha20-ietf-poly1305',
            }),
          );
        else res.writeHead(404).end();
      });
      await new Promise<void>((r) => keyHost.listen(0, '127.0.0.1', r));
      const ui = await freePort();
      client = await startLadder(
        [
          'client',
          '--ui',
          `127.0.0.1:${ui}`,
          '--socks',
          `127.0.0.1:${await freePort()}`,
          '--no-http',
          '--ui-keys',
          keyFile,
          '--probe-check-url',
          `http://127.0.0.1:${origin.port}/`,
        ],
        /control page at (http:\/\/\S+)/,
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert.certFile } },
      );
      pageUrl = /control page at (http:\/\/\S+)/.exec(client.output())![1]!;
      browser = await launchChromium();
      page = await browser.newPage();
      recordForeignRequests(page, pageUrl, foreign);
      mkdirSync(OUT, { recursive: true });
      await page.goto(pageUrl);
      await page.getByTestId('status').filter({ hasText: 'disconnected' }).waitFor();
    });
    after(async () => {
      await browser?.close();
      await client?.stop();
      await server?.stop();
      await origin?.close();
      await new Promise<void>((r) => (keyHost ? keyHost.close(() => r()) : r()));
      cert?.remove();
      rmSync(dir, { recursive: true, force: true });
    });

    const keyNames = async () => page.locator('[data-testid=keys] option').allTextContents();

    /** Re-encodes a PNG as JPEG in the page's own canvas (no encoder needed in Node). */
    const asJpeg = async (png: Buffer): Promise<Buffer> => {
      // A string, as the tests compile without DOM types; an <img>, as the page's CSP lets
      // images, not fetch, read data: URLs.
      const b64 = await page.evaluate<string>(`(async () => {
        const img = new Image();
        img.src = 'data:image/png;base64,${png.toString('base64')}';
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.naturalWidth;
        c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0);
        return c.toDataURL('image/jpeg', 0.9).split(',')[1];
      })()`);
      return Buffer.from(b64, 'base64');
    };

    test('a QR code image (PNG, JPEG) imports its key; no code, or a code with no key, is refused', async () => {
      const key = `ss://${userinfo}@127.0.0.1:${sp}#FromQR`;
      const png = await QRCode.toBuffer(key, { type: 'png', errorCorrectionLevel: 'M', margin: 2 });
      await page
        .getByTestId('qr-file')
        .setInputFiles({ name: 'key.png', mimeType: 'image/png', buffer: png });
      await page
        .locator('[data-testid=keys] option', { hasText: 'FromQR' })
        .waitFor({ state: 'attached' });
      assert.match(readFileSync(keyFile, 'utf8'), /"name": "FromQR"/);

      const jpeg = await asJpeg(
        await QRCode.toBuffer(key.replace('FromQR', 'FromJPEG'), { type: 'png', margin: 2 }),
      );
      assert.equal(jpeg[0], 0xff, 'a JPEG file');
      await page
        .getByTestId('qr-file')
        .setInputFiles({ name: 'key.jpg', mimeType: 'image/jpeg', buffer: jpeg });
      await page
        .locator('[data-testid=keys] option', { hasText: 'FromJPEG' })
        .waitFor({ state: 'attached' });

      const before = await keyNames();
      const notKey = await QRCode.toBuffer('hello, this is not a key', { type: 'png' });
      await page
        .getByTestId('qr-file')
        .setInputFiles({ name: 'hello.png', mimeType: 'image/png', buffer: notKey });
      await page.getByTestId('error').filter({ hasText: 'hello.png holds no key' }).waitFor();
      await page.screenshot({ path: join(OUT, 'client-ui-qr-no-key.png'), fullPage: true });

      const blank = Buffer.from(
        (
          await page.evaluate<string>(`(() => {
            const c = document.createElement('canvas');
            c.width = 200;
            c.height = 120;
            const g = c.getContext('2d');
            g.fillStyle = '#3a6';
            g.fillRect(0, 0, 200, 120);
            return c.toDataURL('image/png');
          })()`)
        ).split(',')[1]!,
        'base64',
      );
      await page
        .getByTestId('qr-file')
        .setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: blank });
      await page
        .getByTestId('error')
        .filter({ hasText: 'no QR code could be read in photo.png' })
        .waitFor();
      await page.getByTestId('qr-file').setInputFiles({
        name: 'junk.png',
        mimeType: 'image/png',
        buffer: Buffer.from('not an image'),
      });
      await page.getByTestId('error').filter({ hasText: 'junk.png is not an image' }).waitFor();
      assert.deepEqual(await keyNames(), before, 'nothing was kept');
    });

    test('an ssconf:// online key is fetched, kept with its key, and connects', async () => {
      const port = (keyHost.address() as AddressInfo).port;
      await page.getByTestId('key-uri').fill(`ssconf://127.0.0.1:${port}/outline/doc#Outline`);
      await page.getByTestId('import').click();
      await page
        .locator('[data-testid=keys] option', { hasText: 'Outline' })
        .waitFor({ state: 'attached' });
      const kept = JSON.parse(readFileSync(keyFile, 'utf8')) as {
        keys: { name: string; uri: string; resolved?: string }[];
      };
      const entry = kept.keys.find((k) => k.name === 'Outline');
      assert.match(entry?.uri ?? '', /^ssconf:/);
      assert.match(entry?.resolved ?? '', new RegExp(`^ss://.*@127\\.0\\.0\\.1:${sp}`));
      await page.getByTestId('keys').selectOption('Outline');
      await page.getByTestId('connect').click();
      await page.getByTestId('status').filter({ hasText: 'connected: Outline' }).waitFor();
      // A missing document: a message, the key list unchanged.
      await page.getByTestId('key-uri').fill(`ssconf://127.0.0.1:${port}/outline/gone`);
      await page.getByTestId('import').click();
      await page.getByTestId('error').filter({ hasText: 'HTTP 404' }).waitFor();
    });

    test('the probe runs from the page and names the transport to use', async () => {
      await page.getByTestId('probe').click();
      await page
        .getByTestId('probe-recommended')
        .filter({ hasText: /Recommended transport: \S+/ })
        .waitFor({ timeout: 60_000 });
      const rows = await page.locator('[data-testid=probe-transport]').allTextContents();
      assert.ok(rows.length >= 1);
      assert.match(rows[0]!, /ok \([1-9]\/\d\)/);
      await page.screenshot({ path: join(OUT, 'client-ui-probe.png'), fullPage: true });
      assert.deepEqual(foreign, []);
    });
  },
);
