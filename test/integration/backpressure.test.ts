/**
 * Memory stays bounded with a slow reader: the origin may push at most what the kernel buffers and
 * the streams' high-water marks hold along the path, never all it offers (256 MiB or more) into
 * our processes.
 * Measured in bytes the origin managed to write, not in time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SsServer } from '../../src/server/ss-server.js';
import { Socks5Server } from '../../src/proxy/socks5-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';

/** The largest buffer this kernel lets one TCP socket grow to, for 'tcp_rmem' or 'tcp_wmem'. */
function kernelMax(name: 'tcp_rmem' | 'tcp_wmem'): number {
  const max = Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[2]);
  return Number.isFinite(max) && max > 0 ? max : 6 * 2 ** 20;
}

/**
 * What may legitimately be in flight: on each of the three loopback hops (origin → server,
 * server → SOCKS client, SOCKS client → reader) the kernel autotunes a receive and a send buffer up to
 * its maxima (how far depends on timing: 13–29 MiB were seen in all on a kernel allowing 32 + 4 MiB),
 * plus the streams' high-water marks in our processes. A leak, or a relay that ignores
 * backpressure, lets the origin write all of TOTAL.
 */
const BOUND = 3 * (kernelMax('tcp_rmem') + kernelMax('tcp_wmem')) + 8 * 2 ** 20;
/** What the origin offers: 256 MiB, or twice the bound where the kernel allows more. */
const TOTAL = Math.max(256 * 2 ** 20, 2 * BOUND);

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
