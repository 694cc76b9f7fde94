/**
 * The floor of a proxy in Node on this machine: the shape of Ladder's client and server, with no
 * crypto, no codec and no checks. `npm run bench` runs it as the "node floor" row, so that the
 * figures of Ladder and ss-libev can be read against what Node itself costs for the same hops.
 *
 *   node dist/bench/node-floor.js server            → relays: reads [IPv4 (4) | port (2)] then pipes
 *   node dist/bench/node-floor.js client <port>     → SOCKS5 (no auth, CONNECT to an IPv4 address):
 *                                                     connects to the relay, replies, then pipes
 *   node dist/bench/node-floor.js server [--recycle] --tls <cert.pem> <key.pem>
 *   node dist/bench/node-floor.js client <port> --tls <cert.pem>
 *                                                   → the same over TLS (`tls.createServer` with the
 *                                                     bench's certificate; the client trusts that file):
 *                                                     the smallest Trojan-like relay Node can be; with
 *                                                     `--recycle` the target's reads share one buffer
 *
 * Each prints `listening <port>` on 127.0.0.1. Both only ever connect to 127.0.0.1 (the relay, and
 * the origin the benchmark names in its CONNECT, which is loopback). Not a product: no timeouts, no
 * error replies beyond closing the connection.
 * @module
 */
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import * as tls from 'node:tls';

function join(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
}

/** The relay's side of one accepted connection: a 6-byte header, then a connection and two pipes. */
function relay(s: Socket): void {
  s.once('data', (head: Buffer) => {
    if (head.length < 6) return void s.destroy();
    const up = connect({ host: '127.0.0.1', port: head.readUInt16BE(4), noDelay: true });
    up.once('connect', () => {
      if (head.length > 6) up.write(head.subarray(6));
      join(s, up);
    });
    up.once('error', () => s.destroy());
  });
  s.on('error', () => s.destroy());
}

/** Bytes of one read from the target, as Node's default. */
const READ_BYTES = 64 * 1024;
/** The one buffer every target socket reads into, replaced only when a write keeps a chunk. */
let shared = Buffer.allocUnsafeSlow(READ_BYTES);

/**
 * As {@link relay}, but the target's bytes are read into one shared buffer (`onread`) instead of a
 * fresh 64 KiB per read, which V8 frees only at its next collection: the least memory a Node relay
 * needs. A TLS socket encrypts a write at once, so the buffer is free again when `write` returns,
 * unless the write was queued behind another; then the queue keeps it and the next read gets a new one.
 */
function relayRecycling(s: tls.TLSSocket): void {
  s.once('data', (head: Buffer) => {
    if (head.length < 6) return void s.destroy();
    const up: Socket = connect({
      host: '127.0.0.1',
      port: head.readUInt16BE(4),
      noDelay: true,
      onread: {
        buffer: () => shared,
        callback: (n: number, buf: Uint8Array): boolean => {
          const ok = s.write(Buffer.from(buf.buffer, buf.byteOffset, n));
          if ((s as unknown as { writableBuffer: unknown[] }).writableBuffer.length > 0)
            shared = Buffer.allocUnsafeSlow(READ_BYTES);
          if (ok) return true;
          s.once('drain', () => up.resume());
          return false;
        },
      },
    });
    up.once('connect', () => {
      if (head.length > 6) up.write(head.subarray(6));
      s.pipe(up);
      up.once('end', () => s.end());
      s.on('error', () => up.destroy());
      up.on('error', () => s.destroy());
      s.on('close', () => up.destroy());
      up.on('close', () => s.destroy());
    });
    up.once('error', () => s.destroy());
  });
  s.on('error', () => s.destroy());
}

function relayServer(tlsFiles: { cert: string; key: string; recycle: boolean } | null): void {
  const server = tlsFiles
    ? tls.createServer(
        { cert: readFileSync(tlsFiles.cert), key: readFileSync(tlsFiles.key), noDelay: true },
        tlsFiles.recycle ? relayRecycling : relay,
      )
    : createServer({ noDelay: true }, relay);
  server.listen(0, '127.0.0.1', () =>
    console.log(`listening ${(server.address() as AddressInfo).port}`),
  );
}

/** A connection to the relay: plain TCP, or TLS that trusts the bench's certificate file. */
function dialRelay(relayPort: number, ca: Buffer | null): Socket {
  if (!ca) return connect({ host: '127.0.0.1', port: relayPort, noDelay: true });
  const s = tls.connect({ host: '127.0.0.1', port: relayPort, servername: 'localhost', ca });
  s.setNoDelay(true);
  return s;
}

function socksClient(relayPort: number, ca: Buffer | null): void {
  const server = createServer({ noDelay: true }, (s) => {
    let greeted = false;
    const onData = (d: Buffer): void => {
      if (!greeted) {
        greeted = true;
        s.write(Buffer.from([5, 0]));
        return;
      }
      s.off('data', onData);
      s.pause();
      if (d.length < 10 || d[3] !== 1) return void s.destroy(); // CONNECT to an IPv4 address only
      const header = d.subarray(4); // IPv4 address and port, and anything sent behind the request
      const up = dialRelay(relayPort, ca);
      up.once(ca ? 'secureConnect' : 'connect', () => {
        s.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
        // As Ladder does: the header leaves with the first payload the application sends.
        s.once('data', (first: Buffer) => {
          up.write(Buffer.concat([header, first]));
          join(s, up);
        });
        s.resume();
      });
      up.once('error', () => s.destroy());
    };
    s.on('data', onData);
    s.on('error', () => s.destroy());
  });
  server.listen(0, '127.0.0.1', () =>
    console.log(`listening ${(server.address() as AddressInfo).port}`),
  );
}

const args = process.argv.slice(2);
const recycleAt = args.indexOf('--recycle');
const recycle = recycleAt >= 0;
if (recycle) args.splice(recycleAt, 1);
const tlsAt = args.indexOf('--tls');
const tlsArgs = tlsAt >= 0 ? args.splice(tlsAt) : [];
const [role, port] = args;
if (role === 'server' && (tlsAt < 0 || tlsArgs.length === 3))
  relayServer(tlsAt < 0 ? null : { cert: tlsArgs[1]!, key: tlsArgs[2]!, recycle });
else if (role === 'client' && port && (tlsAt < 0 || tlsArgs.length === 2))
  socksClient(Number(port), tlsAt < 0 ? null : readFileSync(tlsArgs[1]!));
else {
  console.error(
    'usage: node-floor.js server [--recycle] [--tls <cert.pem> <key.pem>] | client <relay-port> [--tls <cert.pem>]',
  );
  process.exitCode = 2;
}
