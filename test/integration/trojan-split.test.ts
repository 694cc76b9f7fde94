/**
 * Trojan with `split` (trojan-dialer.ts `splitFirstPayload`): the request leaves with a random slice
 * of the first payload, the rest after the server's session tickets. The shared dialer suite
 * through Ladder's Trojan handler; what a TLS server receives, record by record (the request and a
 * slice, then the rest, each dial a full handshake that the server answers with tickets); and the
 * helper alone on a corked stream: the rest waits for 'session' or for the wait, a ticket that came
 * first sends the payload whole, nothing written sends the request alone.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import {
  createServer as createTcpServer,
  connect as tcpConnect,
  type AddressInfo,
  type Server,
} from 'node:net';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { issueCertificate } from '../../src/server/certificates.js';
import { trojanPasswordHash, trojanRequestLength } from '../../src/codec/trojan.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { TrojanDialer, splitFirstPayload } from '../../src/transport/trojan-dialer.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { dialerSuite } from '../helpers/dialer-suite.js';

const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost', '127.0.0.1'],
  serial: randomBytes(16),
});
const PASSWORD = 'split horse';
let trojan: TlsServer;
let trojanPort: number;
/** A TLS server that records what each connection receives, read by read, and answers nothing. */
let recorder: TlsServer;
let recorderPort: number;
const received: Buffer[][] = [];
/** A TCP relay in front of the recorder: what crossed it, in order ('c' client to server, 's' back). */
let relay: Server;
let relayPort: number;
const crossed: { dir: 'c' | 's'; bytes: Buffer }[][] = [];
const decoy = new DecoySite();
let ready!: () => void;
const listening = new Promise<void>((r) => (ready = r));

before(async () => {
  const handler = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
  });
  trojan = createTlsServer(
    { cert: cert.cert, key: cert.key, ALPNProtocols: ['http/1.1'], allowHalfOpen: true },
    (s) => handler.handle(s),
  );
  recorder = createTlsServer({ cert: cert.cert, key: cert.key }, (s) => {
    const reads: Buffer[] = [];
    received.push(reads);
    s.on('data', (d: Buffer) => reads.push(Buffer.from(d)));
    s.on('error', () => {});
  });
  relay = createTcpServer((c) => {
    const log: { dir: 'c' | 's'; bytes: Buffer }[] = [];
    crossed.push(log);
    const up = tcpConnect(recorderPort, '127.0.0.1');
    c.on('data', (d: Buffer) => {
      log.push({ dir: 'c', bytes: Buffer.from(d) });
      up.write(d);
    });
    up.on('data', (d: Buffer) => {
      log.push({ dir: 's', bytes: Buffer.from(d) });
      c.write(d);
    });
    c.on('close', () => up.destroy());
    up.on('close', () => c.destroy());
    c.on('error', () => {});
    up.on('error', () => {});
  });
  await new Promise<void>((r) => trojan.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  trojanPort = (trojan.address() as AddressInfo).port;
  recorderPort = (recorder.address() as AddressInfo).port;
  relayPort = (relay.address() as AddressInfo).port;
  ready();
});
after(() => {
  trojan.close();
  recorder.close();
  relay.close();
  decoy.close();
});

const splitDialer = (port: () => number) =>
  new TrojanDialer(
    { host: '127.0.0.1', port: port() },
    { password: PASSWORD, sni: 'localhost', pinSha256: cert.fingerprint256, split: true },
  );

dialerSuite('trojan over TLS with split', async () => {
  await listening;
  const d = splitDialer(() => trojanPort);
  return { dialer: d, packetDialer: d, close: async () => {} };
});

/** TLS records (type, length of the fragment) in a byte stream. */
function records(b: Buffer): { type: number; length: number }[] {
  const out: { type: number; length: number }[] = [];
  for (let p = 0; p + 5 <= b.length;) {
    const length = b.readUInt16BE(p + 3);
    out.push({ type: b[p]!, length });
    p += 5 + length;
  }
  return out;
}

test("on the wire: Finished, then the request with a slice, then the server's tickets, then the rest", async () => {
  await listening;
  const d = splitDialer(() => relayPort);
  const target = { host: 'inner.example', port: 443 };
  const headerLength = trojanRequestLength(target);
  const slices = new Set<number>();
  for (let i = 0; i < 8; i++) {
    const before = received.length;
    const wire = crossed.length;
    const s = await d.dial(target);
    const hello = randomBytes(517); // the size of curl's ClientHello
    s.write(hello);
    const got = () => (received[before] ?? []).reduce((n, r) => n + r.length, 0);
    for (let t = Date.now(); got() < headerLength + hello.length && Date.now() - t < 10_000;)
      await new Promise((r) => setTimeout(r, 10));
    s.destroy();
    assert.deepEqual(Buffer.concat(received[before]!).subarray(headerLength), hello);
    // The client's records: ClientHello (22), CCS (20), then encrypted ones (23): its Finished,
    // the request with a slice, the rest. A record's fragment is its content + 1 type byte + 16 tag.
    const log = crossed[wire]!;
    const c2s = records(Buffer.concat(log.filter((x) => x.dir === 'c').map((x) => x.bytes)));
    const encrypted = c2s.filter((r) => r.type === 23);
    assert.equal(encrypted.length, 3, `connection ${i}: ${JSON.stringify(c2s)}`);
    const [, first, rest] = encrypted.map((r) => r.length - 17);
    assert.ok(first! > headerLength && first! < headerLength + hello.length, `slice ${first}`);
    assert.equal(first! + rest!, headerLength + hello.length);
    slices.add(first!);
    // Between the two: the server spoke (its tickets), so they are two client runs, not one.
    let seen = 0;
    let serverBetween = false;
    for (const x of log) {
      if (x.dir === 'c') seen += x.bytes.length;
      else if (seen > 0 && c2s.length > 0) {
        const total = c2s.reduce((n, r) => n + 5 + r.length, 0);
        const beforeRest = total - (5 + rest! + 17);
        if (seen === beforeRest) serverBetween = true;
      }
    }
    assert.ok(serverBetween, `connection ${i}: the server sent nothing between slice and rest`);
  }
  assert.ok(slices.size >= 2, 'the slice is random, not one size');
});

/** A corked stream like a socket: records its writes, flushed or not. */
function fakeSocket() {
  const flushed: Buffer[] = [];
  const w = new Writable({
    write(c: Buffer, _e, cb) {
      flushed.push(Buffer.from(c));
      cb();
    },
    writev(chunks, cb) {
      flushed.push(Buffer.concat(chunks.map((c) => c.chunk as Buffer)));
      cb();
    },
  });
  return { w, flushed };
}

const rand = (min: number, max: number) => Math.floor((min + max) / 2);

test('splitFirstPayload: the rest waits for the ticket, or for the wait', async () => {
  for (const ticketComes of [true, false]) {
    const { w, flushed } = fakeSocket();
    w.cork();
    w.write(Buffer.from('REQ'));
    splitFirstPayload(w as never, {
      firstPayloadWaitMs: 1000,
      ticketWaitMs: ticketComes ? 60_000 : 20,
      rand,
    });
    w.write(Buffer.from('0123456789'));
    w.write(Buffer.from('more'));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(flushed.map(String), ['REQ01234'], 'the request and a slice, one write');
    if (ticketComes) w.emit('session', Buffer.alloc(1));
    for (let t = Date.now(); flushed.length < 2 && Date.now() - t < 10_000;)
      await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(flushed.map(String), ['REQ01234', '56789more']);
  }
});

test('splitFirstPayload: a ticket before the first write sends it whole; no write sends the request alone', async () => {
  const a = fakeSocket();
  a.w.cork();
  a.w.write(Buffer.from('REQ'));
  splitFirstPayload(a.w as never, { firstPayloadWaitMs: 1000, ticketWaitMs: 60_000, rand });
  a.w.emit('session', Buffer.alloc(1));
  a.w.write(Buffer.from('0123456789'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(a.flushed.map(String), ['REQ0123456789']);

  const b = fakeSocket();
  b.w.cork();
  b.w.write(Buffer.from('REQ'));
  splitFirstPayload(b.w as never, { firstPayloadWaitMs: 10, ticketWaitMs: 60_000, rand });
  for (let t = Date.now(); b.flushed.length < 1 && Date.now() - t < 10_000;)
    await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(b.flushed.map(String), ['REQ']);
  b.w.write(Buffer.from('late'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(b.flushed.map(String), ['REQ', 'late']);
});
