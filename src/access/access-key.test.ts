import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DAY_MS,
  checkDataLimit,
  checkKeyId,
  checkName,
  dayOf,
  keyState,
  periodStartDay,
  usageInPeriod,
  type AccessKeyRecord,
} from './access-key.js';
import { Pace } from '../server/access/key-manager.js';
import { LadderError } from '../errors.js';

const NOW = Date.UTC(2026, 10, 23, 15, 0, 0); // 2026-11-23 15:00 UTC
const base: AccessKeyRecord = {
  id: '0',
  name: '',
  secret: 'x',
  method: 'chacha20-ietf-poly1305',
  transports: ['ss', 'trojan'],
  createdMs: 0,
  expiresMs: null,
  dataLimit: null,
  speedLimitBps: null,
  deviceLimit: null,
  disabled: false,
};

test('periods: total, rolling 30 days (Outline), calendar month and day, all in UTC', () => {
  const today = dayOf(NOW);
  assert.equal(periodStartDay('day', NOW), today);
  assert.equal(periodStartDay('30d', NOW), today - 29);
  assert.equal(periodStartDay('month', NOW), dayOf(Date.UTC(2026, 10, 1)));
  assert.equal(periodStartDay('total', NOW), -Infinity);
  const usage = new Map([
    [today, 5],
    [today - 1, 7],
    [today - 29, 11],
    [today - 30, 13],
    [dayOf(Date.UTC(2026, 9, 31)), 17], // 31 October: last month
  ]);
  assert.equal(usageInPeriod(usage, 'day', NOW), 5);
  assert.equal(usageInPeriod(usage, '30d', NOW), 5 + 7 + 11 + 17); // 31 October is 23 days back
  assert.equal(usageInPeriod(usage, 'month', NOW), 5 + 7);
  assert.equal(usageInPeriod(usage, 'total', NOW), 5 + 7 + 11 + 13 + 17);
  assert.equal(usageInPeriod(undefined, 'total', NOW), 0);
});

test('key state: disabled before expired before over-limit; the server default applies without a limit of its own', () => {
  const today = dayOf(NOW);
  const used = new Map([[today, 1000]]);
  assert.equal(keyState(base, used, null, NOW), 'active');
  assert.equal(keyState({ ...base, disabled: true, expiresMs: 1 }, used, null, NOW), 'disabled');
  assert.equal(keyState({ ...base, expiresMs: NOW }, used, null, NOW), 'expired');
  assert.equal(keyState({ ...base, expiresMs: NOW + 1 }, used, null, NOW), 'active');
  assert.equal(
    keyState({ ...base, dataLimit: { bytes: 1000, period: 'day' } }, used, null, NOW),
    'over-limit',
  );
  assert.equal(
    keyState({ ...base, dataLimit: { bytes: 1001, period: 'day' } }, used, null, NOW),
    'active',
  );
  assert.equal(keyState(base, used, { bytes: 999, period: '30d' }, NOW), 'over-limit');
  // a key's own limit overrides the default
  assert.equal(
    keyState(
      { ...base, dataLimit: { bytes: 5000, period: '30d' } },
      used,
      { bytes: 1, period: '30d' },
      NOW,
    ),
    'active',
  );
  // yesterday's bytes do not count against a daily limit
  assert.equal(
    keyState({ ...base, dataLimit: { bytes: 1000, period: 'day' } }, used, null, NOW + DAY_MS),
    'active',
  );
});

test('validation names the problem', () => {
  assert.throws(() => checkDataLimit({ bytes: -1 }), /non-negative integer/);
  assert.throws(() => checkDataLimit({ bytes: 1.5 }), /non-negative integer/);
  assert.throws(() => checkDataLimit({ bytes: 1, period: 'week' }), /period/);
  assert.deepEqual(checkDataLimit({ bytes: 0 }), { bytes: 0, period: '30d' });
  assert.throws(() => checkKeyId('a/b'), LadderError);
  assert.throws(() => checkKeyId(''), LadderError);
  assert.throws(() => checkKeyId('.'), /path step/);
  assert.throws(() => checkKeyId('..'), /path step/);
  assert.equal(checkKeyId('...'), '...');
  assert.equal(checkKeyId('.a'), '.a');
  assert.equal(checkKeyId('my-identifier'), 'my-identifier');
  assert.throws(() => checkName('a\nb'), /control/);
  assert.throws(() => checkName(5), /string/);
});

test('pace: a token bucket with a 64 KiB floor on its burst, driven by a given clock', () => {
  const p = new Pace(100_000, 0); // 100 kB/s, burst 65536
  assert.equal(p.take(65_536, 0), 0, 'the burst passes at once');
  assert.equal(p.take(10_000, 0), 100, '10 kB over: wait 100 ms');
  assert.equal(p.take(0, 100), 0, 'after 100 ms the debt is paid');
  assert.equal(p.take(50_000, 100), 500);
  // A long idle refills only up to the burst.
  assert.equal(p.take(65_536, 100_000), 0);
  assert.ok(p.take(1000, 100_000) > 0);
});
