import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import {
  POISON_BYTE,
  configureLentReads,
  connectRecycling,
  holdChunks,
  READ_HEADROOM,
} from './recycled-reads.js';

test('connectRecycling: every chunk it emits has READ_HEADROOM bytes of free memory in front, the early ones too', async () => {
  const server = createServer((s) => s.end(Buffer.from('early bytes, sent before anyone listens')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const socket = connectRecycling({
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
    });
    // the bytes arrive and are read while nobody listens yet: wait until the socket read them
    while (socket.bytesRead === 0 && !socket.destroyed) await new Promise((r) => setTimeout(r, 5));
    const chunks: { offset: number; size: number; length: number; text: string }[] = [];
    await new Promise<void>((resolve, reject) => {
      socket.on('data', (c: Buffer) =>
        chunks.push({
          offset: c.byteOffset,
          size: c.buffer.byteLength,
          length: c.length,
          text: c.toString(),
        }),
      );
      socket.on('end', resolve);
      socket.on('error', reject);
    });
    socket.destroy();
    assert.equal(chunks.map((c) => c.text).join(''), 'early bytes, sent before anyone listens');
    for (const c of chunks) {
      assert.ok(c.offset >= READ_HEADROOM, 'headroom in front');
      // memory of its own: nothing else lives in the headroom (not a slice of a shared pool)
      assert.ok(c.size === READ_HEADROOM + c.length || c.size >= READ_HEADROOM + 60 * 1024);
    }
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('debug mode: a lent chunk kept without a hold is poisoned when its handler returns; a held one is not', async (t) => {
  configureLentReads({ poison: true });
  t.after(() => configureLentReads({ poison: process.env.LADDER_DEBUG_LENT_READS === '1' }));
  const text = 'a read that a careless consumer keeps';
  const server = createServer((s) => s.once('data', () => s.end(text)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as AddressInfo).port;
    for (const hold of [false, true]) {
      const socket = connectRecycling({ host: '127.0.0.1', port });
      const kept: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        socket.on('data', (c: Buffer) => {
          kept.push(c); // kept past the handler
          if (hold) holdChunks(socket);
        });
        socket.on('end', resolve);
        socket.on('error', reject);
        socket.write('go'); // the answer comes after the 'data' listener is attached
      });
      socket.destroy();
      const bytes = Buffer.concat(kept);
      if (hold) assert.equal(bytes.toString(), text, 'a held chunk keeps its bytes');
      else {
        assert.equal(bytes.length, text.length);
        assert.ok(
          bytes.every((b) => b === POISON_BYTE),
          'an unheld chunk is poisoned',
        );
      }
    }
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
