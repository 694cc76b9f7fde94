/**
 * The online-key parsers fed random and mutated input (an online key URI, an Outline answer in
 * each of its forms, a signed key document, a key file): the only allowed outcomes are a value or a
 * LadderError, never another exception and never a hang. A mutated signed document must never
 * verify. Bounded runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { generateKeyPairSync } from 'node:crypto';
import { LadderError } from '../../src/errors.js';
import { openKeyDocument, rawPublicKey, signKeyDocument } from '../../src/codec/key-document.js';
import { outlineDocumentKey, parseOnlineKeyUri } from '../../src/codec/online-key.js';
import { checkKeyFile } from '../../src/app/key-file.js';
import { parseSsUri } from '../../src/codec/access-key-uri.js';
import { v2rayPluginOptions } from '../../src/codec/v2ray-plugin.js';
import { checkClientRelease, openClientRelease } from '../../src/codec/client-release.js';

function valueOrLadderError(f: () => unknown): void {
  try {
    f();
  } catch (err) {
    if (!(err instanceof LadderError)) throw err;
  }
}

const SEEDS = [
  'transport:\n  $type: tcpudp\n  tcp:\n    $type: shadowsocks\n    endpoint: h:1\n    cipher: chacha20-ietf-poly1305\n    secret: S\n',
  '{"server":"h","server_port":1,"password":"p","method":"aes-128-gcm","prefix":"\\u0016"}',
  'ss://YWVzLTEyOC1nY206cA@h:1',
  'error:\n  message: m\n',
  'a: &a [*a]\n',
  'x: &x {<<: *x}\n',
];

test('Outline answers: random and mutated text gives a key or a LadderError', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...SEEDS),
      fc.string({ maxLength: 200 }),
      fc.nat(300),
      (seed, noise, at) => {
        const i = Math.min(at, seed.length);
        valueOrLadderError(() => outlineDocumentKey(seed.slice(0, i) + noise + seed.slice(i)));
        valueOrLadderError(() => outlineDocumentKey(noise));
      },
    ),
    { numRuns: 1500, seed: 21 },
  );
});

/** Outline endpoint values built from the types the parser knows and some it does not. */
const endpointArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  endpoint: fc.oneof(
    { depthSize: 'small' },
    fc.string({ maxLength: 40 }),
    fc.constantFrom('h:1', '[::1]:443', 'h', ':1'),
    fc.record(
      {
        $type: fc.constantFrom('websocket', 'dial', 'first-supported', 'quic', 1),
        url: fc.oneof(
          fc.constantFrom(
            'wss://h/p',
            'ws://h:8/p?q',
            'https://h/',
            'wss://u:p@h/',
            'wss://[::1]/',
          ),
          fc.string({ maxLength: 40 }),
        ),
        address: fc.oneof(fc.constant('h:1'), fc.string({ maxLength: 20 })),
        dialer: fc.oneof(fc.constant(null), fc.object({ maxDepth: 1 })),
        endpoint: tie('endpoint'),
        endpoints: fc.oneof(fc.array(tie('endpoint'), { maxLength: 4 }), fc.string()),
      },
      { requiredKeys: ['$type'] },
    ),
  ),
})).endpoint;

test('Outline endpoints: any shape gives an ss:// key or a LadderError', () => {
  fc.assert(
    fc.property(endpointArb, (endpoint) => {
      const doc = JSON.stringify({
        transport: {
          $type: 'tcpudp',
          tcp: { $type: 'shadowsocks', endpoint, cipher: 'chacha20-ietf-poly1305', secret: 'S' },
        },
      });
      try {
        const key = outlineDocumentKey(doc);
        // What it makes must read back, with its WebSocket options intact.
        const back = parseSsUri(key);
        if (back.plugin) assert.ok(v2rayPluginOptions(back.plugin));
      } catch (err) {
        if (!(err instanceof LadderError)) throw err;
      }
    }),
    { numRuns: 1500, seed: 21 },
  );
});

test('online key URIs: random text gives a value or a LadderError', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('ssconf://', 'https://', 'https://h/p#ladder-pub=', 'ssconf://h/p#'),
      fc.string({ maxLength: 120 }),
      (prefix, rest) => valueOrLadderError(() => parseOnlineKeyUri(prefix + rest)),
    ),
    { numRuns: 1500, seed: 21 },
  );
});

test('signed documents: any byte changed never verifies; random text never throws otherwise', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = rawPublicKey(publicKey);
  const text = signKeyDocument(
    {
      serial: 3,
      issued: '2026-01-01T00:00:00Z',
      keys: ['ss://YWVzLTEyOC1nY206cA@h:1'],
      mirrors: [],
    },
    privateKey,
  );
  fc.assert(
    fc.property(fc.nat(text.length - 2), fc.integer({ min: 1, max: 255 }), (at, x) => {
      const mutated =
        text.slice(0, at) + String.fromCharCode(text.charCodeAt(at) ^ x) + text.slice(at + 1);
      if (mutated === text) return;
      try {
        const body = openKeyDocument(mutated, pub);
        // A change the base64url decoder ignores (it skips what is not base64url) may still
        // verify; the body must then be the signed one.
        assert.equal(body.serial, 3);
      } catch (err) {
        assert.ok(err instanceof LadderError, String(err));
      }
    }),
    { numRuns: 1500, seed: 21 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) =>
      valueOrLadderError(() => openKeyDocument(s, pub)),
    ),
    { numRuns: 1000, seed: 21 },
  );
});

test('key files: random JSON values give content or a LadderError', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (v) =>
      valueOrLadderError(() => checkKeyFile(v, '/tmp/k.json')),
    ),
    { numRuns: 1000, seed: 21 },
  );
});

test('client releases: random text and JSON give a release or a LadderError', () => {
  const pub = rawPublicKey(generateKeyPairSync('ed25519').publicKey);
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), fc.jsonValue({ maxDepth: 3 }), (s, v) => {
      valueOrLadderError(() => openClientRelease(s, pub));
      valueOrLadderError(() => checkClientRelease(v));
    }),
    { numRuns: 1000, seed: 21 },
  );
});
