/**
 * Memory stays bounded with a slow reader: the origin may push at most what the kernel buffers and
 * the streams' high-water marks hold along the path, never its whole 256 MiB into our processes.
 * Measured in bytes the origin managed to write, not in time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { SsServer } from '../../src/server/ss-server.js';
import { Socks5Server } from '../../src/proxy/socks5-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';

const TOTAL = 256 * 1024 * 1024;
const BOUND = 24 * 1024 * 1024; // kernel socket buffers on loopback (a few MiB per hop, 3 hops) plus high-water marks

for (const method of ['aes-256-gcm', '2022-blake3-aes-256-gcm'] as const) {
  test(`${method}: a reader that stops reading stops the origin (bounded buffering)`, async (t) => {
    let written = 0;
    let originSocket: Socket | null = null;
    const chunk = randomBytes(64 * 1024);
    const origin = createServer((s) => {
      originSocket = s;
      const pump = (): void => {
        while (written < TOTAL) {
          written += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const key = makeCipherKey(
      method,
      method.startsWith('2022') ? randomBytes(32).toString('base64') : 'bp',
    );
    const server = new SsServer({ keys: [{ id: 'k', key }], dialer: new DirectDialer() });
    const sp = (await server.listen('127.0.0.1', 0)).port;
    const socks = new Socks5Server({
      dialer: new SsStreamDialer({ host: '127.0.0.1', port: sp }, key),
    });
    const xp = (await socks.listen('127.0.0.1', 0)).port;
    const op = (origin.address() as AddressInfo).port;

    const reader = connect(xp, '127.0.0.1');
    await new Promise<void>((r) => reader.once('connect', r));
    reader.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, op >> 8, op & 0xff, 0x47]));
    // Read the SOCKS replies and a little data, then stop reading entirely.
    let got = 0;
    await new Promise<void>((r) => {
      reader.on('data', (d: Buffer) => {
        got += d.length;
        if (got > 1024 * 1024) {
          reader.pause();
          r();
        }
      });
    });
    // Wait until the origin is stuck (its writes stop advancing), bounded to 10 s.
    let last = -1;
    for (let i = 0; i < 100 && written !== last; i++) {
      last = written;
      await new Promise((r) => setTimeout(r, 100));
    }
    const stuckAt = written;
    reader.destroy();
    (originSocket as Socket | null)?.destroy();
    await socks.close();
    await server.close(100);
    await new Promise<void>((r) => origin.close(() => r()));
    t.diagnostic(
      `in flight when the origin stalled: ${((stuckAt - got) / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.ok(stuckAt < TOTAL, 'the origin could not push everything');
    assert.ok(
      stuckAt - got < BOUND,
      `in flight when stuck: ${((stuckAt - got) / 2 ** 20).toFixed(1)} MiB (bound ${BOUND / 2 ** 20} MiB)`,
    );
  });
}
