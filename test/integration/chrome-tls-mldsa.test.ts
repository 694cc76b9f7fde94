/**
 * ML-DSA in the fp=chrome client (Chrome 156 offers 0x0904–0x0906): a scripted TLS 1.3 server
 * signs its CertificateVerify with ML-DSA (keys made in the test by @noble/post-quantum, the
 * certificates' DER built by test/helpers/mldsa-cert.ts since Node 20's OpenSSL cannot), trusted
 * by pin or by a chain to an ML-DSA, ECDSA or RSA root. Negative cases: a bad signature, a
 * scheme of another level or algorithm than the key's, a tampered certificate signature; each
 * ends with decrypt_error or a certificate error, never another exception.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  X509Certificate,
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  randomBytes,
} from 'node:crypto';
import { LadderError } from '../../src/errors.js';
import { ALERT, chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { decodeCertificateParts, encodeCertificate } from '../../src/codec/x509.js';
import { scriptServer, type Script } from '../helpers/tls13-script-server.js';
import {
  MLDSA_SCHEME,
  mldsaCert,
  mldsaSign,
  type MlDsaCert,
  type MlDsaLevel,
} from '../helpers/mldsa-cert.js';
import { makeCert } from '../helpers/tls-cert.js';

const pem = (der: Buffer): string =>
  `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
const pinOf = (der: Buffer): string => createHash('sha256').update(der).digest('hex');
/** The scripted server's ECDSA key is unused when `signer` signs; any key fills the field. */
const unusedKey = createPrivateKey(makeCertOnce().key);
function makeCertOnce(): { key: string } {
  const c = makeCert();
  c.remove();
  return c;
}

const signerFor = (leaf: MlDsaCert, scheme = MLDSA_SCHEME[leaf.level]): Script['signer'] => ({
  scheme,
  sign: (content) => mldsaSign(leaf, content),
});

async function handshake(
  script: Pick<Script, 'chain' | 'signer'> & Partial<Script>,
  trust: { pin: string } | { ca: string },
): Promise<{ err: (Error & { code?: string }) | null; alert: number | null; scheme?: number }> {
  const srv = await scriptServer({ key: unusedKey, ...script });
  try {
    try {
      const tls = await chromeTlsConnect(
        { host: '127.0.0.1', port: srv.port },
        {
          sni: 'localhost',
          ...('pin' in trust ? { pinSha256: trust.pin } : { ca: trust.ca }),
          sessions: null,
          timeoutMs: 10_000,
        },
      );
      tls.destroy();
      return { err: null, alert: null };
    } catch (e) {
      return { err: e as Error, alert: await srv.alert };
    }
  } finally {
    await srv.close();
  }
}

function fails(
  r: Awaited<ReturnType<typeof handshake>>,
  code: string,
  alert: keyof typeof ALERT,
  message: RegExp,
): void {
  assert.ok(r.err, 'the handshake must fail');
  assert.ok(
    r.err instanceof LadderError,
    `a LadderError, not ${r.err.constructor.name}: ${r.err.message}`,
  );
  assert.equal(r.err.code, code, r.err.message);
  assert.match(r.err.message, message);
  assert.equal(r.alert, ALERT[alert], `alert ${alert} sent (${r.err.message})`);
}

describe('fp=chrome client: ML-DSA servers', { timeout: 60_000 }, () => {
  test('Node cannot read an ML-DSA key: the reason this client parses the DER itself', () => {
    const c = mldsaCert({ level: 65, subject: 'localhost' });
    const x = new X509Certificate(c.der);
    assert.equal(x.checkHost('localhost'), 'localhost');
    assert.throws(() => x.publicKey);
    const parts = decodeCertificateParts(c.der);
    assert.equal(parts.keyAlgorithm.oid, '2.16.840.1.101.3.4.3.18');
    assert.deepEqual(Buffer.from(parts.publicKey), Buffer.from(c.publicKey));
  });

  for (const level of [44, 65, 87] as MlDsaLevel[])
    test(`ML-DSA-${level} CertificateVerify with a pinned self-signed certificate`, async () => {
      const leaf = mldsaCert({ level, subject: 'localhost' });
      const r = await handshake(
        { chain: [leaf.der], signer: signerFor(leaf) },
        { pin: pinOf(leaf.der) },
      );
      assert.equal(r.err, null);
    });

  test('an ML-DSA-65 chain to an ML-DSA-65 root (the key’s ca): every signature checked', async () => {
    const root = mldsaCert({ level: 65, subject: 'Ladder ML-DSA Root', ca: true });
    const issuer = {
      name: 'Ladder ML-DSA Root',
      signer: { level: 65 as const, secretKey: root.secretKey },
    };
    const leaf = mldsaCert({ level: 65, subject: 'localhost', issuer });
    assert.equal(
      (
        await handshake(
          { chain: [leaf.der, root.der], signer: signerFor(leaf) },
          { ca: pem(root.der) },
        )
      ).err,
      null,
    );
    // The same leaf with a flipped bit in its signature does not chain to the root.
    const forged = mldsaCert({ level: 65, subject: 'localhost', issuer, tamper: true });
    fails(
      await handshake(
        { chain: [forged.der, root.der], signer: signerFor(forged) },
        { ca: pem(root.der) },
      ),
      'ERR_TLS_CERT',
      'bad_certificate',
      /not signed by certificate 1/,
    );
    // An intermediate ML-DSA CA between them.
    const mid = mldsaCert({ level: 65, subject: 'Ladder ML-DSA CA', ca: true, issuer });
    const leaf2 = mldsaCert({
      level: 65,
      subject: 'localhost',
      issuer: { name: 'Ladder ML-DSA CA', signer: { level: 65, secretKey: mid.secretKey } },
    });
    assert.equal(
      (
        await handshake(
          { chain: [leaf2.der, mid.der], signer: signerFor(leaf2) },
          { ca: pem(root.der) },
        )
      ).err,
      null,
    );
  });

  test('an ML-DSA-65 leaf under an ECDSA root CA: OpenSSL checks the ECDSA signature', async () => {
    const rootKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const root = encodeCertificate({
      commonName: 'Ladder EC Root',
      isCA: true,
      notBefore: new Date(Date.now() - 3600_000),
      days: 2,
      serial: randomBytes(16),
      subjectKey: rootKeys,
    });
    const issuer = { name: 'Ladder EC Root', signer: { ecdsa: rootKeys.privateKey } };
    const leaf = mldsaCert({ level: 65, subject: 'localhost', issuer });
    assert.equal(
      (await handshake({ chain: [leaf.der], signer: signerFor(leaf) }, { ca: root.cert })).err,
      null,
    );
    const forged = mldsaCert({ level: 65, subject: 'localhost', issuer, tamper: true });
    fails(
      await handshake({ chain: [forged.der], signer: signerFor(forged) }, { ca: root.cert }),
      'ERR_TLS_CERT',
      'unknown_ca',
      /trusted root/,
    );
  });

  test('an ML-DSA-44 leaf under an RSA root CA (PKCS#1 v1.5, SHA-256)', async () => {
    const rootKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const root = encodeCertificate({
      commonName: 'Ladder RSA Root',
      isCA: true,
      notBefore: new Date(Date.now() - 3600_000),
      days: 2,
      serial: randomBytes(16),
      subjectKey: rootKeys,
    });
    const issuer = { name: 'Ladder RSA Root', signer: { rsa: rootKeys.privateKey } };
    const leaf = mldsaCert({ level: 44, subject: 'localhost', issuer });
    assert.equal(
      (await handshake({ chain: [leaf.der], signer: signerFor(leaf) }, { ca: root.cert })).err,
      null,
    );
    const forged = mldsaCert({ level: 44, subject: 'localhost', issuer, tamper: true });
    fails(
      await handshake({ chain: [forged.der], signer: signerFor(forged) }, { ca: root.cert }),
      'ERR_TLS_CERT',
      'unknown_ca',
      /trusted root/,
    );
    // The leaf's ML-DSA key still signs the handshake: a CertificateVerify of another key fails.
    const other = mldsaCert({ level: 44, subject: 'localhost' });
    fails(
      await handshake({ chain: [leaf.der], signer: signerFor(other) }, { ca: root.cert }),
      'ERR_TLS_CERT',
      'decrypt_error',
      /CertificateVerify/,
    );
  });

  test('a bad ML-DSA signature: decrypt_error', async () => {
    const leaf = mldsaCert({ level: 65, subject: 'localhost' });
    const r = await handshake(
      {
        chain: [leaf.der],
        signer: {
          scheme: 0x0905,
          sign: (c) => {
            const s = Buffer.from(mldsaSign(leaf, c));
            s[100]! ^= 1;
            return s;
          },
        },
      },
      { pin: pinOf(leaf.der) },
    );
    fails(r, 'ERR_TLS_CERT', 'decrypt_error', /CertificateVerify/);
  });

  test('a scheme that does not fit the key: decrypt_error, never another exception', async () => {
    const leaf = mldsaCert({ level: 65, subject: 'localhost' });
    const pin = { pin: pinOf(leaf.der) };
    // ML-DSA-44 named for an ML-DSA-65 key.
    fails(
      await handshake({ chain: [leaf.der], signer: signerFor(leaf, 0x0904) }, pin),
      'ERR_TLS_CERT',
      'decrypt_error',
      /CertificateVerify/,
    );
    // ECDSA named for an ML-DSA key (node:crypto cannot read it).
    fails(
      await handshake(
        { chain: [leaf.der], signer: { scheme: 0x0403, sign: () => Buffer.alloc(70) } },
        pin,
      ),
      'ERR_TLS_CERT',
      'decrypt_error',
      /CertificateVerify/,
    );
    // ML-DSA named for an ECDSA key.
    const ec = makeCert();
    try {
      const der = new X509Certificate(ec.cert).raw;
      fails(
        await handshake(
          { chain: [der], signer: { scheme: 0x0905, sign: () => Buffer.alloc(3309) } },
          { pin: ec.pin },
        ),
        'ERR_TLS_CERT',
        'decrypt_error',
        /CertificateVerify/,
      );
    } finally {
      ec.remove();
    }
  });
});
