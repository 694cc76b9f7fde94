import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  REPLAY_GENERATION_BITS,
  REPLAY_GENERATION_CAPACITY,
  REPLAY_HASHES,
  REPLAY_WINDOW_MS,
  RotatingSaltFilter,
  SALT_POOL_TTL_MS,
  SaltPool,
  bloomFalsePositiveRate,
} from './replay.js';

const salt = (i: number): Buffer => {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(0x5a17, 28);
  return b;
};

test('AEAD-2017 filter defaults: ≥ 10 min at 1,000 salts/s, within 16 MiB, false positives below 1e-9', () => {
  assert.ok(REPLAY_WINDOW_MS >= 10 * 60_000);
  assert.ok(REPLAY_GENERATION_CAPACITY >= 1_000 * (REPLAY_WINDOW_MS / 1000));
  const f = new RotatingSaltFilter(randomBytes(16));
  assert.ok(f.maxBytes <= 16 * 2 ** 20, `${f.maxBytes} bytes`);
  // Each generation holds at most `capacity` salts, and a query tests both generations.
  const p =
    2 * bloomFalsePositiveRate(REPLAY_GENERATION_BITS, REPLAY_HASHES, REPLAY_GENERATION_CAPACITY);
  assert.ok(p < 1e-9, `false-positive rate ${p}`);
});

test('RotatingSaltFilter: memory is allocated on first use and never exceeds two generations', () => {
  const f = new RotatingSaltFilter(randomBytes(16), {
    bits: 2 ** 12,
    capacity: 50,
    windowMs: 1000,
  });
  assert.equal(f.allocatedBytes, 0);
  let now = 0;
  for (let i = 0; i < 5_000; i++) {
    f.add(salt(i), now);
    now += i % 7;
    assert.ok(f.allocatedBytes <= f.maxBytes);
  }
  assert.equal(f.maxBytes, 2 * (2 ** 12 / 8));
  assert.ok(f.currentCount <= 50);
});

test('RotatingSaltFilter: measured false-positive rate on random salts matches the formula', () => {
  const bits = 2 ** 16;
  const hashes = 7;
  const n = 6_000;
  const f = new RotatingSaltFilter(randomBytes(16), { bits, hashes, capacity: n });
  // A fresh salt may itself be a false positive while the filter fills: count what went in.
  let inserted = 0;
  while (f.currentCount < n) if (f.add(randomBytes(32), 0)) inserted++;
  assert.equal(inserted, n);
  const predicted = bloomFalsePositiveRate(bits, hashes, n);
  const N = 200_000;
  let fp = 0;
  for (let i = 0; i < N; i++) if (f.has(randomBytes(32), 0)) fp++;
  const measured = fp / N;
  // predicted ≈ 0.53 %, about 1,070 of 200,000 with a standard deviation near 33: ±30 % is ten of them.
  assert.ok(
    measured > predicted * 0.7 && measured < predicted * 1.3,
    `measured ${measured}, predicted ${predicted}`,
  );
});

test('RotatingSaltFilter: window boundaries in time', () => {
  const W = 60_000;
  const f = new RotatingSaltFilter(randomBytes(16), {
    windowMs: W,
    capacity: 1_000,
    bits: 2 ** 16,
  });
  const t0 = 1_000_000;
  assert.equal(f.add(salt(1), t0), true);
  assert.equal(f.add(salt(1), t0 + W - 1), false, 'caught just before the window ends');
  // Rotation at t0 + W: salt 1 moves to the previous generation and is still caught.
  assert.equal(f.add(salt(2), t0 + W), true);
  assert.equal(f.has(salt(1), t0 + W), true);
  assert.equal(f.has(salt(2), t0 + 2 * W - 1), true, 'a salt added at a rotation lives a window');
  // At t0 + 2W the generation that held salt 1 is dropped.
  assert.equal(f.add(salt(3), t0 + 2 * W), true);
  assert.equal(f.has(salt(1), t0 + 2 * W), false, 'forgotten after two windows at most');
  assert.equal(f.has(salt(2), t0 + 2 * W), true);
  // A long silence drops everything older than the window.
  assert.equal(f.has(salt(3), t0 + 4 * W), false);
  assert.equal(f.add(salt(3), t0 + 4 * W), true);
});

test('RotatingSaltFilter: every salt of the last `capacity` is caught, whatever the rate', () => {
  const capacity = 500;
  // A fixed secret keeps the run deterministic: a fresh salt reported as seen (p ≈ 1e-12 per salt
  // here) would fail it on one machine and not the next.
  const secret = Buffer.from('every salt of the last capacity');
  const f = new RotatingSaltFilter(secret, { capacity, bits: 2 ** 16, hashes: 12 });
  for (let i = 0; i < 10_000; i++) {
    assert.equal(f.add(salt(i), 0), true, `salt ${i} is new`);
    if (i >= capacity) assert.equal(f.has(salt(i - capacity), 0), true, `salt ${i - capacity}`);
  }
});

test('RotatingSaltFilter: rejects a bit count that is not a power of two', () => {
  assert.throws(() => new RotatingSaltFilter(randomBytes(16), { bits: 1000 }), RangeError);
});

test('SaltPool: a wall-clock step back does not let a replay through', () => {
  const pool = new SaltPool();
  const s = salt(7);
  const wall = 1_700_000_000_000;
  assert.equal(pool.add(s, wall, 0), true);
  // 61 s later by the monotonic clock, but the wall clock was set back 5 minutes meanwhile: a replay
  // with the original timestamp passes the ±30 s check once the wall clock is near it again.
  assert.equal(pool.add(s, wall - 300_000 + 61_000, 61_000), false);
  assert.equal(pool.add(s, wall + 59_999, 400_000), false, 'wall time has not passed 60 s yet');
  assert.equal(pool.add(s, wall + SALT_POOL_TTL_MS, 400_000), true, 'both clocks agree');
});

test('SaltPool: a wall-clock step forward does not expire a salt early', () => {
  const pool = new SaltPool();
  const s = salt(8);
  assert.equal(pool.add(s, 0, 0), true);
  assert.equal(pool.add(s, 3_600_000, 1_000), false, 'monotonic time has not passed 60 s');
  assert.equal(pool.add(s, 3_600_000, SALT_POOL_TTL_MS), true);
});

test('SaltPool: sweeping keeps salts held by either clock', () => {
  const pool = new SaltPool();
  for (let i = 0; i < 100; i++) pool.add(salt(i), 1_000_000, i);
  // Monotonic time says every salt has expired, wall time (stepped back) says none has.
  pool.add(salt(1000), 900_000, 200_000);
  assert.equal(pool.size, 101);
  for (let i = 0; i < 100; i++) assert.equal(pool.has(salt(i), 900_000, 200_000), true);
  // Both agree: every one goes at the next sweep, before the new salt is added.
  pool.add(salt(1001), 1_100_000, 300_000);
  assert.equal(pool.size, 1);
});
