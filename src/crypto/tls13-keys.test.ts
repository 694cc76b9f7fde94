import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, diffieHellman } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  RecordProtection,
  deriveSecret,
  earlySecrets,
  expandLabel,
  hashOf,
  hkdfExtract,
  TLS13_SUITES,
} from './tls13-keys.js';
import { x25519PrivateFromRaw } from './tls-kex.js';
import { configureNativeAead } from './native-aead.js';

const v = JSON.parse(
  readFileSync(new URL('../../../test/vectors/tls13-rfc8448.json', import.meta.url), 'utf8'),
) as Record<string, string>;
const h = (k: string): Buffer => Buffer.from(v[k]!, 'hex');
const suite = TLS13_SUITES.get(0x1301)!;

test('RFC 8448 §3: X25519 shared secret from the published keys', () => {
  const pub = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), h('serverPublic')]),
    format: 'der',
    type: 'spki',
  });
  const s = diffieHellman({ privateKey: x25519PrivateFromRaw(h('clientPrivate')), publicKey: pub });
  assert.equal(s.toString('hex'), v.sharedSecret);
});

test('RFC 8448 §3: early, derived, handshake and traffic secrets, client key and IV', () => {
  const { early, derived } = earlySecrets(suite);
  assert.equal(early.toString('hex'), v.earlySecret);
  assert.equal(derived.toString('hex'), v.derivedEarly);
  const hs = hkdfExtract('sha256', derived, h('sharedSecret'));
  assert.equal(hs.toString('hex'), v.handshakeSecret);
  const th = hashOf('sha256', h('clientHello'), h('serverHello'));
  assert.equal(th.toString('hex'), v.transcriptHashChSh);
  const c = deriveSecret('sha256', hs, 'c hs traffic', th);
  assert.equal(c.toString('hex'), v.clientHandshakeTrafficSecret);
  assert.equal(
    deriveSecret('sha256', hs, 's hs traffic', th).toString('hex'),
    v.serverHandshakeTrafficSecret,
  );
  assert.equal(
    expandLabel('sha256', c, 'key', new Uint8Array(0), 16).toString('hex'),
    v.clientHandshakeKey,
  );
  assert.equal(
    expandLabel('sha256', c, 'iv', new Uint8Array(0), 12).toString('hex'),
    v.clientHandshakeIv,
  );
});

test('RFC 8448 negative: one changed ServerHello byte changes the traffic secret', () => {
  const sh = h('serverHello');
  sh[10]! ^= 1;
  const { derived } = earlySecrets(suite);
  const hs = hkdfExtract('sha256', derived, h('sharedSecret'));
  const c = deriveSecret('sha256', hs, 'c hs traffic', hashOf('sha256', h('clientHello'), sh));
  assert.notEqual(c.toString('hex'), v.clientHandshakeTrafficSecret);
});

test('record protection: the native addon and node:crypto seal and open each other’s records', () => {
  for (const suite of TLS13_SUITES.values()) {
    const secret = Buffer.alloc(suite.hashLength, 9);
    configureNativeAead({ enabled: false });
    const js = [new RecordProtection(suite, secret), new RecordProtection(suite, secret)];
    configureNativeAead({ enabled: true });
    const nat = [new RecordProtection(suite, secret), new RecordProtection(suite, secret)];
    for (const [w, r] of [
      [js[0]!, nat[0]!],
      [nat[1]!, js[1]!],
    ] as const)
      for (const size of [0, 1, 1000, 16384]) {
        const content = Buffer.alloc(size, size & 0xff);
        const rec = w.seal(content, 23);
        const plain = r.open(rec.subarray(0, 5), Buffer.from(rec.subarray(5)));
        assert.ok(plain, `${suite.cipher} ${size}: opens`);
        assert.deepEqual(plain, Buffer.concat([content, Buffer.from([23])]));
      }
    // A flipped bit fails on both paths (and the sequence numbers stay in step after a success).
    const w = new RecordProtection(suite, secret);
    const rec = w.seal(Buffer.from('x'), 23);
    rec[6]! ^= 1;
    assert.equal(
      new RecordProtection(suite, secret).open(rec.subarray(0, 5), Buffer.from(rec.subarray(5))),
      null,
    );
    configureNativeAead({ enabled: false });
    assert.equal(
      new RecordProtection(suite, secret).open(rec.subarray(0, 5), Buffer.from(rec.subarray(5))),
      null,
    );
    configureNativeAead({ enabled: true });
  }
});
