/**
 * The fleet's change notifications (pg-fleet.ts parseChangeNotice): whatever the payload, a
 * notice or null, never an exception; every key written round-trips through its notice; a row
 * with any field of the wrong kind is refused (the node then resyncs instead of caching it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { keyNotice, parseChangeNotice } from '../../src/store/pg-fleet.js';
import { toRow } from '../../src/store/key-store.js';
import type { AccessKeyRecord } from '../../src/access/access-key.js';

const RUNS = { numRuns: 500 };

const key = fc.record({
  id: fc.string({ minLength: 1, maxLength: 40 }),
  name: fc.string({ maxLength: 100 }),
  secret: fc.string({ maxLength: 64 }),
  method: fc.constantFrom('chacha20-ietf-poly1305', 'aes-256-gcm', '2022-blake3-aes-128-gcm'),
  transports: fc.constantFrom(['ss'], ['trojan'], ['ss', 'trojan']),
  createdMs: fc.nat(),
  expiresMs: fc.option(fc.nat(), { nil: null }),
  dataLimit: fc.option(
    fc.record({ bytes: fc.nat(), period: fc.constantFrom('total', '30d', 'month', 'day') }),
    { nil: null },
  ),
  speedLimitBps: fc.option(fc.integer({ min: 1 }), { nil: null }),
  deviceLimit: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: null }),
  disabled: fc.boolean(),
}) as fc.Arbitrary<AccessKeyRecord>;

test('fuzz: random payloads give a notice or null, never an exception', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.string({ maxLength: 300 }).map((s) => `row:${s}`),
        fc.json({ maxDepth: 3 }).map((s) => `row:${s}`),
      ),
      (p) => {
        const n = parseChangeNotice(p);
        assert.ok(n === null || ['row', 'key', 'setting'].includes(n.kind));
      },
    ),
    RUNS,
  );
});

test('every key round-trips through its notice', () => {
  fc.assert(
    fc.property(key, fc.nat(), (k, rev) => {
      const n = parseChangeNotice(keyNotice(k, rev));
      assert.deepEqual(n, { kind: 'row', rev, key: JSON.parse(JSON.stringify(k)) });
    }),
    RUNS,
  );
});

test('a row with one field of the wrong kind is refused', () => {
  const wrong: Record<string, unknown[]> = {
    id: ['', 1, null],
    name: [null, 2],
    secret: [null, {}],
    method: ['rc4-md5', 3],
    transports: ['udp', '', null],
    created_ms: ['1', 1.5, null],
    expires_ms: ['x', 2 ** 60],
    limit_bytes: [-0.5, 'x'],
    limit_period: ['week', 7],
    speed_bps: [[1]],
    device_limit: [true],
    disabled: [2, true, 'false'],
    rev: ['1', 0.5, null],
  };
  fc.assert(
    fc.property(key, fc.constantFrom(...Object.keys(wrong)), fc.nat(), (k, field, i) => {
      const row: Record<string, unknown> = { ...toRow(k) };
      const bad = wrong[field]!;
      row[field] = bad[i % bad.length];
      assert.equal(parseChangeNotice(`row:${JSON.stringify(row)}`), null, `${field}`);
    }),
    RUNS,
  );
  assert.equal(parseChangeNotice('row:[]'), null);
  assert.equal(parseChangeNotice('key:'), null);
  assert.deepEqual(parseChangeNotice('key:7'), { kind: 'key', id: '7' });
});

test('a row too long for a notification names the key instead', () => {
  const k: AccessKeyRecord = {
    id: '9',
    name: 'é'.repeat(4000),
    secret: 's',
    method: 'aes-256-gcm',
    transports: ['ss'],
    createdMs: 1,
    expiresMs: null,
    dataLimit: null,
    speedLimitBps: null,
    deviceLimit: null,
    disabled: false,
  };
  assert.equal(keyNotice(k, 1), 'key:9');
});
