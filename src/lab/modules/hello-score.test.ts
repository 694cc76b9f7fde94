/**
 * ClientHello scoring (tspu.ts `hello-score`) with a list of known browser fingerprints: Chrome's
 * JA3 changes with every hello (its extensions are permuted), so only its JA4 can be listed; with
 * Chrome's JA4s listed, an fp=chrome hello scores below the threshold and Node's hello does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { helloScore, HELLO_SCORE_DEFAULTS } from './tspu.js';
import { CHROME_JA4S, ja3Hash } from './tls-fingerprint.js';
import { chromeClientHello } from '../../transport/chrome-hello.js';
import { nodeClientHelloRecord } from '../packet/node-hello.js';
import { parseClientHello } from '../packet/tls-client-hello.js';
import { decodeClientHello, ja4 } from '../../codec/tls-client-hello.js';

const SERVER = '198.19.2.20';
const params = {
  ...HELLO_SCORE_DEFAULTS,
  ranges: [{ cidr: '198.19.2.0/24', score: 1 }],
  allowedSni: ['allowed.lab'],
  knownFingerprints: [...CHROME_JA4S],
};

function score(record: Uint8Array): { score: number; parts: string[] } {
  const ch = parseClientHello(record);
  assert.ok(ch);
  return helloScore(ch.sni, ja3Hash(ch), SERVER, params, ja4(decodeClientHello(record)!.value));
}

test("Chrome's JA3 differs from hello to hello; its JA4 does not", () => {
  const hellos = Array.from({ length: 4 }, () =>
    chromeClientHello('ladder.lab', ['h2', 'http/1.1']),
  );
  const ja3s = new Set(hellos.map((h) => ja3Hash(parseClientHello(h.record)!)));
  const ja4s = new Set(hellos.map((h) => ja4(decodeClientHello(h.record)!.value)));
  assert.ok(ja3s.size > 1, 'extensions permuted');
  assert.equal(ja4s.size, 1);
});

test("with Chrome's JA4s known, fp=chrome to the /24 with another SNI scores 2 and passes; Node's hello scores 3", async () => {
  for (const alpn of [['h2', 'http/1.1'], ['http/1.1']]) {
    const chrome = score(chromeClientHello('ladder.lab', alpn).record);
    assert.equal(chrome.score, 2, chrome.parts.join(', '));
  }
  const node = score(await nodeClientHelloRecord('ladder.lab'));
  assert.equal(node.score, params.threshold, node.parts.join(', '));
  assert.match(node.parts.join(', '), /unknown fingerprint 1/);
  // a JA3 list alone cannot hold Chrome: the same hello scores as unknown without its JA4
  const ch = parseClientHello(chromeClientHello('ladder.lab', ['h2', 'http/1.1']).record)!;
  assert.equal(helloScore(ch.sni, ja3Hash(ch), SERVER, params).score, params.threshold);
});
