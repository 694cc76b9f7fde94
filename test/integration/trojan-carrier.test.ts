/**
 * Carrier sessions in process: Ladder's Trojan dialer wrapped in the carrier dialer, through
 * Ladder's Trojan handler on a TLS listener on loopback. The shared dialer suite; a 1 MB download
 * carried by ≥ 70 carriers of 12 KiB (hash equal); a carrier killed mid-way resumes from the
 * offset the client holds; a carrier frozen mid-way by a middlebox (a censor's byte budget: no
 * byte, no end) is replaced after the stall silence and the session resumes; a resumption of a
 * session that does not exist, or at an offset the server never sent, gets RESET; a session left
 * without a carrier is closed at its deadline.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createServer as createTlsServer,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { issueCertificate } from '../../src/server/certificates.js';
import { trojanPasswordHash } from '../../src/codec/trojan.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import { CarrierDialer, CarrierStream } from '../../src/transport/carrier-dialer.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import {
  CARRIER_FRAME,
  CARRIER_TARGET,
  carrierFrame,
  carrierOpenLength,
  encodeCarrierOpen,
} from '../../src/codec/trojan-carrier.js';
import type { StreamDialer, Target } from '../../src/transport/types.js';
import { dialerSuite } from '../helpers/dialer-suite.js';

const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost', '127.0.0.1'],
  serial: randomBytes(16),
});
const PASSWORD = 'carrier pigeon';
const CARRIER_BYTES = 12 * 1024;
const DOWNLOAD = randomBytes(1_000_000);
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

let handler: TrojanHandler;
/**
 * The handler the listener serves: `handler` (default deadlines: a loaded machine may take longer
 * than 200 ms between two carriers), or for the deadline test one whose sessions without a carrier
 * end after 200 ms.
 */
let serving: TrojanHandler;
let tls: TlsServer;
let port: number;
/** An origin that sends DOWNLOAD to every connection and ends. */
let origin: Server;
let originPort: number;
const sockets = new Set<TLSSocket | Socket>();
const decoy = new DecoySite();
let ready!: () => void;
const listening = new Promise<void>((r) => (ready = r));

before(async () => {
  handler = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
  });
  serving = handler;
  tls = createTlsServer(
    { cert: cert.cert, key: cert.key, ALPNProtocols: ['http/1.1'], allowHalfOpen: true },
    (s) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      serving.handle(s);
    },
  );
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  port = (tls.address() as AddressInfo).port;
  origin = createServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.end(DOWNLOAD);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originPort = (origin.address() as AddressInfo).port;
  ready();
});
after(() => {
  tls.close();
  origin.close();
  for (const s of sockets) s.destroy();
  decoy.close();
});

function trojan(to = port): TrojanDialer {
  return new TrojanDialer(
    { host: '127.0.0.1', port: to },
    { password: PASSWORD, sni: 'localhost', pinSha256: cert.fingerprint256 },
  );
}

/** A dialer that hands each carrier to `onCarrier` (the n-th, from 1) as it opens. */
function watched(inner: StreamDialer, onCarrier: (c: Duplex, n: number) => void): StreamDialer {
  let n = 0;
  return {
    async dial(t: Target, signal?: AbortSignal) {
      const c = (await inner.dial(t, signal)) as Duplex;
      onCarrier(c, ++n);
      return c;
    },
  };
}

function readAll(d: Duplex, limitMs = 25_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`no end within ${limitMs} ms`)), limitMs);
    d.on('data', (c: Buffer) => parts.push(c));
    d.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
    d.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

dialerSuite('trojan carriers of 256 KiB', async () => {
  await listening;
  const t = trojan();
  return {
    dialer: new CarrierDialer(t, { carrierBytes: 256 * 1024 }),
    packetDialer: t,
    close: async () => {},
  };
});

test('1 MB download over carriers of 12 KiB: ≥ 70 carriers, none over its bytes, hash equal', async () => {
  await listening;
  const perCarrier: number[] = [];
  const d = new CarrierDialer(
    watched(trojan(), (c) => {
      const i = perCarrier.push(0) - 1;
      c.on('data', (b: Buffer) => (perCarrier[i]! += b.length));
    }),
    { carrierBytes: CARRIER_BYTES },
  );
  const s = (await d.dial({ host: '127.0.0.1', port: originPort })) as CarrierStream;
  const got = await readAll(s);
  assert.equal(got.length, DOWNLOAD.length);
  assert.equal(sha(got), sha(DOWNLOAD));
  assert.ok(s.carriers >= 70, `${s.carriers} carriers`);
  assert.ok(Math.max(...perCarrier) <= CARRIER_BYTES, `largest carrier ${Math.max(...perCarrier)}`);
});

test('a carrier killed mid-way: the next resumes at the offset held, hash equal', async () => {
  await listening;
  let killedAt = -1;
  const d = new CarrierDialer(
    watched(trojan(), (c, n) => {
      if (n !== 10) return;
      let seen = 0;
      c.on('data', (b: Buffer) => {
        seen += b.length;
        if (seen > 3000 && killedAt < 0) {
          killedAt = seen;
          c.destroy();
        }
      });
    }),
    { carrierBytes: CARRIER_BYTES },
  );
  const s = (await d.dial({ host: '127.0.0.1', port: originPort })) as CarrierStream;
  const got = await readAll(s);
  assert.ok(killedAt > 0, 'the 10th carrier was killed');
  assert.equal(sha(got), sha(DOWNLOAD));
});

/**
 * A TCP middlebox in front of the Trojan listener that, on its `freezeConn`-th connection, passes
 * the first `afterBytes` server→client bytes and then none, with no reset and no end (as a byte
 * budget does); the client's bytes still pass. Resolves with its port and how many it froze.
 */
async function freezingMiddlebox(
  to: number,
  freezeConn: number,
  afterBytes: number,
): Promise<{ port: number; frozen: () => number; close: () => void }> {
  let n = 0;
  let frozen = 0;
  const box = createServer((client) => {
    const i = ++n;
    const up = connect(to, '127.0.0.1');
    sockets.add(client);
    sockets.add(up);
    client.once('close', () => {
      sockets.delete(client);
      up.destroy();
    });
    up.once('close', () => sockets.delete(up));
    client.on('error', () => client.destroy());
    up.on('error', () => up.destroy());
    client.pipe(up);
    let passed = 0;
    up.on('data', (b: Buffer) => {
      if (i !== freezeConn) {
        client.write(b);
        return;
      }
      const room = afterBytes - passed;
      if (room > 0) client.write(b.subarray(0, room));
      if (room > 0 && b.length >= room) frozen++;
      passed += b.length;
    });
    // the server's end is not passed on either: the client sees silence, not a close
    up.on('end', () => {
      if (i !== freezeConn) client.end();
    });
  });
  await new Promise<void>((r) => box.listen(0, '127.0.0.1', r));
  return {
    port: (box.address() as AddressInfo).port,
    frozen: () => frozen,
    close: () => box.close(),
  };
}

test('a carrier frozen mid-way (no byte, no end): the next opens after the stall silence and resumes, hash equal', async () => {
  await listening;
  // A server of its own: the shared one closes detached sessions after 200 ms, and the frozen
  // carrier's NEXT, lost in the middlebox, leaves the session detached until the client notices.
  const h = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
  });
  const server = createTlsServer(
    { cert: cert.cert, key: cert.key, ALPNProtocols: ['http/1.1'], allowHalfOpen: true },
    (c) => {
      sockets.add(c);
      c.once('close', () => sockets.delete(c));
      h.handle(c);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const box = await freezingMiddlebox((server.address() as AddressInfo).port, 5, 8000);
  try {
    const d = new CarrierDialer(trojan(box.port), { carrierBytes: CARRIER_BYTES, stallMs: 1000 });
    const s = (await d.dial({ host: '127.0.0.1', port: originPort })) as CarrierStream;
    const got = await readAll(s);
    assert.equal(box.frozen(), 1, 'the 5th connection was frozen');
    assert.equal(sha(got), sha(DOWNLOAD));
  } finally {
    box.close();
    server.close();
  }
});

/** Opens a raw carrier and returns everything the server sends until it closes. */
async function rawCarrier(head: Buffer): Promise<Buffer> {
  const c = (await trojan().dial(CARRIER_TARGET)) as Duplex;
  const got = readAll(c);
  c.write(head);
  return got;
}

function openHead(
  sessionId: Buffer,
  down: number,
  up: number,
  target?: Target,
  carrierBytes = CARRIER_BYTES,
): Buffer {
  const o = {
    sessionId,
    carrierBytes,
    downOffset: down,
    upOffset: up,
    ...(target ? { target } : {}),
  };
  const b = Buffer.alloc(carrierOpenLength(o));
  encodeCarrierOpen(o, b, 0);
  return b;
}

test('resuming a session that does not exist, or past what was sent, gets RESET', async () => {
  await listening;
  const reset = carrierFrame(CARRIER_FRAME.RESET).toString('hex');
  const none = await rawCarrier(openHead(randomBytes(16), 0, 0));
  assert.equal(none.toString('hex'), reset);
  // an echo session: send nothing, then claim to hold bytes the server never sent
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  try {
    const id = randomBytes(16);
    const c = (await trojan().dial(CARRIER_TARGET)) as Duplex;
    c.write(openHead(id, 0, 0, { host: '127.0.0.1', port: (echo.address() as AddressInfo).port }));
    const first = await new Promise<Buffer>((r) => c.once('data', r)); // the carrier's ACK
    assert.equal(first[0], CARRIER_FRAME.ACK);
    const past = await rawCarrier(openHead(id, 5000, 0));
    assert.equal(past.toString('hex'), reset);
    c.destroy();
  } finally {
    echo.close();
  }
});

test('a session left without a carrier is closed at its deadline', async () => {
  await listening;
  const short = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
    carrier: { detachedTimeoutMs: 200 },
  });
  serving = short;
  try {
    const c = (await trojan().dial(CARRIER_TARGET)) as Duplex;
    c.write(openHead(randomBytes(16), 0, 0, { host: '127.0.0.1', port: originPort }));
    c.pause();
    await new Promise<void>((r) => {
      const check = (): void => (short.carrierSessions > 0 ? r() : void setImmediate(check));
      check();
    });
    c.destroy();
    // detachedTimeoutMs is 200 ms here: wait for the event (the count reaching 0), bounded
    const until = Date.now() + 20_000;
    while (short.carrierSessions > 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(short.carrierSessions, 0);
  } finally {
    serving = handler;
  }
});

test('an upload with nothing coming back: ACKs that no longer fit end the carrier, no deadlock', async () => {
  await listening;
  // a sink that answers only at the end, with the hash of what it got
  const sink = createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    s.on('data', (b: Buffer) => h.update(b));
    s.on('end', () => s.end(h.digest('hex')));
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  try {
    // A 1,024-byte carrier holds 112 ACKs, one per DATA frame of 64 KiB here; 12 MiB needs 192.
    const d = new CarrierDialer(trojan(), { carrierBytes: 1024 });
    const s = (await d.dial({
      host: '127.0.0.1',
      port: (sink.address() as AddressInfo).port,
    })) as CarrierStream;
    const up = randomBytes(12 << 20);
    const got = readAll(s);
    Readable.from(Array.from({ length: 192 }, (_, i) => up.subarray(i << 16, (i + 1) << 16))).pipe(
      s,
    );
    assert.equal((await got).toString(), sha(up));
    assert.ok(s.carriers >= 2, `${s.carriers} carriers`);
  } finally {
    sink.close();
  }
});

test('the carrier with the stream end frozen: the client resumes, gets the tail and the end', async () => {
  await listening;
  // A server of its own with default deadlines: the session must outlive the frozen carrier.
  const h = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
  });
  const server = createTlsServer(
    { cert: cert.cert, key: cert.key, ALPNProtocols: ['http/1.1'], allowHalfOpen: true },
    (c) => {
      sockets.add(c);
      c.once('close', () => sockets.delete(c));
      h.handle(c);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // One carrier holds the whole download and its FIN; the middlebox passes 8000 bytes of it.
  const box = await freezingMiddlebox((server.address() as AddressInfo).port, 1, 8000);
  try {
    const d = new CarrierDialer(trojan(box.port), { carrierBytes: 2 * 1024 * 1024, stallMs: 1000 });
    const s = (await d.dial({ host: '127.0.0.1', port: originPort })) as CarrierStream;
    const got = await readAll(s);
    assert.equal(box.frozen(), 1, 'the first carrier was frozen');
    assert.equal(sha(got), sha(DOWNLOAD));
  } finally {
    box.close();
    server.close();
  }
});

/** A handler of its own with `carrier` options, served for the length of `fn`. */
async function withHandler(
  carrier: ConstructorParameters<typeof TrojanHandler>[0]['carrier'],
  fn: (h: TrojanHandler) => Promise<void>,
): Promise<void> {
  const h = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
    ...(carrier ? { carrier } : {}),
  });
  serving = h;
  try {
    await fn(h);
  } finally {
    serving = handler;
  }
}

test("a finished session ends at the client's ACK of the whole stream, not at its deadline", async () => {
  await listening;
  // Sessions without a carrier would last ten minutes: only the ACK can end this one.
  await withHandler({ detachedTimeoutMs: 600_000 }, async (h) => {
    const d = new CarrierDialer(trojan(), { carrierBytes: 256 * 1024 });
    const s = (await d.dial({ host: '127.0.0.1', port: originPort })) as CarrierStream;
    assert.equal(sha(await readAll(s)), sha(DOWNLOAD));
    // wait for the event (the count reaching 0), bounded well below the ten minutes
    const until = Date.now() + 30_000;
    while (h.carrierSessions > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(h.carrierSessions, 0);
  });
});

test('finished sessions not acknowledged give way to new ones at the per-user cap', async () => {
  await listening;
  await withHandler({ detachedTimeoutMs: 600_000, maxSessionsPerUser: 1 }, async (h) => {
    // a raw carrier reads the whole stream and its FIN but never acknowledges it
    const raw = await rawCarrier(
      openHead(randomBytes(16), 0, 0, { host: '127.0.0.1', port: originPort }, 2 * 1024 * 1024),
    );
    assert.equal(raw.at(-3), CARRIER_FRAME.FIN, 'the raw carrier ended with FIN');
    assert.equal(h.carrierSessions, 1, 'the finished session is kept for a resume');
    const d = new CarrierDialer(trojan(), { carrierBytes: 256 * 1024 });
    const s = (await d.dial({ host: '127.0.0.1', port: originPort })) as CarrierStream;
    assert.equal(sha(await readAll(s)), sha(DOWNLOAD));
  });
});
