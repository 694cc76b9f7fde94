/**
 * relay() over real loopback TCP sockets: bytes and counts both ways, half-close in either
 * direction, an error or abort on one side takes both down, the idle timeout, exactly one result,
 * no listeners left behind, and bounded buffering when the reader stops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { relay } from './relay.js';

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

test('idle timeout: steady traffic keeps the relay alive past the timeout', async () => {
  const { app, a, b, origin } = await chain();
  const done = relay(a, b, { idleTimeoutMs: 1000 });
  let settled = false;
  void done.then(() => (settled = true));
  origin.on('data', () => {});
  // 1.5 s of traffic, a message every 10 ms: far inside the 1 s idle allowance at every point
  for (let i = 0; i < 150 && !settled; i++) {
    app.write('.');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(settled, false, 'still relaying');
  app.end();
  origin.end();
  assert.equal((await done).error, undefined);
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
