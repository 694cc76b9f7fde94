/** The lab's browser-only ClientHello rule (tls-fingerprint.ts `browserOnly`). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { browserHelloVerdict, TLS_FINGERPRINT_DEFAULTS } from './tls-fingerprint.js';
import { chromeClientHello } from '../../transport/chrome-hello.js';
import { nodeClientHelloRecord } from '../packet/node-hello.js';
import { CHROME_HELLO_ENTROPY, encodeChromeClientHello } from '../../codec/tls-client-hello.js';

test('fp=chrome hellos pass, for https (h2) and for WebSockets (http/1.1)', () => {
  assert.equal(
    browserHelloVerdict(chromeClientHello('a.example', ['h2', 'http/1.1']).record),
    null,
  );
  assert.equal(browserHelloVerdict(chromeClientHello('a.example', ['http/1.1']).record), null);
});

test('fp=chrome hellos that resume a session (pre_shared_key) pass too', () => {
  const resume = {
    identity: randomBytes(120),
    obfuscatedAge: 12345,
    psk: randomBytes(32),
    suite: { hash: 'sha256', hashLength: 32 } as const,
  };
  for (const alpn of [['h2', 'http/1.1'], ['http/1.1']])
    assert.equal(browserHelloVerdict(chromeClientHello('a.example', alpn, resume).record), null);
});

test("Node's hello (fp=node) is blocked: no GREASE", async () => {
  assert.equal(browserHelloVerdict(await nodeClientHelloRecord('a.example')), 'no GREASE');
});

test('a Chrome-shaped hello without the X25519MLKEM768 share is blocked', () => {
  const rec = encodeChromeClientHello({
    serverName: 'a.example',
    alpn: ['h2', 'http/1.1'],
    random: randomBytes(32),
    sessionId: randomBytes(32),
    mlkemPublic: new Uint8Array(1184),
    hybridX25519Public: new Uint8Array(32),
    x25519Public: new Uint8Array(32),
    entropy: randomBytes(CHROME_HELLO_ENTROPY),
    retry: { group: 0x001d, share: new Uint8Array(32) },
  });
  assert.match(browserHelloVerdict(rec)!, /post-quantum/);
});

test('a JA4 off the list, and bytes that are no ClientHello, are blocked', () => {
  assert.match(
    browserHelloVerdict(chromeClientHello('a.example', ['h3']).record)!,
    /JA4 .* not a browser/,
  );
  assert.match(browserHelloVerdict(Buffer.from([0x16, 3, 1, 0, 4, 1, 0, 0, 0]))!, /ClientHello/);
  assert.equal(TLS_FINGERPRINT_DEFAULTS.browserOnly, false, 'off unless a policy asks for it');
});
