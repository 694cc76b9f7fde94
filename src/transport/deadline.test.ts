/**
 * deadline(): the timer or the abort, whichever comes first, and nothing left behind once cleared.
 * Node's mock timers drive the clock, so no test waits for real time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deadline } from './deadline.js';

test('the timer fires onTimeout at the deadline, not before', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const seen: string[] = [];
  deadline(
    1000,
    undefined,
    () => seen.push('timeout'),
    () => seen.push('abort'),
  );
  t.mock.timers.tick(999);
  assert.deepEqual(seen, []);
  t.mock.timers.tick(1);
  assert.deepEqual(seen, ['timeout']);
});

test('an abort calls onAbort at once', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const seen: string[] = [];
  const ac = new AbortController();
  deadline(
    1000,
    ac.signal,
    () => seen.push('timeout'),
    () => seen.push('abort'),
  );
  ac.abort();
  assert.deepEqual(seen, ['abort']);
});

test('once cleared, neither the timer nor the signal calls back', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const seen: string[] = [];
  const ac = new AbortController();
  const clear = deadline(
    1000,
    ac.signal,
    () => seen.push('timeout'),
    () => seen.push('abort'),
  );
  clear();
  clear();
  t.mock.timers.tick(5000);
  ac.abort();
  assert.deepEqual(seen, []);
});
