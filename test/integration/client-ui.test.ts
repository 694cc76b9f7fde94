// `ladder client --ui` end to end: a real Ladder server, the client started with only --ui (no
// --server), and its control page in Debian's Chromium (playwright-core). The page imports a pasted
// key, connects, shows the server, an open connection with the rule that matched and a live rate,
// and disconnects; the key file is mode 0600; the page loads nothing from any other origin.
// Screenshots go to test-output/ (LADDER_TEST_OUTPUT overrides).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium, recordForeignRequests } from '../helpers/chromium.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';

const why = chromiumMissing;
if (why) console.log(`client page tests skipped: ${why}`);
const OUT = process.env.LADDER_TEST_OUTPUT ?? join(process.cwd(), 'test-output');

const userinfo = Buffer.from('chacha20-ietf-poly1305:client-ui-test-password').toString(
  'base64url',
);

describe(
  'client control page in headless Chromium',
  { skip: why ?? false, timeout: 120_000 },
  () => {
    let origin: Origin;
    let server: Peer;
    let client: Peer;
    let browser: Browser;
    let page: Page;
    let pageUrl: string;
    let socks: number;
    let slow: ChildProcess | undefined;
    const dir = mkdtempSync(join(tmpdir(), 'ladder-client-ui-'));
    const keyFile = join(dir, 'keys.json');
    const foreign: string[] = [];
    let key = '';

    before(async () => {
      origin = await startOrigin();
      const sp = await freePort();
      key = `ss://${userinfo}@127.0.0.1:${sp}#Home`;
      server = await startLadder([
        'server',
        '--allow-private-targets',
        '--listen',
        `127.0.0.1:${sp}`,
        '--key',
        key,
      ]);
      socks = await freePort();
      const ui = await freePort();
      client = await startLadder(
        [
          'client',
          '--ui',
          `127.0.0.1:${ui}`,
          '--socks',
          `127.0.0.1:${socks}`,
          '--no-http',
          '--ui-keys',
          keyFile,
        ],
        /control page at (http:\/\/\S+)/,
      );
      pageUrl = /control page at (http:\/\/\S+)/.exec(client.output())![1]!;
      browser = await launchChromium();
      page = await browser.newPage();
      recordForeignRequests(page, pageUrl, foreign);
      mkdirSync(OUT, { recursive: true });
    });
    after(async () => {
      slow?.kill();
      await browser?.close();
      await client?.stop();
      await server?.stop();
      await origin?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    test('paste a key, connect, see a connection and its rule, disconnect', async () => {
      await page.goto(pageUrl);
      await page.getByTestId('status').filter({ hasText: 'disconnected' }).waitFor();
      assert.doesNotMatch(page.url(), /token/, 'the token leaves the address bar');

      // A key that does not parse: a message, nothing kept.
      await page.getByTestId('key-uri').fill('ss://not-a-key');
      await page.getByTestId('import').click();
      await page.getByTestId('error').filter({ hasText: /./ }).waitFor();
      assert.equal(existsSync(keyFile), false);

      await page.getByTestId('key-uri').fill(key);
      await page.getByTestId('import').click();
      await page
        .locator('[data-testid=keys] option', { hasText: 'Home' })
        .waitFor({ state: 'attached' });
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
      assert.match(readFileSync(keyFile, 'utf8'), /"name": "Home"/);

      await page.getByTestId('connect').click();
      await page.getByTestId('status').filter({ hasText: 'connected: Home' }).waitFor();
      assert.match((await page.getByTestId('server').textContent()) ?? '', /127\.0\.0\.1/);

      // A download held open (rate-limited) so the page lists it while it runs.
      slow = spawn('curl', [
        '-s',
        '-o',
        '/dev/null',
        '--limit-rate',
        '200k',
        '--max-time',
        '60',
        '--socks5-hostname',
        `127.0.0.1:${socks}`,
        `http://127.0.0.1:${origin.port}/bytes/20000000`,
      ]);
      const row = page.locator('[data-testid=connection]', { hasText: `127.0.0.1:${origin.port}` });
      await row.waitFor({ timeout: 20_000 });
      assert.match((await row.textContent()) ?? '', /MATCH.*PROXY/);
      await page
        .getByTestId('down')
        .filter({ hasText: /[1-9][0-9.]* (KB|MB)\/s/ })
        .waitFor({ timeout: 20_000 });
      await page.screenshot({ path: join(OUT, 'client-ui-connected.png'), fullPage: true });

      await page.getByTestId('disconnect').click();
      await page.getByTestId('status').filter({ hasText: 'disconnected' }).waitFor();
      await row.waitFor({ state: 'detached', timeout: 20_000 });
      const code = await new Promise<number | null>((r) => slow!.once('exit', (c) => r(c)));
      assert.notEqual(code, 0, 'the download was cut by disconnecting');
      assert.doesNotMatch(
        client.output(),
        new RegExp(`127\\.0\\.0\\.1:${origin.port}`),
        'no destination in the log',
      );
      await page.screenshot({ path: join(OUT, 'client-ui-disconnected.png'), fullPage: true });
      assert.deepEqual(foreign, []);
    });

    test('the page API refuses a missing token and a foreign Host', async () => {
      const u = new URL(pageUrl);
      const r1 = await fetch(new URL('/ladder/state', u));
      assert.equal(r1.status, 401);
      const r2 = await fetch(new URL('/version', u), {
        headers: { Authorization: 'Bearer wrong' },
      });
      assert.equal(r2.status, 401);
      // DNS rebinding: a page of another site resolved to 127.0.0.1 sends its own Host.
      const status = await new Promise<number | undefined>((resolve, reject) =>
        request(
          {
            host: u.hostname,
            port: u.port,
            path: '/',
            headers: { Host: `rebind.example:${u.port}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode);
          },
        )
          .on('error', reject)
          .end(),
      );
      assert.equal(status, 421);
    });
  },
);
