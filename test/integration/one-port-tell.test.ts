/**
 * The one-port tell (docs/probe-resistance.md, "One port with TLS"): on a port that serves TLS,
 * bytes that are not a ClientHello and fail Shadowsocks get what the TLS stack in front of the decoy
 * site gives to the same bytes, not Shadowsocks' silence. Compared here, probe for probe, with a
 * reference: the decoy site alone behind a TLS socket with the same certificate (as the lab's
 * reference server, src/lab/services.ts). The probes are docs/censorship-techniques.md §2's: random lengths
 * (NR1, NR2), replays of a real Shadowsocks request whole (R1) and with bytes changed (R2-R5), with
 * and without a FIN after them, and short prefixes of every kind. Only the kind of reaction and the
 * bytes that came back are compared, never times.
 *
 * And what it must not break: Shadowsocks clients on that port (Ladder's, with prefixes and 2022;
 * Debian's ss-local), and a port without TLS keeps the uniform silence (probe-resistance.test.ts).
 * What it costs is tested too: a Shadowsocks request whose first segment is too short to decide is
 * refused where a TLS server would already have closed, unless the port allows a grace period.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket, connect as tlsConnect, createSecureContext } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { issueCertificate } from '../../src/server/certificates.js';
import { PortMux } from '../../src/server/port-mux.js';
import { splitByFirstByte } from '../../src/server/plain-http-handover.js';
import { SsServer } from '../../src/server/ss-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsTcpClientSession } from '../../src/codec/ss-tcp.js';
import { PREFIX_PRESETS } from '../../src/codec/ss-prefix.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import type { ErrorCode } from '../../src/errors.js';
import { seeded } from '../helpers/seeded-random.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import { freePort, hasCommand, startLadder, startLibev, type Peer } from '../helpers/peers.js';
import { curl } from '../helpers/curl.js';
import { startOrigin, expectedHash } from '../helpers/origin.js';

/**
 * Both servers close a probe they refuse at once, or hold it until their authentication timeout.
 * The test watches both ports together: when either one closes, it waits for that event on the other
 * (up to OTHER_CLOSE_MS, below the timeout, so a server that holds still counts as TIMEOUT); only
 * when neither closed and both sent the same bytes within QUIET_MS is the reaction TIMEOUT for both.
 * A slow machine can make QUIET_MS pass before a late close, which then makes both sides TIMEOUT
 * (never a difference that is not there); it cannot make one side look different from the other.
 */
const AUTH_TIMEOUT_MS = 6000;
const QUIET_MS = 700;
const OTHER_CLOSE_MS = 5000;
const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost'],
  serial: randomBytes(16),
});
const secureContext = createSecureContext({ cert: cert.cert, key: cert.key });
const key2017 = makeCipherKey('aes-256-gcm', 'one-port-tell');
const key2022 = makeCipherKey('2022-blake3-aes-128-gcm', randomBytes(16).toString('base64'));
const decoy = new DecoySite();
const probes: ErrorCode[] = [];
let echo: Running;
let ladder: { mux: PortMux; port: number };
let graceful: { mux: PortMux; port: number };
let reference: Server;

function onePort(grace?: number): Promise<{ mux: PortMux; port: number }> {
  const ss = new SsServer({
    keys: [
      { id: 'a', key: key2017 },
      { id: 'b', key: key2022 },
    ],
    dialer: new DirectDialer(),
    authTimeoutMs: AUTH_TIMEOUT_MS,
    events: { rejected: (code) => probes.push(code) },
  });
  const mux = new PortMux({
    ss,
    tls: {
      secureContext,
      handler: { handle: (t) => decoy.handle(t, Buffer.alloc(0)) },
      plainHttp: decoy.handlePlainOnTlsPort,
    },
    authTimeoutMs: AUTH_TIMEOUT_MS,
    ...(grace !== undefined ? { shortHeadGraceMs: grace } : {}),
  });
  return mux.listen('127.0.0.1', 0).then((a) => ({ mux, port: a.port }));
}

before(async () => {
  echo = await tcpEcho();
  ladder = await onePort();
  graceful = await onePort(10_000); // a grace period far longer than the 300 ms gap
  // The reference: the decoy site alone behind the same TLS front, with nginx's first-byte choice
  // between TLS and plain HTTP (src/lab/services.ts does the same).
  reference = createServer((raw) => {
    raw.on('error', () => raw.destroy());
    splitByFirstByte(
      raw,
      (conn) => {
        const s = new TLSSocket(conn as Socket, {
          isServer: true,
          secureContext,
          ALPNProtocols: ['http/1.1'],
        });
        s.on('error', () => s.destroy());
        s.once('secure', () => decoy.handle(s, Buffer.alloc(0)));
      },
      decoy.handlePlainOnTlsPort,
    );
  });
  await new Promise<void>((r) => reference.listen(0, '127.0.0.1', r));
});
after(async () => {
  await ladder.mux.close(0);
  await graceful.mux.close(0);
  reference.close();
  decoy.close();
  await echo.close();
});

interface Reaction {
  end: 'FIN' | 'RST' | 'TIMEOUT';
  reply: string;
}

/** One probe connection: its reply so far and, once the server closed, how. */
interface Watch {
  readonly reply: () => string;
  readonly ended: Promise<Reaction['end']>;
  readonly destroy: () => void;
}

/** Sends the pieces (then a FIN if asked) and watches for the server's close. */
function watch(port: number, pieces: Buffer[], fin: boolean): Watch {
  const s = connect(port, '127.0.0.1');
  let reply = Buffer.alloc(0);
  const ended = new Promise<Reaction['end']>((resolve) => {
    s.on('end', () => resolve('FIN'));
    s.on('error', (e: NodeJS.ErrnoException) =>
      resolve(e.code === 'ECONNRESET' ? 'RST' : 'TIMEOUT'),
    );
  });
  s.on('connect', () => {
    for (const p of pieces) s.write(p);
    if (fin) s.end();
  });
  s.on('data', (d: Buffer) => (reply = Buffer.concat([reply, d])));
  return { reply: () => reply.toString('hex'), ended, destroy: () => s.destroy() };
}

/** How Ladder's port and the reference react to the same probe (see QUIET_MS above). */
function probePair(
  ladderPort: number,
  referencePort: number,
  pieces: Buffer[],
  fin: boolean,
): Promise<[Reaction, Reaction]> {
  return judgePair([watch(ladderPort, pieces, fin), watch(referencePort, pieces, fin)]);
}

/** The two sides' reactions, decided together (see QUIET_MS above). */
async function judgePair(sides: readonly [Watch, Watch]): Promise<[Reaction, Reaction]> {
  const ends: (Reaction['end'] | undefined)[] = [undefined, undefined];
  sides.forEach((w, i) => void w.ended.then((e) => (ends[i] = e)));
  const bounded = (w: Watch, ms: number) =>
    Promise.race([
      w.ended,
      new Promise<'TIMEOUT'>((r) => setTimeout(() => r('TIMEOUT'), ms).unref()),
    ]);
  // Quiet: neither side closed, and both sent the same, for QUIET_MS.
  const quiet = async (): Promise<void> => {
    for (;;) {
      await new Promise((r) => setTimeout(r, QUIET_MS));
      if (ends[0] !== undefined || ends[1] !== undefined) return;
      if (sides[0].reply() === sides[1].reply()) return;
    }
  };
  const first = await Promise.race([
    sides[0].ended.then(() => 'closed' as const),
    sides[1].ended.then(() => 'closed' as const),
    quiet().then(() => 'quiet' as const),
    new Promise<'cap'>((r) => setTimeout(() => r('cap'), OTHER_CLOSE_MS).unref()),
  ]);
  let result: [Reaction['end'], Reaction['end']];
  if (first === 'closed' || ends[0] !== undefined || ends[1] !== undefined) {
    result = [await bounded(sides[0], OTHER_CLOSE_MS), await bounded(sides[1], OTHER_CLOSE_MS)];
  } else {
    result = ['TIMEOUT', 'TIMEOUT'];
  }
  const out = sides.map((w, i) => ({ end: result[i]!, reply: w.reply() })) as [Reaction, Reaction];
  for (const w of sides) w.destroy();
  return out;
}

function request(key = key2017, random: (n: number) => Buffer = randomBytes): Buffer {
  return new SsTcpClientSession(key, random).encodeRequest(
    { host: '127.0.0.1', port: echo.port },
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    Date.now(),
  );
}

function changed(b: Buffer, at: number[]): Buffer {
  const c = Buffer.from(b);
  for (const i of at) c[i]! ^= 0x5a;
  return c;
}

const cases: [string, () => Buffer[]][] = [
  // NR1: random lengths, 1 to 2000 bytes (seeded, so a failure can be replayed)
  ...[1, 2, 4, 5, 6, 10, 11, 20, 33, 49, 50, 58, 59, 60, 100, 221, 500, 1000, 2000].map(
    (n): [string, () => Buffer[]] => [`NR random ${n} B`, () => [seeded(`nr-${n}`, n)]],
  ),
  [
    'NR2 221 B in 3 pieces',
    () =>
      [seeded('nr2', 221)].flatMap((b) => [b.subarray(0, 3), b.subarray(3, 50), b.subarray(50)]),
  ],
  ['R2 byte 0 changed', () => [changed(request(), [0])]],
  ['R3 bytes 0-7 changed', () => [changed(request(), [0, 1, 2, 3, 4, 5, 6, 7])]],
  ['R4 byte 62 changed', () => [changed(request(), [62])]],
  ['R5 bytes 16 and 17 changed', () => [changed(request(), [16, 17])]],
  ['R2 of a 2022 request', () => [changed(request(key2022), [0])]],
  ['a salt alone (32 B)', () => [request().subarray(0, 32)]],
  ['HTTP GET', () => [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]],
  ['TLS record header, wrong version', () => [Buffer.from([0x16, 0xff, 0xff, 0x00, 0x10])]],
  ['TLS record header, then nothing', () => [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05])]],
  [
    'a ClientHello cut at 40 B',
    () => [Buffer.from('160301020001' + '0001fc0303' + '00'.repeat(29), 'hex')],
  ],
  ['SSLv2-style first bytes', () => [Buffer.from([0x80, 0x2e, 0x01])]],
  ...PREFIX_PRESETS.map((p): [string, () => Buffer[]] => [
    `prefix ${p.name} and random bytes`,
    () => [Buffer.concat([Buffer.from(p.bytes), seeded(`p-${p.name}`, 80)])],
  ]),
];

for (const [name, make] of cases)
  for (const fin of [false, true])
    test(`${name}${fin ? ', then FIN' : ''}: the one port reacts as the TLS site alone`, async () => {
      const pieces = make();
      const [a, b] = await probePair(
        ladder.port,
        (reference.address() as AddressInfo).port,
        pieces,
        fin,
      );
      assert.deepEqual(a, b);
    });

/** Like watch(), but the second piece leaves only after the first has been sent on its own. */
function watchInTwoSegments(port: number, first: Buffer, second: Buffer): Watch {
  const s = connect(port, '127.0.0.1');
  s.setNoDelay(true);
  let reply = Buffer.alloc(0);
  let gap: NodeJS.Timeout | undefined;
  const ended = new Promise<Reaction['end']>((resolve) => {
    s.on('end', () => resolve('FIN'));
    s.on('error', (e: NodeJS.ErrnoException) =>
      resolve(e.code === 'ECONNRESET' ? 'RST' : 'TIMEOUT'),
    );
  });
  // The gap only makes two segments likely; were they joined, the case is the one-chunk one above.
  s.on('connect', () => s.write(first, () => (gap = setTimeout(() => s.write(second), 100))));
  s.on('data', (d: Buffer) => (reply = Buffer.concat([reply, d])));
  return {
    reply: () => reply.toString('hex'),
    ended,
    destroy: () => {
      clearTimeout(gap);
      s.destroy();
    },
  };
}

test('a TLS-looking first segment, then bytes that are no ClientHello: the TLS stack sees them all', async () => {
  // 16 03 01 alone cannot be classified; the next segment completes a 5-byte handshake record of an
  // unknown type, which a TLS server answers with an alert at once.
  const first = Buffer.from([0x16, 0x03, 0x01]);
  const second = Buffer.from([0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const refPort = (reference.address() as AddressInfo).port;
  const [a, b] = await judgePair([
    watchInTwoSegments(ladder.port, first, second),
    watchInTwoSegments(refPort, first, second),
  ]);
  assert.notEqual(b.end, 'TIMEOUT', 'the reference reacts');
  assert.deepEqual(a, b);
});

test('R1: a replayed request is refused by Shadowsocks and then reacts as the TLS site alone', async () => {
  const r = request();
  // The original authenticates (and is echoed), so its salt is now known.
  const first = await new Promise<Buffer>((resolve) => {
    const s = connect(ladder.port, '127.0.0.1');
    const got: Buffer[] = [];
    s.on('connect', () => s.write(r));
    s.on('data', (d: Buffer) => {
      got.push(d);
      s.destroy();
      resolve(Buffer.concat(got));
    });
    setTimeout(() => {
      s.destroy();
      resolve(Buffer.concat(got));
    }, 10_000).unref(); // bounds a hung test; the echo comes at once
  });
  assert.ok(first.length > 0, 'the original request is served');
  const before = probes.length;
  const [a, b] = await probePair(
    ladder.port,
    (reference.address() as AddressInfo).port,
    [r],
    false,
  );
  assert.deepEqual(a, b);
  assert.ok(probes.slice(before).includes('ERR_REPLAY_CLIENT'));
});

test('a TLS visitor still gets the site, and an HTTPS request its page', async () => {
  const page = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port: ladder.port, servername: 'localhost', rejectUnauthorized: false },
      () => s.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
    );
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
  assert.match(page, /^HTTP\/1\.1 200/);
});

async function echoThrough(port: number, dialer: SsStreamDialer): Promise<string> {
  void port;
  const d = await dialer.dial({ host: '127.0.0.1', port: echo.port });
  return new Promise((resolve, reject) => {
    let got = '';
    const t = setTimeout(() => reject(new Error(`echo: got '${got}'`)), 5000);
    d.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.length >= 5) {
        clearTimeout(t);
        d.destroy();
        resolve(got);
      }
    });
    d.on('error', reject);
    d.write('hello');
  });
}

test("Ladder's Shadowsocks clients on the one port: AEAD-2017, 2022, and every prefix preset", async () => {
  const server = { host: '127.0.0.1', port: ladder.port };
  assert.equal(await echoThrough(ladder.port, new SsStreamDialer(server, key2017)), 'hello');
  assert.equal(await echoThrough(ladder.port, new SsStreamDialer(server, key2022)), 'hello');
  for (const p of PREFIX_PRESETS)
    assert.equal(
      await echoThrough(ladder.port, new SsStreamDialer(server, key2017, { prefix: p.bytes })),
      'hello',
      p.name,
    );
});

/**
 * A valid request whose first segment is only 5 bytes, the rest (if `rest`) 300 ms later. Its salt starts with
 * 0x00, which no TLS record starts with (content type 0, and not an SSLv2 header), so that a TLS
 * server refuses those 5 bytes every time: with a random first byte, about one salt in 200 (0x16, or
 * an SSLv2-style length) makes a TLS server wait for more, and the test would be served by chance.
 */
function trickle(port: number, rest: boolean): Promise<Reaction> {
  const r = request(key2017, (n) => {
    const b = randomBytes(n);
    b[0] = 0x00;
    return b;
  });
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let reply = Buffer.alloc(0);
    const finish = (end: Reaction['end']): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ end, reply: reply.toString('hex') });
    };
    // bounds a hung test; the strict port answers the 5 bytes and closes, the lenient one serves
    const timer = setTimeout(() => finish('TIMEOUT'), 10_000);
    s.on('connect', () => {
      s.write(r.subarray(0, 5));
      // Only the lenient port gets the rest (in its grace period): sent to the strict port, it could
      // arrive before that server read the 5 bytes and make one segment of them.
      if (rest) setTimeout(() => s.writable && s.write(r.subarray(5)), 300);
    });
    s.on('data', (d: Buffer) => {
      reply = Buffer.concat([reply, d]);
      if (rest) finish('TIMEOUT'); // served
    });
    s.on('end', () => finish('FIN'));
    s.on('error', () => finish('RST'));
  });
}

test('the cost: a request whose first segment cannot be decided is refused where a web server would answer, unless the port allows a grace period', async () => {
  const strict = await trickle(ladder.port, false);
  assert.equal(strict.end, 'FIN');
  // A first byte 0x00 is plain HTTP to nginx's ssl port, and not a method: its 400 page at once.
  assert.match(
    Buffer.from(strict.reply, 'hex').toString('latin1'),
    /^HTTP\/1\.1 400 Bad Request\r\n[^]*<title>400 Bad Request<\/title>/,
    'refused: 5 bytes that nginx answers at once',
  );
  const lenient = await trickle(graceful.port, true);
  assert.ok(
    lenient.reply.length > 0,
    'with shortHeadGraceMs the rest arrives in time and is served',
  );
});

const libev = hasCommand('ss-local') && hasCommand('curl');
test(
  "Debian's ss-local against the one port of `ladder server` with a trojan:// key (TLS on)",
  { skip: libev ? false : 'needs ss-local (shadowsocks-libev) and curl' },
  async () => {
    const peers: Peer[] = [];
    const origin = await startOrigin();
    try {
      const port = await freePort();
      const password = 'one-port-libev';
      const server = await startLadder([
        'server',
        '--allow-private-targets',
        '--listen',
        `127.0.0.1:${port}`,
        '--key',
        formatSsUri({ method: 'chacha20-ietf-poly1305', password, host: '127.0.0.1', port }),
        '--key',
        formatTrojanUri({ password: 'trojan-too', host: '127.0.0.1', port }),
      ]);
      peers.push(server);
      const local = await freePort();
      peers.push(
        await startLibev('ss-local', {
          server: '127.0.0.1',
          server_port: port,
          local_address: '127.0.0.1',
          local_port: local,
          password,
          method: 'chacha20-ietf-poly1305',
          timeout: 60,
        }),
      );
      const size = 4 << 20;
      const r = await curl([
        '--socks5-hostname',
        `127.0.0.1:${local}`,
        `http://127.0.0.1:${origin.port}/bytes/${size}`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.sha256, expectedHash(size));
    } finally {
      await Promise.all(peers.map((p) => p.stop()));
      await origin.close();
    }
  },
);
