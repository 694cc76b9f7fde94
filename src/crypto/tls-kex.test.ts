import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, diffieHellman } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { x25519Pair, x25519PrivateFromRaw, x25519Shared } from './tls-kex.js';

const v = JSON.parse(
  readFileSync(new URL('../../../test/vectors/tls13-rfc8448.json', import.meta.url), 'utf8'),
) as Record<string, string>;
const h = (k: string): Buffer => Buffer.from(v[k]!, 'hex');

/** The raw public key of an X25519 private key, through the SPKI DER encoding (RFC 8410). */
function rawPublicOf(priv: ReturnType<typeof x25519Pair>['priv']): Buffer {
  const der = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32);
}

test('x25519Shared: RFC 8448 §3 shared secret from the published client private and server public keys', () => {
  const s = x25519Shared(x25519PrivateFromRaw(h('clientPrivate')), h('serverPublic'));
  assert.equal(s?.toString('hex'), v.sharedSecret);
  // the same at an offset inside a larger buffer
  const padded = Buffer.concat([Buffer.from([1, 2, 3]), h('serverPublic'), Buffer.from([4])]);
  const view = padded.subarray(3, 35);
  assert.equal(
    x25519Shared(x25519PrivateFromRaw(h('clientPrivate')), view)?.toString('hex'),
    v.sharedSecret,
  );
});

test('x25519Pair: the public key belongs to the private key, and both sides agree', () => {
  const a = x25519Pair();
  const b = x25519Pair();
  assert.equal(a.pub.length, 32);
  assert.deepEqual(Buffer.from(a.pub), rawPublicOf(a.priv));
  assert.deepEqual(Buffer.from(b.pub), rawPublicOf(b.priv));
  const ab = x25519Shared(a.priv, b.pub);
  const ba = x25519Shared(b.priv, a.pub);
  assert.ok(ab && ba);
  assert.deepEqual(ab, ba);
  // and as node:crypto computes it from DER-encoded keys
  const bKey = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), b.pub]),
    format: 'der',
    type: 'spki',
  });
  assert.deepEqual(diffieHellman({ privateKey: a.priv, publicKey: bKey }), ab);
});

test('x25519Shared: a wrong length or an all-zero result is null (RFC 8446 §7.4.2)', () => {
  const a = x25519Pair();
  assert.equal(x25519Shared(a.priv, new Uint8Array(31)), null);
  assert.equal(x25519Shared(a.priv, new Uint8Array(33)), null);
  // the zero point and the point of order 1 (u = 1) give an all-zero secret
  assert.equal(x25519Shared(a.priv, new Uint8Array(32)), null);
  const one = new Uint8Array(32);
  one[0] = 1;
  assert.equal(x25519Shared(a.priv, one), null);
});
