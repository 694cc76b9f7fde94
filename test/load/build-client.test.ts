/**
 * Load tier: `ladder build-client` makes a real single executable application from this
 * installation (most of a minute: Node writes the blob, postject injects it into a copy of Node's
 * binary), and the result runs: `--version`, `keys new`, and `client --ui` serving its page and the
 * QR decoder from the unpacked installation. Its `.sig` verifies with the operator's key and names
 * the file's size and SHA-256. test/integration/update.test.ts covers serving and updating with a
 * small payload.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openClientRelease } from '../../src/codec/client-release.js';
import { rawPublicKey } from '../../src/codec/key-document.js';
import { freePort, LADDER_CLI, startProcess } from '../helpers/peers.js';

const run = (file: string, args: string[], env: NodeJS.ProcessEnv) =>
  new Promise<string>((resolve, reject) =>
    execFile(file, args, { env, timeout: 240_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`))
        : resolve(stdout),
    ),
  );

test('build-client makes a signed single-file client that runs', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-sea-'));
  const env = { ...process.env, LADDER_CACHE_DIR: join(dir, 'cache') };
  try {
    const out = join(dir, 'ladder');
    const opKey = join(dir, 'operator.pem');
    await run(
      process.execPath,
      [LADDER_CLI, 'build-client', '--operator-key', opKey, '--out', out],
      env,
    );
    assert.equal(statSync(opKey).mode & 0o777, 0o600);
    const bytes = readFileSync(out);
    const release = openClientRelease(
      readFileSync(`${out}.sig`, 'utf8'),
      rawPublicKey(createPublicKey(createPrivateKey(readFileSync(opKey)))),
    );
    assert.equal(release.size, bytes.length);
    assert.equal(release.sha256, createHash('sha256').update(bytes).digest('hex'));
    assert.equal(release.platform, `${process.platform}-${process.arch}`);

    assert.match(await run(out, ['--version'], env), /^ladder \d+\.\d+\.\d+/);
    assert.match(await run(out, ['keys', 'new'], env), /^ss:\/\//);
    const ui = await freePort();
    const client = await startProcess(
      [
        out,
        'client',
        '--ui',
        `127.0.0.1:${ui}`,
        '--socks',
        `127.0.0.1:${await freePort()}`,
        '--no-http',
        '--ui-keys',
        join(dir, 'keys.json'),
      ],
      /control page at (http:\/\/\S+)/,
      { env },
    );
    try {
      const page = await fetch(`http://127.0.0.1:${ui}/`);
      assert.match(await page.text(), /QR code image/);
      const qr = await fetch(`http://127.0.0.1:${ui}/vendor/jsQR.js`);
      assert.equal(qr.status, 200);
      assert.ok((await qr.text()).length > 10_000);
    } finally {
      await client.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
