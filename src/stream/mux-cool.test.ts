import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import {
  FRAME_POOL_KEEP,
  FRAME_POOL_MAX,
  FRAME_POOL_TRIM_MS,
  MUX_PADDED_FRAMES,
  MuxCool,
  pooledFrameBuffers,
  type MuxSession,
} from './mux-cool.js';
import {
  MUX_OPTION,
  MUX_STATUS,
  classifyMuxStart,
  decodeMuxHeader,
  encodeMuxHeader,
  muxHeaderLength,
  type MuxFrameHeader,
} from '../codec/mux-cool.js';
import { duplexPair } from '../../test/helpers/duplex-pair.js';
import { LadderError } from '../errors.js';
import type { Target } from '../core/target.js';
import { KEEPS } from '../core/lent-read.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function collect(d: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    d.on('data', (c: Buffer) => parts.push(Buffer.from(c)));
    d.on('end', () => resolve(Buffer.concat(parts)));
    d.on('error', reject);
  });
}

function frame(h: MuxFrameHeader, data?: Buffer): Buffer {
  const out = Buffer.alloc(muxHeaderLength(h) + (data?.length ?? 0));
  const n = encodeMuxHeader(h, out, 0);
  data?.copy(out, n);
  return out;
}

/** A New frame (TCP, no data) for session `id` to `target`. */
function newFrame(id: number, target: Target): Buffer {
  return frame({ sessionId: id, status: MUX_STATUS.NEW, option: 0, network: 1, target });
}

function parseFrames(bytes: Buffer): { h: MuxFrameHeader; data: string }[] {
  const out: { h: MuxFrameHeader; data: string }[] = [];
  let p = 0;
  while (p < bytes.length) {
    const d = decodeMuxHeader(bytes, p)!;
    p += d.bytesRead;
    const n = d.value.dataLength ?? 0;
    out.push({ h: d.value, data: bytes.subarray(p, p + n).toString() });
    p += n;
  }
  return out;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A server MuxCool fed by hand, recording what it writes and the sessions it opens. */
function serverUnderTest(onSession?: (s: MuxSession, t: Target) => void, padding = false) {
  const written: Buffer[] = [];
  const conn = new Duplex({
    read() {},
    write(c: Buffer, _e, cb) {
      written.push(Buffer.from(c));
      cb();
    },
  });
  const sessions: { s: MuxSession; target: Target }[] = [];
  const mux = new MuxCool(conn, {
    role: 'server',
    padding,
    onSession: (s, target) => {
      sessions.push({ s, target });
      onSession?.(s, target);
    },
  });
  return {
    mux,
    conn,
    sessions,
    feed: (b: Buffer) => conn.push(b),
    wire: () => Buffer.concat(written),
    writes: written,
  };
}

test('a client and a server carry three sessions at once, 1 MiB each, echoed', async () => {
  const [a, b] = duplexPair();
  const targets: Target[] = [];
  const serverClosed: Promise<unknown>[] = [];
  new MuxCool(b, {
    role: 'server',
    onSession: (s, target) => {
      targets.push(target);
      serverClosed.push(new Promise((r) => s.on('close', r)));
      s.on('data', (d: Buffer) => s.write(d));
    },
  });
  const client = new MuxCool(a, { role: 'client' });
  const runs = [0, 1, 2].map(async (i) => {
    const s = client.open({ host: `site${i}.example`, port: 443 });
    const data = randomBytes(1 << 20);
    const parts: Buffer[] = [];
    let n = 0;
    const echoed = new Promise<void>((resolve) =>
      s.on('data', (c: Buffer) => {
        parts.push(Buffer.from(c));
        n += c.length;
        if (n === data.length) resolve();
      }),
    );
    for (let at = 0; at < data.length; at += 50_000) s.write(data.subarray(at, at + 50_000));
    await echoed;
    assert.equal(sha(Buffer.concat(parts)), sha(data));
    // Mux.Cool has no half-close: a client ends its session with End when it is done with it.
    s.destroy();
  });
  await Promise.all(runs);
  await Promise.all(serverClosed);
  assert.deepEqual(targets.map((t) => t.host).sort(), [
    'site0.example',
    'site1.example',
    'site2.example',
  ]);
});

test('server: New with data, Keep, End, split at every byte; answers as Keep then End', async () => {
  const wire = Buffer.concat([
    frame(
      {
        sessionId: 1,
        status: MUX_STATUS.NEW,
        option: MUX_OPTION.DATA,
        network: 1,
        target: { host: '127.0.0.1', port: 8388 },
        dataLength: 5,
      },
      Buffer.from('hello'),
    ),
    frame(
      { sessionId: 0, status: MUX_STATUS.KEEP_ALIVE, option: MUX_OPTION.DATA, dataLength: 3 },
      Buffer.from('zzz'),
    ),
    frame(
      { sessionId: 1, status: MUX_STATUS.KEEP, option: MUX_OPTION.DATA, dataLength: 6 },
      Buffer.from(' world'),
    ),
    frame({ sessionId: 1, status: MUX_STATUS.END, option: 0 }),
  ]);
  for (const step of [1, 2, 5, wire.length]) {
    const t = serverUnderTest();
    for (let i = 0; i < wire.length; i += step) t.feed(wire.subarray(i, i + step));
    await tick();
    assert.equal(t.sessions.length, 1);
    const { s, target } = t.sessions[0]!;
    assert.deepEqual(target, { host: '127.0.0.1', port: 8388 });
    const got = await collect(s);
    assert.equal(got.toString(), 'hello world', `step ${step}`);
    await tick();
    assert.ok(s.destroyed, 'End closes the session both ways once its data is read');
    assert.equal(t.mux.sessions, 0);
    // End is answered with End (as v2ray's server does), and nothing else is sent.
    assert.deepEqual(
      parseFrames(t.wire()).map((f) => [f.h.sessionId, f.h.status]),
      [[1, MUX_STATUS.END]],
    );
  }
});

test('server: a session that answers sends Keep frames and End when it ends', async () => {
  const t = serverUnderTest((s) => {
    s.resume();
    s.write('abc');
    s.end('def');
  });
  t.feed(newFrame(7, { host: 'example.com', port: 80 }));
  await tick();
  assert.deepEqual(
    parseFrames(t.wire()).map((f) => [f.h.sessionId, f.h.status, f.data]),
    [
      [7, MUX_STATUS.KEEP, 'abc'],
      [7, MUX_STATUS.KEEP, 'def'],
      [7, MUX_STATUS.END, ''],
    ],
  );
});

test('a large write leaves as frames of equal size, all of a 128 KiB slice in one write of the connection', async () => {
  const t = serverUnderTest((s) => {
    s.resume();
    s.write(Buffer.alloc(65_536, 1)); // two frames of 32 KiB, one write
    s.write(Buffer.alloc(200_000, 2)); // four frames of 50,000: two writes of two frames
    s.write('x'); // one frame
  });
  t.feed(newFrame(2, { host: 'example.com', port: 80 }));
  await tick();
  const frames = parseFrames(t.wire());
  assert.deepEqual(
    frames.map((f) => [f.h.status, f.h.dataLength]),
    [
      [MUX_STATUS.KEEP, 32_768],
      [MUX_STATUS.KEEP, 32_768],
      [MUX_STATUS.KEEP, 50_000],
      [MUX_STATUS.KEEP, 50_000],
      [MUX_STATUS.KEEP, 50_000],
      [MUX_STATUS.KEEP, 50_000],
      [MUX_STATUS.KEEP, 1],
    ],
  );
  assert.deepEqual(
    t.writes.map((w) => w.length),
    [2 * (8 + 32_768), 2 * (8 + 50_000), 2 * (8 + 50_000), 8 + 1],
  );
  assert.ok(frames.slice(2, 6).every((f) => f.data === '\x02'.repeat(50_000)));
});

test('data of one session across frame boundaries in one read arrives as one piece', async () => {
  const t = serverUnderTest();
  const got: [number, string][] = [];
  const open = (id: number): Buffer => newFrame(id, { host: '198.18.0.1', port: 1 });
  const keep = (id: number, text: string): Buffer =>
    frame(
      { sessionId: id, status: MUX_STATUS.KEEP, option: MUX_OPTION.DATA, dataLength: text.length },
      Buffer.from(text),
    );
  t.feed(Buffer.concat([open(1), open(2)]));
  await tick();
  for (const { s } of t.sessions) s.on('data', (d: Buffer) => got.push([s.id, d.toString()]));
  const ended = new Promise((r) => t.sessions[0]!.s.on('end', r));
  t.feed(
    Buffer.concat([
      keep(1, 'ab'),
      keep(1, 'cd'),
      keep(2, 'XY'),
      keep(1, 'ef'),
      frame({ sessionId: 0, status: MUX_STATUS.KEEP_ALIVE, option: 0 }),
      keep(1, 'gh'),
      frame({ sessionId: 1, status: MUX_STATUS.END, option: 0 }),
    ]),
  );
  await ended;
  await tick();
  // Pieces per session, in order (two sessions' streams each emit on their own schedule). A frame
  // of another session or a KeepAlive in between ends a piece.
  assert.deepEqual(
    got.filter(([id]) => id === 1).map(([, d]) => d),
    ['abcd', 'ef', 'gh'],
  );
  assert.deepEqual(
    got.filter(([id]) => id === 2).map(([, d]) => d),
    ['XY'],
  );
});

test('server: data for an unknown session is answered with End; UDP is refused with End(error)', async () => {
  const t = serverUnderTest();
  t.feed(
    frame(
      { sessionId: 9, status: MUX_STATUS.KEEP, option: MUX_OPTION.DATA, dataLength: 2 },
      Buffer.from('hi'),
    ),
  );
  t.feed(
    frame({
      sessionId: 3,
      status: MUX_STATUS.NEW,
      option: 0,
      network: 2,
      target: { host: '::1', port: 53 },
    }),
  );
  await tick();
  assert.equal(t.sessions.length, 0);
  assert.deepEqual(
    parseFrames(t.wire()).map((f) => [f.h.sessionId, f.h.status, f.h.option]),
    [
      [9, MUX_STATUS.END, 0],
      [3, MUX_STATUS.END, MUX_OPTION.ERROR],
    ],
  );
});

test('server: End with the error option destroys the session with ERR_MUX_COOL', async () => {
  const t = serverUnderTest();
  t.feed(newFrame(1, { host: '198.18.0.1', port: 1 }));
  await tick();
  const s = t.sessions[0]!.s;
  const err = new Promise<Error>((r) => s.on('error', r));
  t.feed(frame({ sessionId: 1, status: MUX_STATUS.END, option: MUX_OPTION.ERROR }));
  const e = await err;
  assert.ok(e instanceof LadderError && e.code === 'ERR_MUX_COOL');
});

test('malformed framing or a second New destroys the connection and its sessions', async () => {
  for (const bad of [
    Buffer.from('0201', 'hex'), // metadata over 512
    Buffer.from('0004000109 00'.replace(/ /g, ''), 'hex'), // status 9
    newFrame(1, { host: '198.18.0.1', port: 1 }),
  ]) {
    const t = serverUnderTest();
    t.feed(newFrame(1, { host: '198.18.0.1', port: 1 }));
    await tick();
    const s = t.sessions[0]!.s;
    const err = new Promise<Error>((r) => s.on('error', r));
    t.feed(bad);
    const e = await err;
    assert.ok(e instanceof LadderError && e.code === 'ERR_MUX_COOL', String(e));
    await tick();
    assert.ok(t.conn.destroyed);
  }
});

test('client: ending the writable side sends End; the server drops the session and answers End', async () => {
  const [a, b] = duplexPair();
  const serverClosed: Promise<unknown>[] = [];
  new MuxCool(b, {
    role: 'server',
    onSession: (s) => {
      serverClosed.push(new Promise((r) => s.on('close', r)));
      s.on('data', (d: Buffer) => s.write(d));
    },
  });
  const client = new MuxCool(a, { role: 'client' });
  const s = client.open({ host: '127.0.0.1', port: 0 });
  const first = new Promise<Buffer>((r) => s.once('data', r));
  s.write('request');
  assert.equal((await first).toString(), 'request');
  const closed = new Promise((r) => s.on('close', r));
  s.resume();
  s.end();
  await closed; // the server's End came back
  await Promise.all(serverClosed);
  assert.equal(client.sessions, 0);
});

test('a connection that ends takes its sessions to their end', async () => {
  const t = serverUnderTest();
  t.feed(newFrame(1, { host: '198.18.0.1', port: 1 }));
  await tick();
  const got = collect(t.sessions[0]!.s);
  t.conn.push(null);
  assert.equal((await got).length, 0);
});

test('fuzz: hostile bytes at a server never throw', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 6 }),
      async (chunks) => {
        const t = serverUnderTest((s) => {
          s.on('error', () => {});
          s.resume();
        });
        for (const c of chunks) t.feed(Buffer.from(c));
        await tick();
        t.conn.destroy();
      },
    ),
    { numRuns: 500 },
  );
});

/** Frames of one write: [session, status, data length]. */
const shape = (w: Buffer) =>
  parseFrames(w).map((f) => [f.h.sessionId, f.h.status, f.h.dataLength ?? 0] as const);

test("padding: a session's first frames each leave with a KeepAlive of random padding in the same write", async () => {
  const writes = ['a', 'bb', 'x'.repeat(2000), 'dddd', 'eeeee', 'f'];
  const t = serverUnderTest((s) => {
    s.resume();
    for (const w of writes) s.write(w);
    s.end();
  }, true);
  t.feed(newFrame(5, { host: 'example.com', port: 443 }));
  await tick();
  await tick();
  assert.equal(t.writes.length, writes.length + 1, 'one write per frame, End last');
  t.writes.forEach((w, i) => {
    const frames = shape(w);
    if (i >= writes.length) {
      assert.deepEqual(frames, [[5, MUX_STATUS.END, 0]]);
      return;
    }
    const data = writes[i]!.length;
    if (i >= MUX_PADDED_FRAMES) {
      assert.deepEqual(frames, [[5, MUX_STATUS.KEEP, data]], `write ${i} is not padded`);
      return;
    }
    assert.equal(frames.length, 2, `write ${i}: a frame and its padding`);
    assert.deepEqual(frames[0], [5, MUX_STATUS.KEEP, data]);
    assert.equal(frames[1]![0], 5);
    assert.equal(frames[1]![1], MUX_STATUS.KEEP_ALIVE);
    if (data < 800) assert.ok(w.length >= 900 && w.length < 1400, `write ${i}: ${w.length} bytes`);
    else assert.ok(w.length - (8 + data) - 8 < 256, `write ${i}: ${w.length} bytes`);
  });
  // what the frames carry is what the session wrote, padding aside
  const carried = parseFrames(t.wire())
    .filter((f) => f.h.status === MUX_STATUS.KEEP)
    .map((f) => f.data)
    .join('');
  assert.equal(carried, writes.join(''));
});

test('padding: totals of short flights spread over [900, 1400), not one size', async () => {
  const sizes = new Set<number>();
  for (let i = 0; i < 40; i++) {
    const t = serverUnderTest((s) => {
      s.on('error', () => {});
      s.resume();
      s.write('hello');
    }, true);
    t.feed(newFrame(1, { host: 'example.com', port: 443 }));
    await tick();
    const w = t.writes[0]!;
    assert.ok(w.length >= 900 && w.length < 1400, `${w.length}`);
    sizes.add(w.length);
    t.conn.destroy();
  }
  assert.ok(sizes.size >= 20, `${sizes.size} distinct sizes in 40 (uniform over 500 values)`);
});

test("padding: a client's first write is New + data + KeepAlive (still classified as Mux.Cool); the peer reads only the data", async () => {
  const [a, b] = duplexPair();
  const firstWrite = new Promise<Buffer>((resolve) => {
    const write = a.write.bind(a);
    a.write = ((chunk: Buffer, ...rest: never[]) => {
      resolve(Buffer.from(chunk));
      a.write = write;
      return write(chunk, ...rest);
    }) as typeof a.write;
  });
  const got: Buffer[] = [];
  const ended = new Promise<void>((resolve) => {
    new MuxCool(b, {
      role: 'server',
      onSession: (s) => {
        s.on('data', (d: Buffer) => got.push(Buffer.from(d)));
        s.on('end', resolve);
        s.on('error', () => {});
      },
    });
  });
  const client = new MuxCool(a, { role: 'client' });
  const s = client.open({ host: 'inner.example', port: 443 });
  const hello = randomBytes(517); // the size of curl's ClientHello
  s.write(hello);
  const w = await firstWrite;
  assert.equal(classifyMuxStart(w), 'mux');
  assert.deepEqual(
    shape(w).map(([id, st]) => [id, st]),
    [
      [1, MUX_STATUS.NEW],
      [1, MUX_STATUS.KEEP_ALIVE],
    ],
  );
  assert.ok(w.length >= 900 && w.length < 1400, `${w.length}`);
  const rest = randomBytes(3000);
  s.end(rest);
  await ended;
  assert.equal(sha(Buffer.concat(got)), sha(Buffer.concat([hello, rest])));
});

test('padding off: no KeepAlive is sent', async () => {
  const t = serverUnderTest((s) => {
    s.resume();
    s.write('abc');
    s.end();
  }, false);
  t.feed(newFrame(2, { host: 'example.com', port: 80 }));
  await tick();
  assert.deepEqual(t.writes.map(shape), [[[2, MUX_STATUS.KEEP, 3]], [[2, MUX_STATUS.END, 0]]]);
});

test('server: KeepAlive data is discarded even when it names a live session', async () => {
  const t = serverUnderTest();
  const pad = Buffer.alloc(1200, 0x41);
  t.feed(
    Buffer.concat([
      frame(
        {
          sessionId: 1,
          status: MUX_STATUS.NEW,
          option: MUX_OPTION.DATA,
          network: 1,
          target: { host: '198.18.0.1', port: 1 },
          dataLength: 3,
        },
        Buffer.from('one'),
      ),
      frame(
        {
          sessionId: 1,
          status: MUX_STATUS.KEEP_ALIVE,
          option: MUX_OPTION.DATA,
          dataLength: pad.length,
        },
        pad,
      ),
      frame(
        { sessionId: 1, status: MUX_STATUS.KEEP, option: MUX_OPTION.DATA, dataLength: 3 },
        Buffer.from('two'),
      ),
      frame({ sessionId: 1, status: MUX_STATUS.END, option: 0 }),
    ]),
  );
  await tick();
  assert.equal((await collect(t.sessions[0]!.s)).toString(), 'onetwo');
});

test('frame buffers in flight at once are reused, and let go once idle connections no longer need them', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const CONNECTIONS = 25;
  const SESSIONS = 8;
  const conns: Duplex[] = [];
  const allWritten: Promise<void>[] = [];
  await settledGc(gc);
  const before = process.memoryUsage().arrayBuffers;
  for (let c = 0; c < CONNECTIONS; c++) {
    let calls = 0;
    let done: () => void;
    allWritten.push(new Promise((r) => (done = r)));
    // A socket whose writes complete on a later turn: every session's frame is in flight at once.
    const conn = new Duplex({
      read() {},
      write(_c: Buffer, _e, cb) {
        setImmediate(() => {
          cb();
          if (++calls === SESSIONS) done();
        });
      },
    });
    conns.push(conn);
    new MuxCool(conn, {
      role: 'server',
      padding: false,
      reuseFrames: true,
      onSession: (s) => {
        s.on('error', () => {}); // destroyed with its connection at the end
        s.resume();
        s.write(Buffer.alloc(60_000, 7));
      },
    });
    for (let id = 1; id <= SESSIONS; id++)
      conn.push(newFrame(id, { host: 'example.com', port: 80 }));
  }
  await Promise.all(allWritten);
  await tick();
  // every session's frame was in flight at once: their buffers wait in the pool for the next writes
  assert.ok(pooledFrameBuffers() > FRAME_POOL_KEEP && pooledFrameBuffers() <= FRAME_POOL_MAX);
  t.mock.timers.tick(2 * FRAME_POOL_TRIM_MS);
  assert.equal(pooledFrameBuffers(), FRAME_POOL_KEEP);
  await settledGc(gc);
  // The connections stay open with their sessions idle: what they keep is reusable buffers only.
  const kept = process.memoryUsage().arrayBuffers - before;
  assert.ok(kept < 4 * 1024 * 1024, `${(kept / 1048576).toFixed(1)} MiB kept by idle connections`);
  for (const conn of conns) conn.destroy();
});

/** A full collection, and a second once V8's sweeper has had a turn to free what the first found. */
async function settledGc(gc: () => void): Promise<void> {
  gc();
  await tick();
  gc();
}

test('a connection that tells what it keeps (a WebSocket) gets its frame buffers back only when it keeps none', async () => {
  // As a WebSocketStream: its write callback may come while the socket below still holds the
  // bytes, so only its KEEPS answer says whether the frame is free.
  let keeps = false;
  const conn = new Duplex({
    read() {},
    write(_c: Buffer, _e, cb) {
      cb();
    },
  });
  (conn as unknown as Record<symbol, () => boolean>)[KEEPS] = () => keeps;
  const sessions: MuxSession[] = [];
  new MuxCool(conn, {
    role: 'server',
    padding: false,
    onSession: (s) => {
      s.on('error', () => {});
      s.resume();
      sessions.push(s);
    },
  });
  conn.push(newFrame(1, { host: 'example.com', port: 80 }));
  await tick();
  const write = (): Promise<void> =>
    new Promise((r) => sessions[0]!.write(Buffer.alloc(60_000, 1), () => r()));
  keeps = false;
  await write(); // the pool holds at least this one now
  await tick();
  const pooled = pooledFrameBuffers();
  assert.ok(pooled >= 1);
  keeps = true;
  await write();
  await tick();
  assert.equal(pooledFrameBuffers(), pooled - 1, 'a frame the connection keeps is not pooled');
  keeps = false;
  await write();
  await tick();
  // taken from the pool (or made, if the pool was empty) and given back
  assert.equal(
    pooledFrameBuffers(),
    Math.max(pooled - 1, 1),
    'a frame it keeps no more is pooled again',
  );
  conn.destroy();
});
