import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { CodecDuplex } from './codec-duplex.js';
import { CounterAead } from '../crypto/aead.js';
import { ByteQueue, ChunkReader, ChunkWriter, MAX_PAYLOAD_2017 } from '../codec/ss-stream.js';

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
