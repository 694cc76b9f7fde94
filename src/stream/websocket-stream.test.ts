import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { WebSocketStream, WS_CLOSE } from './websocket-stream.js';
import { WS_OPCODE, applyWsMask, encodeWsHeader, wsHeaderLength } from '../codec/websocket.js';
import { duplexPair } from '../../test/helpers/duplex-pair.js';
import { LadderError } from '../errors.js';
import { KEEPS, keepsWrites } from '../core/lent-read.js';

/** One frame as a peer would send it. */
function frame(
  opcode: number,
  payload: Buffer,
  o: { fin?: boolean; mask?: boolean; rsv?: number } = {},
): Buffer {
  const masked = o.mask ?? true;
  const mask = masked ? randomBytes(4) : undefined;
  const out = Buffer.alloc(wsHeaderLength(payload.length, masked) + payload.length);
  const n = encodeWsHeader(
    { fin: o.fin ?? true, opcode, payloadLength: payload.length, ...(mask ? { mask } : {}) },
    out,
    0,
  );
  payload.copy(out, n);
  if (mask) applyWsMask(out.subarray(n), mask);
  if (o.rsv) out[0]! |= o.rsv;
  return out;
}

/** Reads the frames a server wrote (unmasked), as [opcode, payload]. */
function parseServerFrames(bytes: Buffer): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  let p = 0;
  while (p + 2 <= bytes.length) {
    const op = bytes[p]! & 0x0f;
    let n = bytes[p + 1]! & 0x7f;
    p += 2;
    if (n === 126) {
      n = bytes.readUInt16BE(p);
      p += 2;
    } else if (n === 127) {
      n = Number(bytes.readBigUInt64BE(p));
      p += 8;
    }
    out.push([op, bytes.subarray(p, p + n)]);
    p += n;
  }
  return out;
}

/** A server-side WebSocketStream fed by hand, recording what it writes. */
function serverUnderTest(): {
  ws: WebSocketStream;
  feed(b: Buffer): void;
  wire(): Buffer;
  ended: Promise<void>;
} {
  const written: Buffer[] = [];
  let endedResolve!: () => void;
  const ended = new Promise<void>((r) => (endedResolve = r));
  const sock = new Duplex({
    read() {},
    write(c: Buffer, _e, cb) {
      written.push(Buffer.from(c));
      cb();
    },
    final(cb) {
      endedResolve();
      cb();
    },
  });
  const ws = new WebSocketStream(sock, { role: 'server' });
  return { ws, feed: (b) => sock.push(b), wire: () => Buffer.concat(written), ended };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function collect(d: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    d.on('data', (c: Buffer) => parts.push(Buffer.from(c)));
    d.on('end', () => resolve(Buffer.concat(parts)));
    d.on('error', reject);
  });
}

test('client and server carry 2 MiB each way, in odd-sized writes, then close both ways', async () => {
  const [a, b] = duplexPair();
  const client = new WebSocketStream(a, { role: 'client' });
  const server = new WebSocketStream(b, { role: 'server' });
  const up = randomBytes(2 << 20);
  const down = randomBytes(2 << 20);
  const gotUp = collect(server);
  const gotDown = collect(client);
  for (let i = 0, k = 0; i < up.length; k++) {
    const n = 1 + ((k * 7919) % 300_000);
    client.write(up.subarray(i, i + n));
    i += n;
  }
  client.end();
  // The client's Close ends only the server's readable: the answer still flows (as TCP half-close).
  assert.equal(sha(await gotUp), sha(up));
  server.end(down);
  assert.equal(sha(await gotDown), sha(down));
});

test('frames split at every byte: payload, fragmented message, Ping answered in the middle', async () => {
  const parts = [
    frame(WS_OPCODE.BINARY, Buffer.from('hel'), { fin: false }),
    frame(WS_OPCODE.PING, Buffer.from('are you there')),
    frame(WS_OPCODE.CONTINUATION, Buffer.from('lo '), { fin: false }),
    frame(WS_OPCODE.CONTINUATION, Buffer.from('world'), { fin: true }),
    frame(WS_OPCODE.BINARY, Buffer.alloc(0)),
    frame(WS_OPCODE.BINARY, Buffer.alloc(70_000, 7)),
    frame(WS_OPCODE.PONG, Buffer.from('unsolicited')),
  ];
  const wire = Buffer.concat(parts);
  for (const step of [1, 2, 3, 7, 13, 100, wire.length]) {
    const t = serverUnderTest();
    const got: Buffer[] = [];
    t.ws.on('data', (c: Buffer) => got.push(Buffer.from(c)));
    // (copies: payload is unmasked in place, in the buffers the socket hands over)
    for (let i = 0; i < wire.length; i += step) t.feed(Buffer.from(wire.subarray(i, i + step)));
    await new Promise((r) => setImmediate(r));
    const body = Buffer.concat(got);
    assert.equal(body.subarray(0, 11).toString(), 'hello world', `step ${step}`);
    assert.equal(body.length, 11 + 70_000);
    const sent = parseServerFrames(t.wire());
    assert.deepEqual(
      sent.map(([op, p]) => [op, p.toString()]),
      [[WS_OPCODE.PONG, 'are you there']],
      `step ${step}: one Pong with the Ping's payload`,
    );
  }
});

async function expectViolation(bytes: Buffer, code: number): Promise<void> {
  const t = serverUnderTest();
  const err = new Promise<Error>((r) => t.ws.on('error', r));
  t.ws.resume();
  t.feed(bytes);
  const e = await err;
  assert.ok(e instanceof LadderError && e.code === 'ERR_WEBSOCKET', String(e));
  await t.ended; // the socket is ended after the Close frame
  const sent = parseServerFrames(t.wire());
  assert.equal(sent.length, 1);
  assert.equal(sent[0]![0], WS_OPCODE.CLOSE);
  assert.equal(sent[0]![1].readUInt16BE(0), code);
}

test('an unmasked client frame: Close 1002, ERR_WEBSOCKET', async () => {
  await expectViolation(frame(WS_OPCODE.BINARY, Buffer.from('x'), { mask: false }), 1002);
});

test('a text message: Close 1003', async () => {
  await expectViolation(frame(WS_OPCODE.TEXT, Buffer.from('hi')), WS_CLOSE.UNSUPPORTED_DATA);
});

test('a continuation with nothing to continue, and a new message inside a fragmented one: 1002', async () => {
  await expectViolation(frame(WS_OPCODE.CONTINUATION, Buffer.from('x')), 1002);
  await expectViolation(
    Buffer.concat([
      frame(WS_OPCODE.BINARY, Buffer.from('a'), { fin: false }),
      frame(WS_OPCODE.BINARY, Buffer.from('b')),
    ]),
    1002,
  );
});

test('RSV bits, a fragmented Ping, a Close with a 1-byte body: 1002', async () => {
  await expectViolation(frame(WS_OPCODE.BINARY, Buffer.from('x'), { rsv: 0x40 }), 1002);
  await expectViolation(frame(WS_OPCODE.PING, Buffer.from('x'), { fin: false }), 1002);
  await expectViolation(frame(WS_OPCODE.CLOSE, Buffer.from([3])), 1002);
});

test('a frame over the size limit is refused from its header alone: 1009', async () => {
  const header = Buffer.from('82ff0000000000500000', 'hex'); // masked, 5 MiB announced
  await expectViolation(Buffer.concat([header, randomBytes(4)]), WS_CLOSE.TOO_BIG);
});

test('a Close from the client ends the readable, is answered when the server ends, then the socket ends', async () => {
  const t = serverUnderTest();
  const got = collect(t.ws);
  t.feed(frame(WS_OPCODE.BINARY, Buffer.from('request')));
  t.feed(frame(WS_OPCODE.CLOSE, Buffer.from([0x03, 0xe8])));
  t.feed(frame(WS_OPCODE.BINARY, Buffer.from('ignored after Close')));
  assert.equal((await got).toString(), 'request');
  assert.equal(t.ws.peerCloseCode, 1000);
  t.ws.end('answer');
  await t.ended;
  assert.deepEqual(
    parseServerFrames(t.wire()).map(([op, p]) => [op, op === 8 ? p.readUInt16BE(0) : p.toString()]),
    [
      [WS_OPCODE.BINARY, 'answer'],
      [WS_OPCODE.CLOSE, 1000],
    ],
  );
});

test('writableLength includes what the socket below still holds', () => {
  const sock = new Duplex({
    read() {},
    write(_c, _e, _cb) {
      /* never completes: the bytes stay queued */
    },
  });
  const ws = new WebSocketStream(sock, { role: 'server' });
  ws.write(Buffer.alloc(5000));
  assert.ok(ws.writableLength >= 5000, `got ${ws.writableLength}`);
  ws.destroy();
});

test('fuzz: hostile bytes at a server stream never throw; they end in data, an error or silence', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (chunks) => {
      const t = serverUnderTest();
      t.ws.on('error', () => {});
      t.ws.resume();
      for (const c of chunks) t.feed(Buffer.from(c));
    }),
    { numRuns: 2000 },
  );
});

test('keepsWrites: a server stream defers to its socket for the chunk it passed on, keeps a queued one', () => {
  const never = (): Duplex =>
    new Duplex({
      read() {},
      write(_c, _e, _cb) {
        /* never completes: the write stays in flight */
      },
    });
  // a socket that says it let go of what it took (as a marked TLS socket does)
  const copying = never();
  (copying as unknown as { [KEEPS]: () => boolean })[KEEPS] = () => false;
  const ws = new WebSocketStream(copying, { role: 'server' });
  ws.write(Buffer.alloc(64 * 1024, 1));
  assert.ok(ws.writableLength > 0, 'the write is in flight');
  assert.equal(keepsWrites(ws), false);
  ws.write(Buffer.alloc(10, 2)); // queued in the stream itself
  assert.equal(keepsWrites(ws), true);
  ws.destroy();
  // a plain socket below keeps what is queued in it: so does the stream
  const plain = new WebSocketStream(never(), { role: 'server' });
  plain.write(Buffer.alloc(64 * 1024, 1));
  assert.equal(keepsWrites(plain), true);
  plain.destroy();
});
