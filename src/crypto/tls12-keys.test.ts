import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { TLS12_SUITES, Tls12RecordProtection, prf12 } from './tls12-keys.js';
import { configureNativeAead } from './native-aead.js';

const v = JSON.parse(
  readFileSync(new URL('../../../test/vectors/tls12-prf.json', import.meta.url), 'utf8'),
) as {
  cases: {
    hash: 'sha256' | 'sha384';
    secret: string;
    label: string;
    seed: string;
    output: string;
  }[];
};

test('the TLS 1.2 PRF reproduces the published vectors (SHA-256, SHA-384)', () => {
  for (const c of v.cases) {
    const out = prf12(
      c.hash,
      Buffer.from(c.secret, 'hex'),
      c.label,
      Buffer.from(c.seed, 'hex'),
      c.output.length / 2,
    );
    assert.equal(out.toString('hex'), c.output, c.hash);
  }
});

const pair = (id: number, native: boolean): [Tls12RecordProtection, Tls12RecordProtection] => {
  const s = TLS12_SUITES.get(id)!;
  const key = Buffer.alloc(s.keyLength, 7);
  const iv = Buffer.alloc(s.ivLength, 9);
  configureNativeAead({ enabled: native });
  const p: [Tls12RecordProtection, Tls12RecordProtection] = [
    new Tls12RecordProtection(s, key, iv, true),
    new Tls12RecordProtection(s, key, iv, false),
  ];
  configureNativeAead({ enabled: true });
  return p;
};

test('every suite: node:crypto and the native addon read each other, at every size', () => {
  for (const id of TLS12_SUITES.keys())
    for (const [wn, rn] of [
      [false, true],
      [true, false],
    ] as const) {
      const [w] = pair(id, wn);
      const [, r] = pair(id, rn);
      for (const size of [0, 1, 1000, 16384]) {
        const content = Buffer.alloc(size, size & 0xff);
        const rec = w.seal(content, 23);
        assert.equal(rec.length, size + w.overhead);
        assert.equal(rec.readUInt16BE(3), size + w.overhead - 5);
        const plain = r.open(rec.subarray(0, 5), Buffer.from(rec.subarray(5)));
        assert.ok(plain, `0x${id.toString(16)} ${size}: opens`);
        assert.deepEqual(plain, content);
      }
    }
});

test('GCM: the explicit nonce is the sequence number (RFC 5288 §3)', () => {
  const [w] = pair(0xc02b, true);
  for (let seq = 0n; seq < 3n; seq++)
    assert.equal(w.seal(Buffer.from('x'), 23).readBigUInt64BE(5), seq);
});

test('refused: a flipped bit, another content type, a reordered or replayed record', () => {
  for (const id of [0xc02f, 0xcca8]) {
    const [w, r] = pair(id, true);
    const a = w.seal(Buffer.from('first'), 23);
    const b = w.seal(Buffer.from('second'), 23);
    const flipped = Buffer.from(a);
    flipped[flipped.length - 1]! ^= 1;
    assert.equal(r.open(flipped.subarray(0, 5), flipped.subarray(5)), null, 'flipped');
    const [, r2] = pair(id, true);
    const typed = Buffer.from(a);
    typed[0] = 22;
    assert.equal(r2.open(typed.subarray(0, 5), typed.subarray(5)), null, 'type in the AAD');
    const [, r3] = pair(id, true);
    assert.equal(r3.open(b.subarray(0, 5), Buffer.from(b.subarray(5))), null, 'reordered');
    const [, r4] = pair(id, true);
    assert.ok(r4.open(a.subarray(0, 5), Buffer.from(a.subarray(5))));
    assert.equal(r4.open(a.subarray(0, 5), Buffer.from(a.subarray(5))), null, 'replayed');
  }
});
