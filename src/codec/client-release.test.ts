// Signed client releases: round trip, a signature by another key or over another kind of file
// refused, field checks, and version order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  checkClientRelease,
  compareVersions,
  openClientRelease,
  signClientRelease,
} from './client-release.js';
import { rawPublicKey, signKeyDocument } from './key-document.js';

const R = {
  version: '1.2.3',
  platform: 'linux-x64',
  size: 10,
  sha256: 'ab'.repeat(32),
  issued: '2026-01-01T00:00:00.000Z',
};

test('client release: round trip; another key, a key document, bad fields refused', () => {
  const op = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  const pub = rawPublicKey(op.publicKey);
  assert.deepEqual(openClientRelease(signClientRelease(R, op.privateKey), pub), R);
  assert.throws(
    () => openClientRelease(signClientRelease(R, other.privateKey), pub),
    /does not verify/,
  );
  // The same key's signature over another kind of file is not a release.
  const doc = signKeyDocument(
    { serial: 1, issued: R.issued, keys: ['ss://YWVzLTEyOC1nY206cA@h:1'], mirrors: [] },
    op.privateKey,
  );
  assert.throws(() => openClientRelease(doc, pub), /not a ladder-client-release/);
  assert.throws(() => checkClientRelease({ ...R, version: '1.2' }), /x\.y\.z/);
  assert.throws(() => checkClientRelease({ ...R, sha256: 'zz' }), /sha256/);
  assert.throws(() => checkClientRelease({ ...R, size: 0 }), /size/);
  assert.throws(() => checkClientRelease({ ...R, platform: '../x' }), /platform/);
});

test('versions compare by number, not text', () => {
  assert.ok(compareVersions('0.10.0', '0.9.9') > 0);
  assert.ok(compareVersions('1.0.0', '1.0.1') < 0);
  assert.equal(compareVersions('2.3.4', '2.3.4'), 0);
  assert.throws(() => compareVersions('1.0', '1.0.0'), /cannot compare/);
});
