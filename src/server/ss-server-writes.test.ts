/**
 * How a Shadowsocks request and its answer leave, write by write: the client's salt, headers and
 * first payload in one write, and the server's salt, response header and first payload in one
 * write, for both editions. A header written apart from its payload costs a segment, and with
 * Nagle or delayed ACKs on the way a round trip.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { SsServer } from './ss-server.js';
import { SsStreamDialer } from '../transport/ss-dialer.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import type { SsMethod } from '../crypto/methods.js';
import type { StreamDialer } from '../transport/types.js';

/** Two connected in-memory streams; each keeps the chunks of every write() made to it. */
function recordedPair(): { a: Duplex; b: Duplex; aWrites: Buffer[]; bWrites: Buffer[] } {
  const aWrites: Buffer[] = [];
  const bWrites: Buffer[] = [];
  const ends: Duplex[] = [];
  const make = (writes: Buffer[], other: () => Duplex): Duplex =>
    new Duplex({
      read() {
        /* the peer pushes */
      },
      write(chunk: Buffer, _enc, cb) {
        writes.push(Buffer.from(chunk));
        other().push(chunk);
        cb();
      },
      final(cb) {
        other().push(null);
        cb();
      },
    });
  ends.push(
    make(aWrites, () => ends[1]!),
    make(bWrites, () => ends[0]!),
  );
  return { a: ends[0]!, b: ends[1]!, aWrites, bWrites };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

for (const method of ['aes-256-gcm', '2022-blake3-aes-256-gcm'] as const satisfies SsMethod[]) {
  test(`${method}: request with its first payload, and response header with its first payload, one write each`, async () => {
    const password =
      method === 'aes-256-gcm' ? 'writes-test-password' : randomBytes(32).toString('base64');
    const key = makeCipherKey(method, password);
    const request = Buffer.from('GET /hello HTTP/1.1\r\nHost: example\r\n\r\n');
    const response = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi');

    // The target: answers once the request has come.
    const target = recordedPair();
    const dialed: string[] = [];
    const dialer: StreamDialer = {
      dial: async (t) => {
        dialed.push(`${t.host}:${t.port}`);
        return target.a;
      },
    };
    const fromClient: Buffer[] = [];
    target.b.on('data', (d: Buffer) => {
      fromClient.push(d);
      if (Buffer.concat(fromClient).equals(request)) target.b.write(response);
    });

    const server = new SsServer({ keys: [{ id: 'k', key }], dialer });
    const wire = recordedPair(); // a: the client's socket, b: the server's
    server.handleConnection(wire.b);
    const client = new SsStreamDialer({ host: '127.0.0.1', port: 1 }, key, {
      connect: async () => wire.a,
    });
    const stream = await client.dial({ host: '198.18.0.7', port: 80 });
    const got: Buffer[] = [];
    const answered = new Promise<void>((resolve) =>
      stream.on('data', (d: Buffer) => {
        got.push(d);
        if (Buffer.concat(got).equals(response)) resolve();
      }),
    );
    stream.write(request);
    await answered;
    await turn();

    assert.deepEqual(dialed, ['198.18.0.7:80']);
    assert.deepEqual(Buffer.concat(fromClient), request);
    assert.equal(wire.aWrites.length, 1, 'salt, request header and first payload: one write');
    assert.equal(wire.bWrites.length, 1, 'salt, response header and first payload: one write');
    // Each write is the whole message: the first payload's bytes travel in it.
    assert.ok(wire.aWrites[0]!.length > request.length + 32);
    assert.ok(wire.bWrites[0]!.length > response.length + 32);

    stream.destroy();
    target.b.destroy();
    await server.close(0);
  });
}
