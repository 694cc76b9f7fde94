/**
 * A self-signed ECDSA P-256 certificate for `localhost` and 127.0.0.1, made by openssl in a temp
 * dir, as the reference peer configs use (`cert.pem`, `key.pem`). The peers (trojan-gfw, v2ray,
 * v2ray-plugin) read the files; Ladder's clients pin the SHA-256.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** SHA-256 fingerprint, hex without colons, lower case (what a `pin=` takes). */
  pin: string;
  remove(): void;
}

/** The same for an RSA-2048 key (`algorithm: 'rsa'`). */
export function makeCert(algorithm: 'ec' | 'rsa' = 'ec'): TestCert {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-cert-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      ...(algorithm === 'ec' ? ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['rsa:2048']),
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  const cert = readFileSync(certFile, 'utf8');
  return {
    dir,
    certFile,
    keyFile,
    cert,
    key: readFileSync(keyFile, 'utf8'),
    pin: new X509Certificate(cert).fingerprint256.replace(/:/g, '').toLowerCase(),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
