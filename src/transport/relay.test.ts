/**
 * relay() over real loopback TCP sockets: bytes and counts both ways, half-close in either
 * direction, an error or abort on one side takes both down, the idle timeout, exactly one result,
 * no listeners left behind, and bounded buffering when the reader stops; and, over in-memory
 * ends that record how chunks arrive, the batching of a turn's chunks into one writev.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { relay } from './relay.js';
import { HOLD } from '../stream/recycled-reads.js';

/** Two connected loopback sockets: [the side we hand to relay, the far end]. */
async function tcpPair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const far = connect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  const near = await accepted;
  await new Promise<void>((r) => (far.connecting ? far.once('connect', r) : r()));
  server.close();
  return [near, far];
}

/**
 * app ⇄ [a  relay  b] ⇄ origin: `app` and `origin` are the far ends a test drives; `a` and `b` are
 * what relay() gets.
 */
async function chain(): Promise<{ app: Socket; a: Socket; b: Socket; origin: Socket }> {
  const [a, app] = await tcpPair();
  const [b, origin] = await tcpPair();
  for (const s of [app, origin]) s.on('error', () => {});
  return { app, a, b, origin };
}

function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('close', () => resolve(Buffer.concat(parts)));
  });
}

const EVENTS = ['data', 'end', 'drain', 'close', 'finish'] as const;
const counts = (s: Socket): number[] => EVENTS.map((e) => s.listenerCount(e));

test('bytes both ways, counted, then both sides close cleanly', async () => {
  const { app, a, b, origin } = await chain();
  const up = randomBytes(3 * 1024 * 1024 + 7);
  const down = randomBytes(2 * 1024 * 1024 + 3);
  let seenUp = 0;
  let seenDown = 0;
  const before = [counts(a), counts(b)];
  const done = relay(a, b, { onAToB: (n) => (seenUp += n), onBToA: (n) => (seenDown += n) });
  const gotAtOrigin = readAll(origin);
  const gotAtApp = readAll(app);
  app.end(up);
  origin.end(down);
  const r = await done;
  assert.equal(r.error, undefined);
  assert.equal(r.aToB, up.length);
  assert.equal(r.bToA, down.length);
  assert.equal(seenUp, up.length);
  assert.equal(seenDown, down.length);
  assert.ok((await gotAtOrigin).equals(up));
  assert.ok((await gotAtApp).equals(down));
  assert.deepEqual([counts(a), counts(b)], before, 'every listener relay() added is gone');
});

test('half-close: the app ends first, the response still flows back afterwards', async () => {
  const { app, a, b, origin } = await chain();
  const done = relay(a, b);
  const gotAtApp = readAll(app);
  // The origin answers only once it has seen the end of the request (like HTTP/1.0 or `nc -N`).
  const request = readAll(origin);
  app.end('request');
  assert.equal((await request).toString(), 'request');
  assert.ok(!a.destroyed && !b.destroyed, 'half-closed, not torn down');
  origin.write('response, ');
  origin.end('after the request ended');
  assert.equal((await gotAtApp).toString(), 'response, after the request ended');
  const r = await done;
  assert.equal(r.error, undefined);
  assert.equal(r.aToB, 7);
});

test('half-close: the origin ends first, the app can still send', async () => {
  const { app, a, b, origin } = await chain();
  const done = relay(a, b);
  const gotAtApp = readAll(app);
  origin.end('banner');
  assert.equal((await gotAtApp).toString(), 'banner');
  const gotAtOrigin = readAll(origin);
  app.end('late words');
  assert.equal((await gotAtOrigin).toString(), 'late words');
  assert.equal((await done).error, undefined);
});

test('an error on one side destroys both and is reported once', async () => {
  const { app, a, b, origin } = await chain();
  const done = relay(a, b);
  const appSeesTheEnd = new Promise((r) => app.once('end', r).resume());
  app.write('x');
  origin.resetAndDestroy(); // RST towards b
  const r = await done;
  assert.ok(r.error, 'an error is reported');
  assert.ok(a.destroyed && b.destroyed);
  await appSeesTheEnd; // the app's connection is closed too
  // late errors after the result are swallowed, not thrown
  a.emit('error', new Error('late'));
  b.emit('error', new Error('late'));
});

test('a side that is destroyed without an error takes the other with it', async () => {
  const { a, b } = await chain();
  const done = relay(a, b);
  b.destroy();
  const r = await done;
  assert.ok(a.destroyed);
  assert.equal(r.aToB, 0);
});

test(
  'a side that ends and is destroyed while the other still sends: the other is destroyed',
  { timeout: 30_000 },
  async () => {
    // A Mux.Cool session the client ended (End): its readable ends, then it is destroyed, while the
    // origin still has a download to send. Nobody can take those bytes: the origin goes too, at once,
    // not at the idle timeout with its socket unread.
    const { a, b, origin } = await chain();
    const done = relay(a, b);
    const originClosed = new Promise((r) => origin.once('close', r));
    const sending = setInterval(() => origin.write(Buffer.alloc(64 * 1024)), 5);
    try {
      a.end();
      a.push(null); // what the session does on End: its readable ends...
      await new Promise((r) => setImmediate(r));
      a.destroy(); // ...and then it is destroyed
      const r = await done;
      assert.ok(b.destroyed, 'the origin side is destroyed with it');
      assert.equal(r.error, undefined);
      await originClosed;
    } finally {
      clearInterval(sending);
    }
  },
);

test('a side already destroyed when relay() is called: both end at once, no hang', async () => {
  const { a, b } = await chain();
  a.destroy();
  await new Promise((r) => a.once('close', r)); // its 'close' is already history
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    relay(a, b),
    new Promise<null>((res) => (timer = setTimeout(() => res(null), 5000))),
  ]);
  clearTimeout(timer);
  assert.ok(r, 'relay() resolved');
  assert.ok(b.destroyed);
  assert.equal(r.aToB + r.bToA, 0);
});

test('abort: a signal cancels the relay with ERR_ABORTED, already aborted or later', async () => {
  const c1 = await chain();
  const ac = new AbortController();
  const done = relay(c1.a, c1.b, { signal: ac.signal });
  c1.app.write('hello');
  await new Promise<void>((r) => c1.origin.once('data', () => r()));
  ac.abort();
  const r = await done;
  assert.equal(r.error?.code, 'ERR_ABORTED');
  assert.equal(r.aToB, 5);
  assert.ok(c1.a.destroyed && c1.b.destroyed);

  const c2 = await chain();
  const r2 = await relay(c2.a, c2.b, { signal: AbortSignal.abort() });
  assert.equal(r2.error?.code, 'ERR_ABORTED');
  assert.ok(c2.a.destroyed && c2.b.destroyed);
});

test('idle timeout: no bytes either way destroys both with ERR_IDLE_TIMEOUT', async () => {
  const { a, b } = await chain();
  const r = await relay(a, b, { idleTimeoutMs: 150 });
  assert.equal(r.error?.code, 'ERR_IDLE_TIMEOUT');
  assert.ok(a.destroyed && b.destroyed);
});

test('idle timeout: steady traffic keeps the relay alive past the timeout', async (t) => {
  const { app, a, b, origin } = await chain();
  // The relay's idle check runs on setInterval and Date.now: driven by mock timers, so the outcome
  // depends on the traffic only, never on how fast this machine is.
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
  const done = relay(a, b, { idleTimeoutMs: 1000 });
  let settled = false;
  void done.then(() => (settled = true));
  // 1.5 s of (mock) time, a byte every 100 ms, each one seen at the origin before time moves on
  for (let i = 0; i < 15; i++) {
    const arrived = new Promise((r) => origin.once('data', r));
    app.write('.');
    await arrived;
    t.mock.timers.tick(100);
    await new Promise((r) => setImmediate(r)); // let a closing relay settle
    assert.equal(settled, false, `still relaying after ${(i + 1) * 100} ms`);
  }
  // and without traffic, the same relay times out once the allowance has passed
  t.mock.timers.tick(1500);
  const r = await done;
  assert.equal(r.error?.code, 'ERR_IDLE_TIMEOUT');
  app.destroy();
  origin.destroy();
});

test('bounded buffering: a reader that stops reading stops the writer', async () => {
  const { app, a, b, origin } = await chain();
  const done = relay(a, b);
  // The origin pushes as fast as the path allows; the app reads 1 MiB, then stops.
  const chunk = randomBytes(64 * 1024);
  const TOTAL = 512 * 1024 * 1024;
  let written = 0;
  const pump = (): void => {
    while (written < TOTAL) {
      written += chunk.length;
      if (!origin.write(chunk)) return void origin.once('drain', pump);
    }
  };
  pump();
  let read = 0;
  await new Promise<void>((r) => {
    const onData = (d: Buffer): void => {
      read += d.length;
      if (read >= 1024 * 1024) {
        app.pause();
        app.off('data', onData);
        r();
      }
    };
    app.on('data', onData);
  });
  // wait (bounded) until the origin's writes stop advancing
  let last = -1;
  for (let i = 0; i < 100 && written !== last; i++) {
    last = written;
    await new Promise((r) => setTimeout(r, 100));
  }
  const inFlight = written - read;
  app.destroy();
  origin.destroy();
  await done;
  assert.ok(written < TOTAL, 'the origin could not push everything');
  // two loopback hops of kernel buffers (a few MiB each) plus the streams' high-water marks
  assert.ok(inFlight < 32 * 1024 * 1024, `in flight when stalled: ${inFlight} bytes`);
});

test('pacing: a positive pace pauses the source, and every byte still arrives in order', async () => {
  const { app, a, b, origin } = await chain();
  const down = randomBytes(512 * 1024 + 11);
  let paces = 0;
  let pausedSeen = 0;
  const done = relay(a, b, {
    paceBToA: () => {
      paces++;
      // The relay pauses b after this returns; look on the next turn.
      setImmediate(() => {
        if (b.isPaused()) pausedSeen++;
      });
      return 5;
    },
  });
  const gotAtApp = readAll(app);
  app.end();
  origin.end(down);
  const r = await done;
  assert.equal(r.error, undefined);
  assert.ok((await gotAtApp).equals(down));
  assert.ok(paces > 0);
  assert.ok(pausedSeen > 0, 'the source was paused while paced');
});

/**
 * In-memory ends for the write-batching tests: `src` emits what the test pushes; `dst` records
 * how each chunk reached it (a write of its own, or a writev of several), completing writes when
 * `release()` is called (or at once when `instant`).
 */
function batchEnds(options: { lends?: boolean; highWaterMark?: number; instant?: boolean } = {}) {
  const src = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
  if (options.lends) (src as unknown as Record<symbol, () => void>)[HOLD] = () => {};
  const calls: string[] = [];
  const received: Buffer[] = [];
  const waiting: (() => void)[] = [];
  const complete = (cb: () => void): void => {
    if (options.instant ?? true) cb();
    else waiting.push(cb);
  };
  const dst = new Duplex({
    read() {},
    highWaterMark: options.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _e, cb) {
      calls.push(`write ${chunk.length}`);
      received.push(chunk);
      complete(cb);
    },
    writev(chunks, cb) {
      calls.push(`writev ${chunks.map((c) => (c.chunk as Buffer).length).join('+')}`);
      for (const c of chunks) received.push(c.chunk as Buffer);
      complete(cb);
    },
  });
  const release = (): void => {
    for (const cb of waiting.splice(0)) cb();
  };
  return { src, dst, calls, received, release };
}
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('batching: the chunks a source emits in one turn after the first leave in one writev, in order', async () => {
  const { src, dst, calls, received } = batchEnds();
  const done = relay(src, dst);
  const chunks = [1000, 2000, 3000, 4000].map((n) => randomBytes(n));
  for (const c of chunks) src.push(c); // one turn, as a TLS socket's records of one read
  await nextTurn();
  await nextTurn();
  // The first goes at once (a lone reply waits for nothing); the rest wait for the turn to end.
  assert.deepEqual(calls, ['write 1000', 'writev 2000+3000+4000']);
  assert.deepEqual(Buffer.concat(received), Buffer.concat(chunks));
  // Next turn: the same again, not one batch held open across turns.
  src.push(Buffer.alloc(10));
  src.push(Buffer.alloc(20));
  await nextTurn();
  await nextTurn();
  assert.deepEqual(calls.slice(2), ['write 10', 'write 20']);
  src.push(null);
  dst.push(null);
  const r = await done;
  assert.equal(r.aToB, 10_030);
  assert.equal(r.error, undefined);
});

test('batching: a source that lends its chunks (recycled reads) is never corked', async () => {
  const { src, dst, calls } = batchEnds({ lends: true });
  const done = relay(src, dst);
  for (const n of [100, 200, 300]) src.push(Buffer.alloc(n));
  await nextTurn();
  await nextTurn();
  assert.deepEqual(calls, ['write 100', 'write 200', 'write 300']);
  src.destroy();
  await done;
});

test('batching: a full batch pauses the source once uncorked, and drain resumes it; nothing is lost', async () => {
  const { src, dst, calls, received, release } = batchEnds({ highWaterMark: 1024, instant: false });
  const done = relay(src, dst);
  // The first chunk fits under the high-water mark; the corked rest do not.
  const chunks = [randomBytes(100), ...Array.from({ length: 4 }, () => randomBytes(4096))];
  for (const c of chunks) src.push(c);
  assert.equal(src.isPaused(), false, 'no pause while the batch is corked');
  await nextTurn();
  await nextTurn();
  assert.equal(src.isPaused(), true, 'over the high-water mark once uncorked: the source waits');
  release(); // the first write completes; the corked four follow as one writev
  await nextTurn();
  assert.deepEqual(calls, ['write 100', 'writev 4096+4096+4096+4096']);
  assert.equal(src.isPaused(), true, 'still over the mark until the writev completes');
  release();
  await nextTurn();
  assert.equal(src.isPaused(), false, "'drain' resumed the source");
  assert.deepEqual(Buffer.concat(received), Buffer.concat(chunks));
  src.push(null);
  dst.push(null);
  const r = await done;
  assert.equal(r.aToB, 100 + 4 * 4096);
});

test('batching: a source that ends within the batch still delivers every byte before the end', async () => {
  const { src, dst, received } = batchEnds();
  const finished = new Promise<void>((r) => dst.once('finish', () => r()));
  const done = relay(src, dst);
  const chunks = [randomBytes(500), randomBytes(600), randomBytes(700)];
  for (const c of chunks) src.push(c);
  src.push(null);
  await finished;
  assert.deepEqual(Buffer.concat(received), Buffer.concat(chunks));
  dst.push(null);
  assert.equal((await done).aToB, 1800);
});
