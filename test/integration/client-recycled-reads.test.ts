/**
 * The client's tunnel reads into recycled memory (SsStreamDialer `recycleReads`, as `ladder client`
 * uses it): one read buffer shared by every connection, lent to each read's handler with headroom in
 * front. Many downloads at once through the SOCKS5 front, some read slowly so that writes stay
 * queued and reads must be held: every byte must arrive as sent. A missing hold or copy shows here
 * as another connection's bytes in the stream (a hash mismatch) or a failed tag (a reset).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { SsServer } from '../../src/server/ss-server.js';
import { Socks5Server } from '../../src/proxy/socks5-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SOCKS_CMD } from '../../src/codec/socks5.js';
import { socksRequest } from '../helpers/socks5-client.js';

const SIZE = 3 * 1024 * 1024 + 12_345;

for (const [method, password] of [
  ['chacha20-ietf-poly1305', 'recycled'],
  ['2022-blake3-aes-256-gcm', randomBytes(32).toString('base64')],
] as const) {
  test(`client with recycled tunnel reads (${method}): 24 downloads at once, 8 of them slow, arrive intact`, async () => {
    const body = randomBytes(SIZE);
    const want = createHash('sha256').update(body).digest('hex');
    // An origin that sends the body in odd-sized writes, then ends.
    const origin: Server = createServer((s) => {
      s.on('error', () => {});
      let p = 0;
      const pump = (): void => {
        while (p < body.length) {
          const n = 1 + ((p * 7919) % 90_000);
          const ok = s.write(body.subarray(p, p + n));
          p += n;
          if (!ok) {
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const key = makeCipherKey(method, password);
    const server = new SsServer({
      keys: [{ id: 'k', key }],
      dialer: new DirectDialer({ recycleReads: true }),
    });
    const sAddr = await server.listen('127.0.0.1', 0);
    const socks = new Socks5Server({
      dialer: new SsStreamDialer({ host: '127.0.0.1', port: sAddr.port }, key, {
        recycleReads: true,
      }),
    });
    const pAddr = await socks.listen('127.0.0.1', 0);
    const target = { host: '127.0.0.1', port: (origin.address() as AddressInfo).port };
    try {
      const results = await Promise.all(
        Array.from({ length: 24 }, async (_, i) => {
          const { code, socket } = await socksRequest(pAddr.port, SOCKS_CMD.CONNECT, target);
          assert.equal(code, 0);
          const h = createHash('sha256');
          let n = 0;
          const slow = i % 3 === 0;
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('download timed out')), 60_000);
            socket.on('data', (c: Buffer) => {
              h.update(c);
              n += c.length;
              if (slow && (n === c.length || n % 3 === 0)) {
                // a slow reader (a long stop at first, then short ones): the kernel's buffers fill
                // and the client's writes to it stay queued, holding their reads
                socket.pause();
                setTimeout(() => socket.resume(), n === c.length ? 300 : 2);
              }
            });
            socket.on('end', () => {
              clearTimeout(timer);
              resolve();
            });
            socket.on('error', (e) => {
              clearTimeout(timer);
              reject(e);
            });
          });
          socket.destroy();
          return { n, hash: h.digest('hex') };
        }),
      );
      for (const r of results) {
        assert.equal(r.n, SIZE);
        assert.equal(r.hash, want);
      }
    } finally {
      await socks.close();
      await server.close(500);
      await new Promise<void>((r) => origin.close(() => r()));
    }
  });
}
