/** Chrome's ClientHello codec: deterministic vectors from fixed entropy, prefixes, fuzz. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CodecError } from '../errors.js';
import {
  CHROME_HELLO_ENTROPY,
  decodeClientHello,
  encodeChromeClientHello,
  isGrease,
  ja4,
  type ChromeHelloInput,
} from './tls-client-hello.js';

const input = (seed: number, name?: string): ChromeHelloInput => ({
  ...(name ? { serverName: name } : {}),
  alpn: ['h2', 'http/1.1'],
  random: new Uint8Array(32).fill(seed),
  sessionId: new Uint8Array(32).fill(seed + 1),
  mlkemPublic: new Uint8Array(1184).fill(seed + 2),
  hybridX25519Public: new Uint8Array(32).fill(seed + 3),
  x25519Public: new Uint8Array(32).fill(seed + 4),
  entropy: Uint8Array.from({ length: CHROME_HELLO_ENTROPY }, (_, i) => (i * 31 + seed) & 0xff),
});

test('the same input gives the same bytes; decoded fields match; JA4 is Chrome 156’s', () => {
  const a = encodeChromeClientHello(input(1, 'example.com'));
  assert.deepEqual(a, encodeChromeClientHello(input(1, 'example.com')));
  const d = decodeClientHello(a)!;
  assert.equal(d.bytesRead, a.length);
  const c = d.value;
  assert.equal(c.sni, 'example.com');
  assert.deepEqual(c.alpn, ['h2', 'http/1.1']);
  assert.deepEqual(
    c.keyShares!.map((k) => k.length),
    [1, 1216, 32],
  );
  assert.ok(isGrease(c.extensions[0]!) && isGrease(c.extensions.at(-1)!));
  assert.ok(isGrease(c.ciphers[0]!));
  assert.equal(ja4(c), 't13d1517h2_8daaf6152771_cb7bf5808d99');
});

test('every strict prefix needs more bytes; a hello at an offset decodes', () => {
  const a = encodeChromeClientHello(input(2));
  for (let i = 0; i < a.length; i += 7) assert.equal(decodeClientHello(a.subarray(0, i)), null);
  const padded = Buffer.concat([Buffer.alloc(3), a]);
  assert.equal(decodeClientHello(padded, 3)!.bytesRead, a.length);
});

test('fuzz: any bytes decode or throw a CodecError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
      const rec = Uint8Array.from([0x16, 3, 1, b.length >> 8, b.length & 0xff, ...b]);
      try {
        decodeClientHello(rec);
      } catch (e) {
        assert.ok(e instanceof CodecError, String(e));
      }
    }),
    { numRuns: 2000 },
  );
});

test('fuzz: a flipped byte in a real hello decodes or throws a CodecError', () => {
  const a = encodeChromeClientHello(input(3, 'x.example'));
  fc.assert(
    fc.property(fc.nat(a.length - 1), fc.integer({ min: 1, max: 255 }), (at, x) => {
      const b = Buffer.from(a);
      b[at]! ^= x;
      try {
        decodeClientHello(b);
      } catch (e) {
        assert.ok(e instanceof CodecError, String(e));
      }
    }),
    { numRuns: 2000 },
  );
});
