/**
 * deadline(): the timer or the abort, whichever comes first, and nothing left behind once cleared.
 * Node's mock timers drive the clock, so no test waits for real time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deadline, signalWithin } from './deadline.js';

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

test('signalWithin: the deadline aborts the signal and says it timed out', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const step = signalWithin(1000);
  t.mock.timers.tick(999);
  assert.equal(step.signal.aborted, false);
  t.mock.timers.tick(1);
  assert.equal(step.signal.aborted, true);
  assert.equal(step.timedOut(), true);
});

test("signalWithin: the caller's abort passes through and is not a timeout", (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const parent = new AbortController();
  const step = signalWithin(1000, parent.signal);
  parent.abort();
  assert.equal(step.signal.aborted, true);
  assert.equal(step.timedOut(), false);
  t.mock.timers.tick(5000);
  assert.equal(step.timedOut(), false);
});

test('signalWithin: a parent already aborted aborts the step at once', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const step = signalWithin(1000, AbortSignal.abort());
  assert.equal(step.signal.aborted, true);
  t.mock.timers.tick(5000);
  assert.equal(step.timedOut(), false);
});

test('signalWithin: once cleared, the signal stays open', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const parent = new AbortController();
  const step = signalWithin(1000, parent.signal, { unref: true });
  step.clear();
  step.clear();
  t.mock.timers.tick(5000);
  parent.abort();
  assert.equal(step.signal.aborted, false);
});
