// The control page offers the client update a signed key document names, in Debian's Chromium
// (playwright-core, loopback only, background networking off). A real Ladder server carries the
// tunnel; an HTTPS host on loopback serves the key document, the release's signature and the
// release. A download that is not what the operator signed is refused on the page and nothing is
// replaced; the right one replaces the file given by --update-exe. The page lists where the client
// is served for other devices. Screenshots go to test-output/ (LADDER_TEST_OUTPUT overrides).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { signClientRelease } from '../../src/codec/client-release.js';
import { rawPublicKey, signKeyDocument } from '../../src/codec/key-document.js';
import { formatLadderOnlineKey } from '../../src/codec/online-key.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const CHROMIUM = '/usr/bin/chromium';
const why = existsSync(CHROMIUM)
  ? null
  : `${CHROMIUM} is missing (Debian package chromium; .ci/run installs it)`;
if (why) console.log(`client page update tests skipped: ${why}`);
const OUT = process.env.LADDER_TEST_OUTPUT ?? join(process.cwd(), 'test-output');
const PASSWORD = 'client-ui-update-password';
const userinfo = Buffer.from(`chacha20-ietf-poly1305:${PASSWORD}`).toString('base64url');
/** Newer than any version this checkout will have. */
const VERSION = '999.0.0';

describe(
  'client page: the update a key document names',
  { skip: why ?? false, timeout: 120_000 },
  () => {
    let server: Peer;
    let client: Peer;
    let browser: Browser;
    let page: Page;
    let cert: TestCert;
    let host: Server;
    let base = '';
    const sockets = new Set<Socket>();
    const operator = generateKeyPairSync('ed25519');
    const pub = rawPublicKey(operator.publicKey);
    const dir = mkdtempSync(join(tmpdir(), 'ladder-client-ui-update-'));
    const exe = join(dir, 'ladder');
    const release = Buffer.from('#!/bin/sh\necho a newer ladder\n');
    /** What the host serves as the release: tampered at first. */
    let served = Buffer.concat([release, Buffer.from('# changed on the way\n')]);
    const foreign: string[] = [];

    before(async () => {
      cert = makeCert();
      writeFileSync(exe, 'the running client', { mode: 0o755 });
      const sp = await freePort();
      server = await startLadder([
        'server',
        '--allow-private-targets',
        '--listen',
        `127.0.0.1:${sp}`,
        '--key',
        `ss://${userinfo}@127.0.0.1:${sp}`,
      ]);
      host = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
        if (req.url === '/k/doc') res.end(doc);
        else if (req.url === '/d/ladder.sig') res.end(sig);
        else if (req.url === '/d/ladder') res.end(served);
        else res.writeHead(404).end();
      });
      host.on('connection', (s: Socket) => {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
      });
      await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
      base = `https://127.0.0.1:${(host.address() as AddressInfo).port}`;
      const clientUrl = formatLadderOnlineKey(`${base}/d/ladder`, pub);
      const doc = signKeyDocument(
        {
          serial: 1,
          issued: new Date(0).toISOString(),
          keys: [`ss://${userinfo}@127.0.0.1:${sp}`],
          mirrors: [],
          client: { urls: [clientUrl] },
        },
        operator.privateKey,
      );
      const sig = signClientRelease(
        {
          version: VERSION,
          platform: `${process.platform}-${process.arch}`,
          size: release.length,
          sha256: createHash('sha256').update(release).digest('hex'),
          issued: new Date(0).toISOString(),
        },
        operator.privateKey,
      );
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
          join(dir, 'keys.json'),
          '--update-exe',
          exe,
        ],
        /control page at (http:\/\/\S+)/,
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert.certFile } },
      );
      const pageUrl = /control page at (http:\/\/\S+)/.exec(client.output())![1]!;
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      page = await browser.newPage();
      const own = new URL(pageUrl).origin;
      page.on('request', (r) => {
        if (!r.url().startsWith(own)) foreign.push(r.url());
      });
      mkdirSync(OUT, { recursive: true });
      await page.goto(pageUrl);
      await page.getByTestId('status').filter({ hasText: 'disconnected' }).waitFor();
    });
    after(async () => {
      await browser?.close();
      await client?.stop();
      await server?.stop();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => (host ? host.close(() => r()) : r()));
      cert?.remove();
      rmSync(dir, { recursive: true, force: true });
    });

    test('offered, a tampered download refused, the signed one applied', async () => {
      await page.getByTestId('key-uri').fill(formatLadderOnlineKey(`${base}/k/doc`, pub, 'Team'));
      await page.getByTestId('import').click();
      await page
        .locator('[data-testid=keys] option', { hasText: 'Team' })
        .waitFor({ state: 'attached' });
      await page.getByTestId('connect').click();
      await page.getByTestId('status').filter({ hasText: 'connected: Team' }).waitFor();

      const status = page.getByTestId('update-status');
      await status.filter({ hasText: `Version ${VERSION} is available` }).waitFor();
      assert.match(
        (await status.textContent()) ?? '',
        /from https:\/\/127\.0\.0\.1:\d+, signed by the operator/,
      );
      const urls = await page.getByTestId('client-url').allTextContents();
      assert.deepEqual(urls, [formatLadderOnlineKey(`${base}/d/ladder`, pub)]);
      await page.screenshot({ path: join(OUT, 'client-ui-update-offered.png'), fullPage: true });

      await page.getByTestId('update').click();
      await status.filter({ hasText: 'The update failed' }).waitFor();
      assert.match((await status.textContent()) ?? '', /the operator signed.*nothing replaced/);
      assert.equal(readFileSync(exe, 'utf8'), 'the running client');
      await page.screenshot({ path: join(OUT, 'client-ui-update-refused.png'), fullPage: true });

      served = release;
      await page.getByTestId('update').click();
      await status.filter({ hasText: `client updated to version ${VERSION}` }).waitFor();
      assert.deepEqual(readFileSync(exe), release);
      assert.equal(await page.getByTestId('update').isHidden(), true);
      await page.screenshot({ path: join(OUT, 'client-ui-update-applied.png'), fullPage: true });
      assert.deepEqual(foreign, []);
    });
  },
);
