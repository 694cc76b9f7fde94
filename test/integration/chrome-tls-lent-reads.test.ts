/**
 * The fp=chrome client's reads (src/transport/chrome-tls.ts): each socket read's records are
 * decrypted into one batch, passed on as one chunk. With `lendReads` the chunk is lent
 * (core/lent-read.ts): a consumer that does not keep it gets the same memory back read after read,
 * and one that keeps it without a hold sees it poisoned or overwritten (debug mode on).
 * Without it every chunk is memory of its own. Then the client as `ladder client` runs it: many
 * Trojan downloads at once through the SOCKS5 front, some read slowly so that reads must be held,
 * every byte as sent.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { holdChunks, lendsChunks } from '../../src/core/lent-read.js';
import { configureLentReads } from '../../src/stream/recycled-reads.js';
import { chromeTlsConnect, type ChromeTlsSocket } from '../../src/transport/chrome-tls.js';
import { issueCertificate } from '../../src/server/certificates.js';
import { trojanPasswordHash } from '../../src/codec/trojan.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import { relay } from '../../src/transport/relay.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { Socks5Server } from '../../src/proxy/socks5-server.js';
import { SOCKS_CMD } from '../../src/codec/socks5.js';
import { socksRequest } from '../helpers/socks5-client.js';

const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost', '127.0.0.1'],
  serial: randomBytes(16),
});

/** A TLS server that sends `body` once the client's first byte arrives, then ends. */
async function bodyServer(body: Buffer): Promise<{ port: number; close(): Promise<void> }> {
  const server: TlsServer = createTlsServer({ cert: cert.cert, key: cert.key }, (s) => {
    s.on('error', () => s.destroy());
    s.once('data', () => s.end(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function connect(port: number, lendReads: boolean): Promise<ChromeTlsSocket> {
  return chromeTlsConnect(
    { host: '127.0.0.1', port },
    { sni: 'localhost', pinSha256: cert.fingerprint256, sessions: null, lendReads },
  );
}

/** Reads `tls` to its end, calling `onChunk` in each 'data' handler; the request starts the body. */
function readAll(tls: ChromeTlsSocket, onChunk: (c: Buffer) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    tls.on('data', onChunk);
    tls.on('end', resolve);
    tls.on('error', reject);
    tls.write('go'); // flowing before the first byte of the body is sent
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('fp=chrome client: lent reads', () => {
  before(() => configureLentReads({ poison: true }));
  after(() => configureLentReads({ poison: process.env.LADDER_DEBUG_LENT_READS === '1' }));

  test('lendReads: 8 MiB handed out in recycled memory, intact, a batch per read', async () => {
    const body = randomBytes(8 * 1024 * 1024 + 4321);
    const srv = await bodyServer(body);
    let tls: ChromeTlsSocket | undefined;
    try {
      tls = await connect(srv.port, true);
      assert.ok(lendsChunks(tls));
      const h = createHash('sha256');
      const buffers = new Set<ArrayBufferLike>();
      let chunks = 0;
      await readAll(tls, (c) => {
        h.update(c);
        buffers.add(c.buffer);
        chunks++;
      });
      tls.destroy();
      assert.equal(h.digest('hex'), sha(body));
      // A consumer that keeps nothing gets the same batch memory again: 8 MiB in 64 KiB reads
      // would otherwise be a hundred buffers and more.
      assert.ok(chunks > 16, `${chunks} chunks`);
      assert.ok(buffers.size <= 2, `${buffers.size} buffers for ${chunks} chunks`);
    } finally {
      tls?.destroy(); // a failed check leaves it open: the server's close would wait for it
      await srv.close();
    }
  });

  test('lendReads: a chunk kept without a hold does not stay; a held one stays as it was', async () => {
    const body = randomBytes(2 * 1024 * 1024);
    const srv = await bodyServer(body);
    let tls: ChromeTlsSocket | undefined;
    try {
      tls = await connect(srv.port, true);
      const held: { chunk: Buffer; copy: Buffer }[] = [];
      const unheld: { chunk: Buffer; copy: Buffer }[] = [];
      const h = createHash('sha256');
      let i = 0;
      await readAll(tls, (c) => {
        h.update(c);
        if (i++ % 2 === 0) {
          holdChunks(tls);
          held.push({ chunk: c, copy: Buffer.from(c) });
        } else unheld.push({ chunk: c, copy: Buffer.from(c) });
      });
      tls.destroy();
      assert.equal(h.digest('hex'), sha(body));
      assert.ok(held.length > 2 && unheld.length > 2, `${held.length} held, ${unheld.length} not`);
      for (const { chunk, copy } of held) assert.ok(chunk.equals(copy), 'a held chunk changed');
      // Poisoned as its handler returned, then maybe the next read's batch: never what it was.
      for (const { chunk, copy } of unheld)
        assert.ok(!chunk.equals(copy), 'a chunk that was not held kept its bytes');
    } finally {
      tls?.destroy(); // a failed check leaves it open: the server's close would wait for it
      await srv.close();
    }
  });

  test('lendReads: relay() into a writable that queues every write: every byte as sent', async () => {
    const body = randomBytes(4 * 1024 * 1024 + 999);
    const srv = await bodyServer(body);
    let tls: ChromeTlsSocket | undefined;
    try {
      tls = await connect(srv.port, true);
      const h = createHash('sha256');
      // Each write completes a turn later, so the next ones wait queued in the writable (the
      // relay must hold their reads); hashed only once taken.
      const sink = new Duplex({
        highWaterMark: 256 * 1024,
        read() {},
        write(chunk: Buffer, _enc, cb) {
          setImmediate(() => {
            h.update(chunk);
            cb();
          });
        },
        final(cb) {
          this.push(null); // its own side ends once the body is in
          cb();
        },
      });
      tls.write('go');
      const r = await relay(tls, sink);
      assert.equal(r.error, undefined);
      assert.equal(r.aToB, body.length);
      assert.equal(h.digest('hex'), sha(body));
    } finally {
      tls?.destroy(); // a failed check leaves it open: the server's close would wait for it
      await srv.close();
    }
  });

  test('without lendReads: every chunk is memory of its own, kept intact', async () => {
    const body = randomBytes(2 * 1024 * 1024 + 77);
    const srv = await bodyServer(body);
    let tls: ChromeTlsSocket | undefined;
    try {
      tls = await connect(srv.port, false);
      assert.equal(lendsChunks(tls), false);
      const kept: Buffer[] = [];
      await readAll(tls, (c) => kept.push(c));
      tls.destroy();
      assert.equal(sha(Buffer.concat(kept)), sha(body));
    } finally {
      tls?.destroy(); // a failed check leaves it open: the server's close would wait for it
      await srv.close();
    }
  });
});

test('Trojan over fp=chrome with recycled reads: 16 downloads at once, 6 of them slow, intact', async () => {
  const SIZE = 2 * 1024 * 1024 + 12_345;
  const body = randomBytes(SIZE);
  const want = sha(body);
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
  const decoy = new DecoySite();
  const handler = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash('correct horse') }],
    dialer: new DirectDialer({ recycleReads: true }),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
    handshakeTimeoutMs: 5000,
  });
  const tls = createTlsServer({ cert: cert.cert, key: cert.key, allowHalfOpen: true }, (s) =>
    handler.handle(s),
  );
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  const dialer = new TrojanDialer(
    { host: '127.0.0.1', port: (tls.address() as AddressInfo).port },
    {
      password: 'correct horse',
      sni: 'localhost',
      pinSha256: cert.fingerprint256,
      fp: 'chrome',
      recycleReads: true,
    },
  );
  const socks = new Socks5Server({ dialer });
  const pAddr = await socks.listen('127.0.0.1', 0);
  const target = { host: '127.0.0.1', port: (origin.address() as AddressInfo).port };
  try {
    const results = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const { code, socket } = await socksRequest(pAddr.port, SOCKS_CMD.CONNECT, target);
        assert.equal(code, 0);
        const h = createHash('sha256');
        let n = 0;
        const slow = i % 3 === 0;
        await new Promise<void>((resolve, reject) => {
          socket.on('data', (c: Buffer) => {
            h.update(c);
            n += c.length;
            if (slow && (n === c.length || n % 3 === 0)) {
              // a slow reader: the kernel's buffers fill and the client's writes to it stay
              // queued, holding their reads
              socket.pause();
              setTimeout(() => socket.resume(), n === c.length ? 300 : 2);
            }
          });
          socket.on('end', resolve);
          socket.on('error', reject);
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
    await new Promise<void>((r) => tls.close(() => r()));
    await new Promise<void>((r) => origin.close(() => r()));
    decoy.close();
  }
});
