import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TrialBudget, sourcePrefix } from './udp-trial-budget.js';

test('sourcePrefix: IPv4 /24, IPv6 /64, IPv4-mapped as IPv4', () => {
  assert.equal(sourcePrefix('198.18.7.9'), '198.18.7');
  assert.equal(sourcePrefix('::ffff:198.18.7.200'), '198.18.7');
  assert.equal(sourcePrefix('2001:2:0:1:aa::1'), '2001:2:0:1');
  assert.equal(sourcePrefix('2001:2::1'), '2001:2:0:0');
  assert.equal(sourcePrefix('2001:0002:0000:0001::9'), sourcePrefix('2001:2:0:1::8'));
  assert.equal(sourcePrefix('::1'), '0:0:0:0');
  assert.equal(sourcePrefix('fe80::1%eth0'), 'fe80:0:0:0');
});

test('sourcePrefix: any string gives a string, never an exception', () => {
  fc.assert(
    fc.property(fc.string(), (s) => {
      assert.equal(typeof sourcePrefix(s), 'string');
    }),
  );
});

test('TrialBudget: a prefix is capped at its rate; others still get theirs; refills with time', () => {
  const b = new TrialBudget({ perPrefixBytesPerSec: 1000, globalBytesPerSec: 10_000 }, 0);
  assert.equal(b.takeFull('a', 600, 0), true);
  assert.equal(b.takeFull('a', 600, 0), true, 'admitted while the balance is positive');
  assert.equal(b.takeFull('a', 1, 0), false, 'in debt');
  assert.equal(b.takeFull('b', 900, 0), true, 'another prefix has its own share');
  // 'a' is 200 in debt: after 300 ms it is 100 up again.
  assert.equal(b.takeFull('a', 1, 199), false);
  assert.equal(b.takeFull('a', 1, 300), true);
});

test('TrialBudget: the global bucket caps all prefixes together', () => {
  const b = new TrialBudget({ perPrefixBytesPerSec: 1000, globalBytesPerSec: 2500 }, 0);
  let admitted = 0;
  for (let i = 0; i < 100; i++) if (b.takeFull(`p${i}`, 500, 0)) admitted++;
  assert.equal(admitted, 5);
  // One second refills it, never beyond one second's worth.
  admitted = 0;
  for (let i = 0; i < 100; i++) if (b.takeFull(`q${i}`, 500, 10_000)) admitted++;
  assert.equal(admitted, 5);
});

test('TrialBudget: hinted trials are refunded when they open, and do not draw on the full budget', () => {
  const b = new TrialBudget(
    { perPrefixBytesPerSec: 1000, globalBytesPerSec: 100, hintedBytesPerSec: 1000 },
    0,
  );
  assert.equal(b.takeFull('x', 200, 0), true);
  assert.equal(b.takeFull('y', 1, 0), false, 'the full budget is spent');
  for (let i = 0; i < 100; i++) {
    assert.equal(b.takeHinted('z', 900, 0), true, `hinted ${i}`);
    b.refundHinted('z', 900);
  }
});

test('TrialBudget: prefix buckets are bounded', () => {
  const b = new TrialBudget({ maxPrefixes: 10 }, 0);
  for (let i = 0; i < 1000; i++) b.takeFull(`p${i}`, 1, 0);
  assert.equal(b.prefixes, 10);
});
