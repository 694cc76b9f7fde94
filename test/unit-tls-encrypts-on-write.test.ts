/**
 * markEncryptsOnWrite (stream/recycled-reads.ts): a server TLS socket says it no longer references
 * a chunk once the chunk reached _write, so a relay reusing its read buffer loses nothing; and it
 * still says it does for chunks queued behind a write in flight, or corked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { snakeoilCertificate } from '../src/server/certificates.js';
import { keepsWrites, markEncryptsOnWrite } from '../src/stream/recycled-reads.js';

test('a marked server TLS socket lets go of a written chunk at once, but not of a queued one', async () => {
  const { cert, key } = snakeoilCertificate('tls-keeps.test');
  const accepted: Socket[] = [];
  const raw = createServer();
  const secured = new Promise<TLSSocket>((resolve) => {
    raw.on('connection', (s: Socket) => {
      accepted.push(s);
      const t = markEncryptsOnWrite(new TLSSocket(s, { isServer: true, cert, key } as never));
      t.once('secure', () => resolve(t));
    });
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', () => r()));
  const client = tlsConnect({
    host: '127.0.0.1',
    port: (raw.address() as { port: number }).port,
    rejectUnauthorized: false,
  });
  client.on('error', () => {});
  const serverTls = await secured;
  try {
    // A slow reader: paused, so the server's writes stay in flight, and let read only while the
    // server waits for 'drain' (never fully stopped: the kernel's buffers need not hold it all).
    const got: Buffer[] = [];
    client.on('data', (d: Buffer) => got.push(d));
    client.pause();
    const CHUNK = 64 * 1024;
    const ROUNDS = 64; // 4 MiB: far more than the loopback socket buffers take
    const sent: Buffer[] = [];
    const reused = Buffer.alloc(CHUNK); // one buffer, as a recycled read
    let inFlightSeen = false;
    for (let i = 0; i < ROUNDS; i++) {
      for (let j = 0; j < CHUNK; j++) reused[j] = (i * 7 + j) & 0xff;
      sent.push(Buffer.from(reused));
      serverTls.write(reused);
      if (serverTls.writableLength > 0) inFlightSeen = true;
      // written while nothing was queued before it: _write took it, TLS encrypted it
      assert.equal(keepsWrites(serverTls), false, `chunk ${i} is not kept`);
      reused.fill(0xdb); // what the next read into the same memory would do
      // wait for the write to finish before the next one, as the relay waits for 'drain'
      if (serverTls.writableLength > 0) {
        const drained = new Promise<void>((r) => serverTls.once('drain', () => r()));
        client.resume();
        await drained;
        client.pause();
      }
    }
    assert.equal(inFlightSeen, true, 'some writes waited for the slow reader');
    // a chunk written while another is in flight is queued in the writable: kept
    serverTls.cork();
    serverTls.write(Buffer.alloc(16, 1));
    assert.equal(keepsWrites(serverTls), true, 'a corked chunk is kept');
    serverTls.uncork();
    serverTls.end();
    client.resume();
    await new Promise<void>((r) => client.once('end', () => r()));
    const all = Buffer.concat(got);
    const want = Buffer.concat([...sent, Buffer.alloc(16, 1)]);
    assert.equal(all.length, want.length);
    assert.ok(all.equals(want), 'every byte arrived as written, none overwritten');
  } finally {
    client.destroy();
    for (const s of accepted) s.destroy();
    raw.close();
  }
});

test('an unmarked TLS socket counts the chunk in flight as kept (the default rule)', async () => {
  const { cert, key } = snakeoilCertificate('tls-keeps.test');
  const raw = createServer((s) => {
    const t = new TLSSocket(s, { isServer: true, cert, key } as never);
    t.once('secure', () => {
      // enough that the write cannot finish at once against a paused reader
      t.write(Buffer.alloc(8 * 1024 * 1024));
      seen.resolve(keepsWrites(t));
      t.destroy();
    });
  });
  let done!: (v: boolean) => void;
  const seen = { p: new Promise<boolean>((r) => (done = r)), resolve: (v: boolean) => done(v) };
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', () => r()));
  const client = tlsConnect({
    host: '127.0.0.1',
    port: (raw.address() as { port: number }).port,
    rejectUnauthorized: false,
  });
  client.on('error', () => {});
  client.pause();
  try {
    assert.equal(await seen.p, true);
  } finally {
    client.destroy();
    raw.close();
  }
});
