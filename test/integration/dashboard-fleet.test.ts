// The dashboard's fleet panel in a real headless Chromium (Debian's chromium, driven by
// playwright-core): two `ladder server --store` processes on one real PostgreSQL; node 0's page
// lists both servers as up, shows the bytes a key carried through node 1 on node 1's row, and the
// database's state. A single server's page has no fleet panel (dashboard.test.ts covers that page).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium } from '../helpers/chromium.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import {
  dialerFor,
  fetchThrough,
  startOperatorServer,
  tempDataDir,
  type OperatorServer,
} from '../helpers/operator.js';
import { postgresBin, startPostgres, type TestPostgres } from '../helpers/postgres.js';

const why = chromiumMissing
  ? chromiumMissing
  : !postgresBin()
    ? 'PostgreSQL is not installed (.ci/run installs postgresql)'
    : null;
if (why) console.log(`dashboard fleet test skipped: ${why}`);

/** Chromium's --ignore-certificate-errors-spki-list takes base64 SHA-256 of the SubjectPublicKeyInfo. */
function spkiPin(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

describe(
  'dashboard fleet panel in headless Chromium',
  { skip: why ?? false, timeout: 150_000 },
  () => {
    let pg: TestPostgres;
    let origin: Origin;
    let browser: Browser;
    let page: Page;
    const dirs = [tempDataDir(), tempDataDir()];
    const nodes: OperatorServer[] = [];
    const foreign: string[] = [];
    const seen: string[] = [];

    before(async () => {
      pg = await startPostgres();
      origin = await startOrigin();
      for (const d of dirs)
        nodes.push(
          await startOperatorServer(
            d.dir,
            ['--store', pg.url, '--no-udp'],
            undefined,
            undefined,
            60_000,
          ),
        );
      browser = await launchChromium([
        '--disable-quic',
        `--ignore-certificate-errors-spki-list=${spkiPin(readFileSync(join(dirs[0]!.dir, 'api-cert.pem'), 'utf8'))}`,
      ]);
      page = await browser.newPage();
      const apiOrigin = new URL(nodes[0]!.apiUrl).origin;
      page.on('request', (r) => {
        if (!r.url().startsWith(apiOrigin) && !r.url().startsWith('data:')) foreign.push(r.url());
      });
      page.on('response', (r) => {
        if (r.status() >= 400) seen.push(`${r.status()} ${r.request().method()} ${r.url()}`);
      });
      page.on('pageerror', (e) => seen.push(`page error ${e.message}`));
    });
    after(async () => {
      await browser?.close();
      await Promise.all(nodes.map((n) => n.peer.stop()));
      await origin?.close();
      await pg?.remove();
      for (const d of dirs) d.remove();
    });

    test('lists every server with its health and the data it carried', async () => {
      try {
        const key = (await nodes[0]!.api('POST', '/access-keys', { name: 'fleet panel' })).body as {
          id: string;
          method: string;
          password: string;
        };
        // The key reaches node 1 through the database, then carries 2 MB there.
        for (const deadline = Date.now() + 10_000; ;) {
          if ((await nodes[1]!.api('GET', `/access-keys/${key.id}`)).status === 200) break;
          if (Date.now() > deadline) throw new Error('key not on node 1 within 10 s');
          await new Promise((r) => setTimeout(r, 20));
        }
        const got = await fetchThrough(
          dialerFor(nodes[1]!.port, key),
          origin.port,
          '/bytes/2000000',
        );
        assert.equal(got.bodyBytes, 2_000_000);

        await page.goto(`${nodes[0]!.apiUrl}/`);
        const panel = page.getByTestId('fleet');
        await panel.waitFor({ state: 'visible', timeout: 15_000 });
        const rows = page.getByTestId('fleet-server');
        await page
          .getByTestId('fleet-summary')
          .filter({ hasText: /^2 of 2 servers up/ })
          .waitFor({ timeout: 15_000 });
        assert.equal(await rows.count(), 2);
        await page.getByTestId('fleet-store').filter({ hasText: 'database reachable' }).waitFor();
        const self = rows.filter({ hasText: '(this server)' });
        assert.match((await self.textContent()) ?? '', new RegExp(`:${nodes[0]!.port}`));
        const other = rows.filter({ hasText: `:${nodes[1]!.port}` });
        assert.equal(await other.getByTestId('fleet-health').textContent(), 'up');
        // Node 1's usage reaches the page once pushed and read back (a few seconds at most).
        await other
          .getByTestId('fleet-bytes')
          .filter({ hasText: /^2\.\d+ MB$/ })
          .waitFor({ timeout: 15_000 });
        if (process.env.LADDER_SCREENSHOT)
          await page.screenshot({ path: process.env.LADDER_SCREENSHOT, fullPage: true });
        assert.deepEqual(foreign, [], 'the page asked for nothing outside the API');
      } catch (err) {
        for (const line of seen) console.log(`page: ${line}`);
        const panel = await page
          .getByTestId('fleet')
          .textContent({ timeout: 2000 })
          .catch((e: Error) => `(unreadable: ${e.message})`);
        console.log(`fleet panel: ${JSON.stringify(panel)}`);
        throw err;
      }
    });
  },
);
