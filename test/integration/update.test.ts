// `ladder update` against a real `ladder server` on loopback that serves a release at a secret path
// of its decoy site (--publish), fetched through the tunnel of an access key. The payload is a
// small file standing in for the executable (building a real one takes most of a minute: that is
// test/load/build-client.test.ts): the signature, version, platform, size and SHA-256 checks and the
// atomic replace are the same. Tampered, older, other-platform and wrongly signed releases are
// refused and the file is left as it was.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signClientRelease, type ClientRelease } from '../../src/codec/client-release.js';
import { rawPublicKey } from '../../src/codec/key-document.js';
import { formatLadderOnlineKey } from '../../src/codec/online-key.js';
import { freePort, LADDER_CLI, startLadder, type Peer } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const PLATFORM = `${process.platform}-${process.arch}`;
const SECRET = '/r/5d0c9e1f7a2b4c68/ladder';

describe('ladder update through the tunnel from a real server', { timeout: 120_000 }, () => {
  let cert: TestCert;
  let server: Peer;
  let url = '';
  let ssKey = '';
  const dir = mkdtempSync(join(tmpdir(), 'ladder-update-'));
  const binFile = join(dir, 'served');
  const sigFile = join(dir, 'served.sig');
  const operator = generateKeyPairSync('ed25519');
  const forger = generateKeyPairSync('ed25519');
  const from = () => formatLadderOnlineKey(url, rawPublicKey(operator.publicKey));

  const publish = (
    bytes: Buffer,
    o: Partial<ClientRelease> = {},
    key = operator.privateKey,
    sigBytes = bytes,
  ) => {
    writeFileSync(binFile, bytes);
    writeFileSync(
      sigFile,
      signClientRelease(
        {
          version: '9.0.0',
          platform: PLATFORM,
          size: sigBytes.length,
          sha256: createHash('sha256').update(sigBytes).digest('hex'),
          issued: new Date(0).toISOString(),
          ...o,
        },
        key,
      ),
    );
  };

  const update = (exe: string) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          LADDER_CLI,
          'update',
          '--from',
          from(),
          '--server',
          ssKey,
          '--exe',
          exe,
          '--timeout',
          '30',
        ],
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert.certFile }, timeout: 60_000 },
        (err, stdout, stderr) =>
          resolve({
            code: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
            out: stdout + stderr,
          }),
      );
    });

  const exeWith = (text: string) => {
    const exe = join(dir, `exe-${Math.random().toString(36).slice(2)}`);
    writeFileSync(exe, text);
    chmodSync(exe, 0o755);
    return exe;
  };

  before(async () => {
    cert = makeCert();
    const port = await freePort();
    const userinfo = Buffer.from('chacha20-ietf-poly1305:update-test-password').toString(
      'base64url',
    );
    ssKey = `ss://${userinfo}@127.0.0.1:${port}`;
    publish(Buffer.from('#!/bin/sh\necho new\n'));
    server = await startLadder([
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      ssKey,
      '--key',
      'trojan://update-test-trojan@127.0.0.1:443',
      '--tls-cert',
      cert.certFile,
      '--tls-key',
      cert.keyFile,
      '--publish',
      `${SECRET}=${binFile}`,
      '--publish',
      `${SECRET}.sig=${sigFile}`,
    ]);
    url = `https://127.0.0.1:${port}${SECRET}`;
  });
  after(async () => {
    await server?.stop();
    cert?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a newer signed release replaces the file atomically, fetched through the tunnel', async () => {
    const payload = Buffer.from('#!/bin/sh\necho new\n');
    publish(payload);
    const exe = exeWith('#!/bin/sh\necho old\n');
    const r = await update(exe);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /through the tunnel/);
    assert.match(r.out, /is now version 9\.0\.0/);
    assert.deepEqual(readFileSync(exe), payload);
    assert.equal(statSync(exe).mode & 0o777, 0o755);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes('.update-')),
      [],
      'no temporary file left',
    );
  });

  test('tampered, older, other-platform and forged releases are refused; nothing replaced', async () => {
    const cases: [string, () => void, RegExp][] = [
      [
        'tampered',
        () =>
          publish(
            Buffer.from('#!/bin/sh\necho evil\n'),
            {},
            operator.privateKey,
            Buffer.from('#!/bin/sh\necho good\n'),
          ),
        /not what the operator signed/,
      ],
      [
        'older',
        () => publish(Buffer.from('x'), { version: '0.0.1' }),
        /not newer than this client's/,
      ],
      [
        'other platform',
        () => publish(Buffer.from('x'), { platform: 'plan9-mips' }),
        /is for plan9-mips/,
      ],
      ['forged', () => publish(Buffer.from('x'), {}, forger.privateKey), /does not verify/],
    ];
    for (const [name, setUp, message] of cases) {
      setUp();
      const exe = exeWith('#!/bin/sh\necho old\n');
      const r = await update(exe);
      assert.notEqual(r.code, 0, `${name}: ${r.out}`);
      assert.match(r.out, message, name);
      assert.equal(readFileSync(exe, 'utf8'), '#!/bin/sh\necho old\n', `${name}: unchanged`);
    }
  });
});
