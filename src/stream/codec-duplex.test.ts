import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { CodecDuplex } from './codec-duplex.js';
import { CounterAead } from '../crypto/aead.js';
import { ByteQueue, ChunkReader, ChunkWriter, MAX_PAYLOAD_2017 } from '../codec/ss-stream.js';
import { SsKeyTable, SsTcpAcceptor, SsTcpClientSession } from '../codec/ss-tcp.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import { relay } from '../transport/relay.js';
import { HOLD, READ_HEADROOM, keepsWrites } from './recycled-reads.js';
import { MuxCool } from './mux-cool.js';
import { decodeMuxHeader, MUX_STATUS } from '../codec/mux-cool.js';
import { seeded } from '../../test/helpers/seeded-random.js';

test('CodecDuplex over a duplex that keeps written buffers by reference: the encode scratch is never reused under it', async () => {
  // A WebSocket stream passes large payloads on to its socket by reference and reports an empty
  // queue at once; reusing the (process-wide) encode scratch then would rewrite bytes still queued.
  const key = randomBytes(32);
  const writer = new ChunkWriter(new CounterAead('aes-256-gcm', key), MAX_PAYLOAD_2017);
  const kept: Buffer[] = [];
  const sink = new Duplex({
    write(chunk: Buffer, _enc, cb): void {
      kept.push(chunk); // by reference, like a socket that still has it queued
      cb();
    },
    read(): void {},
  });
  const duplex = new CodecDuplex(sink, {
    encode: (p) => writer.encode(p),
    decode: () => [],
    release: () => writer.release(),
  });
  const sent: Buffer[] = [];
  for (let i = 0; i < 20; i++) {
    const p = randomBytes(1 + ((i * 7919) % 40_000));
    sent.push(p);
    await new Promise<void>((resolve, reject) =>
      duplex.write(p, (err) => (err ? reject(err) : resolve())),
    );
    // Another stream encoding in between, as other connections of the process do.
    new ChunkWriter(new CounterAead('aes-256-gcm', randomBytes(32)), MAX_PAYLOAD_2017).encode(
      randomBytes(30_000),
    );
  }
  const q = new ByteQueue();
  for (const k of kept) q.push(Buffer.from(k));
  const out: Buffer[] = [];
  new ChunkReader(new CounterAead('aes-256-gcm', key), MAX_PAYLOAD_2017, q).drainInto(out);
  assert.deepEqual(Buffer.concat(out), Buffer.concat(sent));
  duplex.destroy();
});

// ------------------------------------------------------------------------------------------------
// Borrowed reads (stream/recycled-reads.ts): a socket that lends one read buffer again and again.

/**
 * A source that emits every read as a view of one buffer, as a recycled-read socket does, and
 * poisons that buffer as soon as the 'data' handler returns unless the read was held: any byte a
 * consumer reads after reuse is then wrong, and the test sees it.
 */
class LendingSource extends Duplex {
  #buf = Buffer.alloc(READ_HEADROOM + 80 * 1024); // with headroom, as recycled reads lend it
  #held = false;
  holds = 0;
  readonly [HOLD] = (): void => {
    this.#held = true;
    this.holds++;
  };
  constructor() {
    super({ read() {}, write: (_c, _e, cb) => cb() });
  }
  lend(bytes: Buffer): void {
    if (this.#held) this.#buf = Buffer.alloc(READ_HEADROOM + 80 * 1024); // left to its holder
    this.#held = false;
    bytes.copy(this.#buf, READ_HEADROOM);
    this.emit('data', this.#buf.subarray(READ_HEADROOM, READ_HEADROOM + bytes.length));
    if (!this.#held) this.#buf.fill(0xee); // the next read would overwrite it
  }
}

/** The server's response bytes for `payloads`, as the client's session sees them, and that session. */
function responseStream(method: string, password: string, payloads: Buffer[]) {
  const key = makeCipherKey(method, password);
  const client = new SsTcpClientSession(key, randomBytes);
  const request = client.encodeRequest({ host: '198.18.0.1', port: 80 }, Buffer.from('GET /'), 0);
  const acceptor = new SsTcpAcceptor(
    new SsKeyTable([{ id: 'k', key }]),
    { addSalt2017: () => true, addSalt2022: () => true },
    randomBytes,
  );
  const accepted = acceptor.push(request, 0);
  assert.ok(accepted);
  const wire = Buffer.concat(payloads.map((p) => Buffer.from(accepted.stream.encode(p, 0))));
  return { client, wire };
}

/** Cuts `wire` into reads of 1 byte to 70 KB (deterministic), as TCP might deliver them. */
function reads(wire: Buffer, seed: string): Buffer[] {
  const sizes = seeded(seed, 4096);
  const out: Buffer[] = [];
  for (let p = 0, i = 0; p < wire.length; i++) {
    const r = sizes.readUInt16BE((i * 2) % 4094);
    const n = i % 5 === 0 ? 1 + (r % 40) : 1 + ((r * 3) % 70_000);
    out.push(wire.subarray(p, p + n));
    p += n;
  }
  return out;
}

for (const [method, password] of [
  ['chacha20-ietf-poly1305', 'pw'],
  ['2022-blake3-aes-256-gcm', seeded('psk', 32).toString('base64')],
] as const) {
  for (const sinkHwm of [1024, 1 << 24])
    test(`CodecDuplex over lent reads (${method}): nothing reads a read buffer after its reuse — relay to a slow sink (highWaterMark ${sinkHwm})`, async () => {
      const payloads = Array.from({ length: 40 }, (_, i) =>
        seeded(`p${i}`, 1 + ((i * 9973) % 70_000)),
      );
      const { client, wire } = responseStream(method, password, payloads);
      const source = new LendingSource();
      const duplex = new CodecDuplex(source, {
        encode: () => Buffer.alloc(0),
        decode: (c, borrowed) => client.decode(c, 0, borrowed),
      });
      // A sink that keeps what it is given by reference and takes it slowly: writes stay queued. With
      // a small highWaterMark the relay pauses and payloads wait in the Duplex; with a large one every
      // payload goes on at once and only the relay's holdChunks, passed through, protects it.
      const kept: Buffer[] = [];
      const sink = new Duplex({
        highWaterMark: sinkHwm,
        write(chunk: Buffer, _e, cb): void {
          kept.push(chunk);
          setImmediate(cb);
        },
        read(): void {},
      });
      const done = relay(duplex, sink);
      for (const r of reads(wire, method)) {
        while (source.isPaused()) await new Promise((res) => setImmediate(res));
        source.lend(r);
      }
      const total = payloads.reduce((n, p) => n + p.length, 0);
      while (kept.reduce((n, k) => n + k.length, 0) < total)
        await new Promise((res) => setImmediate(res));
      assert.ok(
        Buffer.concat(kept).equals(Buffer.concat(payloads)),
        'the bytes came through intact',
      );
      assert.ok(source.holds > 0, 'queued writes held their reads');
      duplex.destroy();
      await done;
    });

  test(`CodecDuplex over lent reads (${method}): payloads left unread in the Duplex stay intact`, async () => {
    const payloads = Array.from({ length: 12 }, (_, i) =>
      seeded(`q${i}`, 1 + ((i * 7919) % 40_000)),
    );
    const { client, wire } = responseStream(method, password, payloads);
    const source = new LendingSource();
    const duplex = new CodecDuplex(
      source,
      { encode: () => Buffer.alloc(0), decode: (c, borrowed) => client.decode(c, 0, borrowed) },
      { highWaterMark: 1 << 30 }, // nobody reads until the end: everything stays buffered
    );
    for (const r of reads(wire, `${method}/2`)) source.lend(r);
    const got: Buffer[] = [];
    for (let c = duplex.read() as Buffer | null; c !== null; c = duplex.read() as Buffer | null)
      got.push(c);
    assert.ok(Buffer.concat(got).equals(Buffer.concat(payloads)));
    duplex.destroy();
  });
}

// ------------------------------------------------------------------------------------------------
// Lent reads written to a layer that copies them (recycled-reads.ts keepsWrites): the read need not
// be held while the copy waits for the socket below, and must be while the chunk itself waits.

/** A socket that keeps what it is given by reference and takes it slowly (write() returns false). */
function slowSocket() {
  const kept: Buffer[] = [];
  const socket = new Duplex({
    highWaterMark: 1024,
    write(chunk: Buffer, _e, cb): void {
      kept.push(chunk);
      setImmediate(cb);
    },
    read(): void {},
  });
  return { socket, kept };
}

/**
 * Lends `data` to `source` in reads of 20 to 70 KB (each above a Duplex's 16 KiB highWaterMark, so
 * the relay pauses after each and nothing queues behind a waiting write), waiting while paused.
 */
async function lendAll(source: LendingSource, data: Buffer, seed: string): Promise<number> {
  const sizes = seeded(seed, 4096);
  let n = 0;
  for (let p = 0; p < data.length;) {
    const len = 20_000 + (sizes.readUInt16BE((n * 2) % 4094) % 50_000);
    const r = data.subarray(p, p + len);
    p += r.length;
    while (source.isPaused()) await new Promise((res) => setImmediate(res));
    source.lend(r);
    n++;
  }
  return n;
}

for (const copies of [true, false])
  test(`a lent read relayed into a CodecDuplex whose codec ${copies ? 'copies' : 'passes chunks through'}: intact, and held ${copies ? 'only while queued itself' : 'while its write waits'}`, async () => {
    const data = seeded(`keeps-${copies}`, 3_000_000);
    const source = new LendingSource();
    const { socket, kept } = slowSocket();
    const duplex = new CodecDuplex(socket, {
      encode: (c) => (copies ? Buffer.from(c) : c),
      decode: () => [],
    });
    const done = relay(source, duplex);
    const lent = await lendAll(source, data, `keeps-${copies}`);
    while (kept.reduce((n, k) => n + k.length, 0) < data.length)
      await new Promise((res) => setImmediate(res));
    assert.ok(Buffer.concat(kept).equals(data), 'the bytes came through intact');
    // The relay pauses the source after each write, so a copying codec never needs a hold (the
    // relay held every read before keepsWrites); a pass-through codec's socket keeps the lent
    // memory itself, so its reads must be held.
    if (copies) assert.equal(source.holds, 0, `holds over ${lent} reads`);
    else assert.ok(source.holds > 0, 'the reads a waiting write references were held');
    duplex.destroy();
    await done;
  });

test('keepsWrites: a CodecDuplex says a chunk it copied is not referenced, a chunk queued behind it is', () => {
  const { socket } = slowSocket();
  const duplex = new CodecDuplex(socket, { encode: (c) => Buffer.from(c), decode: () => [] });
  duplex.write(Buffer.alloc(4000, 1)); // encoded (copied), its callback waits for the socket
  assert.ok(duplex.writableLength > 0);
  assert.equal(keepsWrites(duplex), false);
  duplex.write(Buffer.alloc(10, 2)); // queued in the Duplex itself, not copied yet
  assert.equal(keepsWrites(duplex), true);
  // A plain writable: anything queued is referenced.
  assert.equal(keepsWrites(socket), socket.writableLength > 0);
  duplex.destroy();
});

test('a lent read relayed into a Mux.Cool session: every frame is a copy, so no read is held, and the frames carry the bytes intact', async () => {
  const data = seeded('keeps-mux', 3_000_000);
  const source = new LendingSource();
  const { socket, kept } = slowSocket();
  const mux = new MuxCool(socket, { role: 'client', padding: false });
  const session = mux.open({ host: '198.18.0.1', port: 80 });
  const done = relay(source, session);
  const lent = await lendAll(source, data, 'keeps-mux');
  const carried = (): Buffer => {
    const wire = Buffer.concat(kept);
    const parts: Buffer[] = [];
    for (let p = 0; p < wire.length;) {
      const d = decodeMuxHeader(wire, p);
      if (d === null) break;
      p += d.bytesRead;
      const n = d.value.dataLength ?? 0;
      if (d.value.status === MUX_STATUS.NEW || d.value.status === MUX_STATUS.KEEP)
        parts.push(wire.subarray(p, p + n));
      p += n;
    }
    return Buffer.concat(parts);
  };
  while (carried().length < data.length) await new Promise((res) => setTimeout(res, 5));
  assert.ok(carried().equals(data), 'the frames carry the bytes intact');
  assert.equal(source.holds, 0, `holds over ${lent} reads`);
  session.destroy();
  await done;
});
