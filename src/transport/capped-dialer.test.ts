// The per-server connection cap: never more than `max` streams open at the inner dialer, waiting
// dials served in order as streams close, a cancelled wait or a failed dial gives its slot back,
// and the queue itself is capped. A fake inner dialer hands out PassThrough streams; every check
// waits for the event it is about (a close, a settled promise), never for time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, type Duplex } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { DialError, hasCode } from '../errors.js';
import { CappedDialer } from './capped-dialer.js';
import type { StreamDialer, Target } from './types.js';

const target: Target = { host: 'example.test', port: 443 };

/** An inner dialer that records how many of its streams are open at once. */
function fakeInner(fail?: (n: number) => boolean) {
  let dials = 0;
  let open = 0;
  let peak = 0;
  const dialer: StreamDialer = {
    dial: () => {
      dials++;
      if (fail?.(dials)) return Promise.reject(new DialError('ERR_DIAL_REFUSED', 'refused'));
      const s = new PassThrough();
      open++;
      peak = Math.max(peak, open);
      s.once('close', () => open--);
      return Promise.resolve(s);
    },
  };
  return { dialer, stats: () => ({ dials, open, peak }) };
}

/** Settles state: whether the promise has resolved after the pending callbacks have run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await turn();
  await turn();
  return done;
}

const closed = (s: Duplex) =>
  new Promise<void>((r) => {
    s.once('close', () => r());
    s.destroy();
  });

test('at most max streams open at once; a waiting dial gets the slot a closed stream frees', async () => {
  const inner = fakeInner();
  const d = new CappedDialer(inner.dialer, { max: 2 });
  const a = await d.dial(target);
  const b = await d.dial(target);
  const third = d.dial(target);
  const fourth = d.dial(target);
  assert.equal(await settled(third), false, 'the third waits');
  assert.equal(d.waiting, 2);
  assert.equal(inner.stats().dials, 2);
  await closed(a);
  const c = await third;
  assert.equal(
    await settled(fourth),
    false,
    'the fourth still waits: the freed slot went to the third',
  );
  await closed(b);
  const e = await fourth;
  assert.equal(inner.stats().peak, 2);
  assert.equal(d.open, 2);
  await closed(c);
  await closed(e as Duplex);
  assert.equal(d.open, 0);
  assert.equal(d.waiting, 0);
});

test('a wait cancelled by its signal leaves the queue with ERR_ABORTED; the slot is not lost', async () => {
  const inner = fakeInner();
  const d = new CappedDialer(inner.dialer, { max: 1 });
  const a = await d.dial(target);
  const ac = new AbortController();
  const waiting = d.dial(target, ac.signal);
  ac.abort(new Error('deadline'));
  await assert.rejects(waiting, (err) => hasCode(err, 'ERR_ABORTED'));
  assert.equal(d.waiting, 0);
  await closed(a);
  assert.equal(d.open, 0);
  const b = await d.dial(target);
  assert.equal(d.open, 1);
  await closed(b);
  // already aborted: fails at once, takes nothing
  await assert.rejects(d.dial(target, AbortSignal.abort()), (err) => hasCode(err, 'ERR_ABORTED'));
  assert.equal(d.open, 0);
});

test('an inner dial that fails gives its slot back and the error through', async () => {
  const inner = fakeInner((n) => n === 1);
  const d = new CappedDialer(inner.dialer, { max: 1 });
  await assert.rejects(d.dial(target), (err) => hasCode(err, 'ERR_DIAL_REFUSED'));
  assert.equal(d.open, 0);
  const s = await d.dial(target);
  await closed(s);
});

test('beyond maxWaiting a dial fails at once with ERR_DIAL naming the cap', async () => {
  const inner = fakeInner();
  const d = new CappedDialer(inner.dialer, { max: 1, maxWaiting: 2 });
  const a = await d.dial(target);
  const w1 = d.dial(target);
  const w2 = d.dial(target);
  await assert.rejects(d.dial(target), (err) => {
    assert.ok(hasCode(err, 'ERR_DIAL'));
    assert.match(
      (err as Error).message,
      /capped at \(--max-connections-per-server\)|1 this server is capped at/,
    );
    return true;
  });
  await closed(a);
  await closed((await w1) as Duplex);
  await closed((await w2) as Duplex);
  assert.equal(inner.stats().peak, 1);
});

test('a cap that is not a whole number of 1 or more is refused', () => {
  const inner = fakeInner();
  for (const max of [0, -1, 1.5, Number.NaN])
    assert.throws(() => new CappedDialer(inner.dialer, { max }), RangeError);
});

test("holds 'dial': at most max dials under way; a finished dial frees its slot while its stream stays open", async () => {
  const pending: ((s: Duplex) => void)[] = [];
  let started = 0;
  const inner: StreamDialer = {
    dial: () => {
      started++;
      return new Promise<Duplex>((resolve) => pending.push(resolve));
    },
  };
  const d = new CappedDialer(inner, { max: 2, holds: 'dial', what: 'handshakes at once' });
  const dials = [d.dial(target), d.dial(target), d.dial(target), d.dial(target)];
  await turn();
  assert.equal(started, 2, 'two handshakes under way, two wait');
  assert.equal(d.waiting, 2);
  pending.shift()!(new PassThrough());
  const first = await dials[0]!;
  await turn();
  assert.equal(started, 3, 'the finished dial gave its slot to the next, its stream still open');
  assert.equal(first.destroyed, false);
  while (pending.length > 0) {
    pending.shift()!(new PassThrough());
    await turn();
  }
  const streams = await Promise.all(dials);
  assert.equal(started, 4);
  assert.equal(d.open, 0);
  for (const s of streams) s.destroy();
});

test("holds 'dial': beyond maxWaiting a dial fails at once, naming the cap", async () => {
  const inner: StreamDialer = { dial: () => new Promise<Duplex>(() => {}) };
  const d = new CappedDialer(inner, {
    max: 1,
    maxWaiting: 1,
    holds: 'dial',
    what: 'TLS handshakes this client runs at once',
  });
  void d.dial(target);
  const ac = new AbortController();
  const waiting = d.dial(target, ac.signal);
  await assert.rejects(d.dial(target), (e: unknown) => {
    assert.ok(hasCode(e, 'ERR_DIAL'));
    assert.match((e as Error).message, /TLS handshakes this client runs at once/);
    return true;
  });
  ac.abort();
  await assert.rejects(waiting, (e: unknown) => hasCode(e, 'ERR_ABORTED'));
});
