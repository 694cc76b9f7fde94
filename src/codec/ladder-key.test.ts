import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError } from '../errors.js';
import { formatLadderKey, parseLadderKey } from './ladder-key.js';
import { checkKeyParserRefusesCleanly } from '../../test/helpers/key-uri-fuzz.js';

const SS = 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwYXNz@198.18.0.1:8388#a';
const TROJAN = 'trojan://pass@198.18.0.1:443?sni=example.com';

test('round trip, with the name after # and unknown transports kept for newer clients', () => {
  const k = { transports: [TROJAN, SS, 'wss://198.18.0.1/x'], name: 'Family server' };
  const uri = formatLadderKey(k);
  assert.match(uri, /^ladder:\/\/[A-Za-z0-9_-]+#Family%20server$/);
  assert.deepEqual(parseLadderKey(uri), k);
  assert.deepEqual(parseLadderKey(formatLadderKey({ transports: [SS] })), { transports: [SS] });
});

test('a body with extra fields parses (forward compatible); bad keys name their problem', () => {
  const body = (o: unknown): string =>
    `ladder://${Buffer.from(JSON.stringify(o)).toString('base64url')}`;
  assert.deepEqual(parseLadderKey(body({ v: 1, transports: [SS], future: { x: 1 } })).transports, [
    SS,
  ]);
  assert.throws(() => parseLadderKey('ss://x'), /must start with 'ladder:\/\/'/);
  assert.throws(() => parseLadderKey('ladder://@@@'), /base64url/);
  assert.throws(() => parseLadderKey('ladder://AAAA'), /not base64url of JSON/);
  assert.throws(() => parseLadderKey(body({ v: 2, transports: [SS] })), /version 2/);
  assert.throws(() => parseLadderKey(body({ v: 1, transports: [] })), /no transports/);
  assert.throws(() => parseLadderKey(body({ v: 1, transports: ['not a uri'] })), /transport 1/);
  assert.throws(() => parseLadderKey(body([1])), /JSON object/);
  assert.throws(() => formatLadderKey({ transports: Array(200).fill(SS) }), ConfigError);
});

test('fuzz: any text is a key or a ConfigError, never another exception', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.string().map((s) => `ladder://${s}`),
        fc.uint8Array().map((b) => `ladder://${Buffer.from(b).toString('base64url')}`),
      ),
      (s) => {
        try {
          parseLadderKey(s);
        } catch (err) {
          assert.ok(err instanceof ConfigError, String(err));
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test('fuzz: any text after ladder:// parses or is refused with a ConfigError, never another error', () => {
  checkKeyParserRefusesCleanly('ladder', parseLadderKey, ['eyJ0cmFuc3BvcnRzIjpb']);
});
