import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connectRecycling, READ_HEADROOM } from './recycled-reads.js';

test('connectRecycling: every chunk it emits has READ_HEADROOM bytes of free memory in front, the early ones too', async () => {
  const server = createServer((s) => s.end(Buffer.from('early bytes, sent before anyone listens')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const socket = connectRecycling({
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
    });
    await new Promise((r) => setTimeout(r, 100)); // the bytes arrive; nobody listens yet
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
