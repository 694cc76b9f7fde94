/**
 * The WebSocket transports end to end, in process, on loopback: one Ladder port (PortMux) with
 * Shadowsocks keys, a Trojan user and two secret WebSocket paths, plus the plain WebSocket listener
 * for use behind a CDN. Every client variant passes the dialer suite (Mux.Cool has no half-close, so
 * it gets its own checks), the web site answers everything else, and a WebSocket that carries
 * nothing valid gets the Shadowsocks probe rule.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { createSecureContext, connect as tlsConnectRaw } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { issueCertificate } from '../../src/server/certificates.js';
import { trojanPasswordHash } from '../../src/codec/trojan.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsServer } from '../../src/server/ss-server.js';
import { PortMux } from '../../src/server/port-mux.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import {
  TlsInnerFront,
  WsFront,
  WsListener,
  classifyWsPayload,
} from '../../src/server/ws-front.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { SsPacketDialer, SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import { wsConnect, wsConnector } from '../../src/transport/ws-dialer.js';
import { dialerSuite } from '../helpers/dialer-suite.js';
import { streamOutcome } from '../helpers/outcome.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import type { Target } from '../../src/transport/types.js';

const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost', '127.0.0.1'],
  serial: randomBytes(16),
});
const ssKey = makeCipherKey('2022-blake3-aes-128-gcm', randomBytes(16).toString('base64'));
const ss2017 = makeCipherKey('chacha20-ietf-poly1305', 'ws-test-password');
const TROJAN_PASSWORD = 'correct horse battery';
const SS_PATH = '/s3cr3t-ss';
const TROJAN_PATH = '/s3cr3t-trojan';
const probes: string[] = [];
const upgraded: string[] = [];

interface Server {
  tls: Target;
  plain: Target;
  close(): Promise<void>;
}
let serverReady!: (s: Server) => void;
const server = new Promise<Server>((r) => (serverReady = r));

before(async () => {
  const ss = new SsServer({
    keys: [
      { id: 'ss2022', key: ssKey },
      { id: 'ss2017', key: ss2017 },
    ],
    dialer: new DirectDialer({ recycleReads: true }),
    packetDialer: new DirectPacketDialer(),
    authTimeoutMs: 1500,
    events: { rejected: (code) => probes.push(code) },
  });
  const decoy = new DecoySite();
  const trojan = new TrojanHandler({
    users: [{ id: 'alice', hash: trojanPasswordHash(TROJAN_PASSWORD) }],
    dialer: new DirectDialer(),
    packetDialer: new DirectPacketDialer(),
    fallback: decoy,
  });
  const web = new WsFront({
    paths: [SS_PATH, TROJAN_PATH],
    ss,
    trojan,
    fallback: decoy,
    authTimeoutMs: 1500,
    events: { upgraded: (k) => upgraded.push(k) },
  });
  const mux = new PortMux({
    ss,
    tls: {
      secureContext: createSecureContext({ cert: cert.cert, key: cert.key }),
      handler: new TlsInnerFront({ trojan, web }),
    },
    authTimeoutMs: 1500,
  });
  const a = await mux.listen('127.0.0.1', 0);
  const plain = new WsListener(web);
  const b = await plain.listen('127.0.0.1', 0);
  serverReady({
    tls: { host: '127.0.0.1', port: a.port },
    plain: { host: '127.0.0.1', port: b.port },
    close: async () => {
      await plain.close();
      await mux.close(200);
      web.close();
      decoy.close();
    },
  });
});
after(async () => (await server).close());

const tlsOptions = { sni: 'localhost', pinSha256: cert.fingerprint256 };

describe('ss over WebSocket over TLS (v2ray-plugin mux=0)', () => {
  dialerSuite('ss-ws-tls', async () => {
    const s = await server;
    const connect = wsConnector(s.tls, { path: SS_PATH, host: 'localhost', tls: tlsOptions });
    return {
      dialer: new SsStreamDialer(s.tls, ssKey, { connect }),
      packetDialer: new SsPacketDialer(s.tls, ssKey),
      close: async () => {},
    };
  });
});

describe('ss over plain WebSocket (behind a CDN), AEAD-2017', () => {
  dialerSuite('ss-ws-plain', async () => {
    const s = await server;
    const connect = wsConnector(s.plain, { path: SS_PATH, host: 'cdn.example' });
    return {
      dialer: new SsStreamDialer(s.plain, ss2017, { connect }),
      // SIP003: UDP skips the plugin and goes to the server's UDP port (the one port's).
      packetDialer: new SsPacketDialer(s.tls, ss2017),
      close: async () => {},
    };
  });
});

describe('trojan over WebSocket over TLS (v2ray network ws)', () => {
  dialerSuite('trojan-ws-tls', async () => {
    const s = await server;
    const d = new TrojanDialer(s.tls, {
      password: TROJAN_PASSWORD,
      ...tlsOptions,
      connect: wsConnector(s.tls, { path: TROJAN_PATH, host: 'localhost', tls: tlsOptions }),
    });
    return { dialer: d, packetDialer: d, close: async () => {} };
  });
});

describe('trojan over TLS on the same port still works', () => {
  dialerSuite('trojan-tls', async () => {
    const s = await server;
    const d = new TrojanDialer(s.tls, { password: TROJAN_PASSWORD, ...tlsOptions });
    return { dialer: d, packetDialer: d, close: async () => {} };
  });
});

describe('ss over WebSocket with Mux.Cool (v2ray-plugin default)', () => {
  let echo: Running;
  before(async () => {
    echo = await tcpEcho();
  });
  after(() => echo.close());

  test('20 connections at once, 1 MiB echoed each, then 20 more one after another on the same WebSockets', async () => {
    const s = await server;
    // Twenty TLS handshakes at once: on a loaded 2-core machine they can take longer than the
    // default connect timeout, which this test is not about.
    const dialer = new SsStreamDialer(s.tls, ssKey, {
      connect: wsConnector(s.tls, {
        path: SS_PATH,
        host: 'localhost',
        tls: tlsOptions,
        mux: true,
        timeoutMs: 120_000,
      }),
    });
    const before = upgraded.filter((k) => k === 'mux').length;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const d = await dialer.dial({ host: '127.0.0.1', port: echo.port });
        const data = randomBytes(1 << 20);
        const parts: Buffer[] = [];
        let n = 0;
        await new Promise<void>((resolve, reject) => {
          d.on('data', (c: Buffer) => {
            parts.push(Buffer.from(c));
            n += c.length;
            if (n === data.length) resolve();
          });
          d.on('error', reject);
          d.write(data);
        });
        assert.equal(
          createHash('sha256').update(Buffer.concat(parts)).digest('hex'),
          createHash('sha256').update(data).digest('hex'),
        );
        const closed = new Promise((r) => d.on('close', r));
        d.destroy();
        await closed;
      }),
    );
    assert.equal(upgraded.filter((k) => k === 'mux').length - before, 20);
    // Sessions share WebSockets as v2ray's client shares them: these ride the 20 already open.
    for (let i = 0; i < 20; i++) {
      const d = await dialer.dial({ host: '127.0.0.1', port: echo.port });
      const got = new Promise<Buffer>((r) => d.once('data', r));
      d.write(`again ${i}`);
      assert.equal((await got).toString(), `again ${i}`);
      const closed = new Promise((r) => d.on('close', r));
      d.destroy();
      await closed;
    }
    assert.equal(upgraded.filter((k) => k === 'mux').length - before, 20, 'no new WebSocket');
  });

  test('mux=4: eight connections at once share two WebSockets', async () => {
    const s = await server;
    const dialer = new SsStreamDialer(s.tls, ssKey, {
      connect: wsConnector(s.tls, { path: SS_PATH, host: 'localhost', tls: tlsOptions, mux: 4 }),
    });
    const before = upgraded.filter((k) => k === 'mux').length;
    const ds = [];
    for (let i = 0; i < 8; i++) ds.push(await dialer.dial({ host: '127.0.0.1', port: echo.port }));
    await Promise.all(
      ds.map(async (d, i) => {
        const got = new Promise<Buffer>((r) => d.once('data', r));
        d.write(`conn ${i}`);
        assert.equal((await got).toString(), `conn ${i}`);
        d.destroy();
      }),
    );
    assert.equal(upgraded.filter((k) => k === 'mux').length - before, 2);
  });

  test('a client that ends its side closes the session at the server too (no half-close in Mux.Cool)', async () => {
    const s = await server;
    const banner = await tcpEcho({ banner: Buffer.from('220 hello\r\n') });
    try {
      const dialer = new SsStreamDialer(s.tls, ssKey, {
        connect: wsConnector(s.tls, {
          path: SS_PATH,
          host: 'localhost',
          tls: tlsOptions,
          mux: true,
        }),
      });
      const d = await dialer.dial({ host: '127.0.0.1', port: banner.port });
      const first = await new Promise<Buffer>((r) => d.once('data', r));
      assert.equal(first.toString(), '220 hello\r\n');
      // End goes out; the server drops the session (its target sees the end) and answers End.
      const ended = new Promise<void>((r) => d.on('end', r));
      d.resume();
      d.end('bye');
      await ended;
      d.destroy();
    } finally {
      await banner.close();
    }
  });
});

function httpsRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tlsConnectRaw(
      { host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false },
      () => s.write(text),
    );
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
    setTimeout(() => s.destroy(), 3000);
  });
}

function plainRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
    setTimeout(() => s.destroy(), 3000);
  });
}

const upgradeHead = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

describe('everything else is the web site', () => {
  test('over TLS: the home page; the secret path without an upgrade and other paths: 404', async () => {
    const { tls } = await server;
    const close = 'Connection: close\r\n';
    assert.match(
      await httpsRequest(tls.port, `GET / HTTP/1.1\r\nHost: localhost\r\n${close}\r\n`),
      /^HTTP\/1\.1 200[\s\S]*Notes from the workshop/,
    );
    assert.match(
      await httpsRequest(tls.port, `GET ${SS_PATH} HTTP/1.1\r\nHost: localhost\r\n${close}\r\n`),
      /^HTTP\/1\.1 404/,
    );
    assert.match(await httpsRequest(tls.port, upgradeHead('/not-the-path')), /^HTTP\/1\.1 404/);
    assert.match(await httpsRequest(tls.port, 'BREW /pot HTCPCP/1.0\r\n\r\n'), /^HTTP\/1\.1 400/);
    // A head cut into pieces is put together before it is judged.
    assert.match(await httpsRequest(tls.port, upgradeHead(SS_PATH)), /^HTTP\/1\.1 101 /);
  });

  test('the plain listener: the same site, the same upgrade', async () => {
    const { plain } = await server;
    assert.match(
      await plainRequest(plain.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
      /^HTTP\/1\.1 200/,
    );
    assert.match(await plainRequest(plain.port, upgradeHead('/nope')), /^HTTP\/1\.1 404/);
    assert.match(await plainRequest(plain.port, upgradeHead(TROJAN_PATH)), /^HTTP\/1\.1 101 /);
  });

  test('a wrong path is reported by the client as such', async () => {
    const { tls } = await server;
    await assert.rejects(
      wsConnect(tls, { path: '/wrong', host: 'localhost', tls: tlsOptions }),
      /HTTP 404 instead of 101/,
    );
  });
});

describe('inside the WebSocket, failures get the Shadowsocks probe rule', () => {
  for (const [name, payload] of [
    ['random bytes', randomBytes(300)],
    [
      'a Trojan request with a wrong password',
      Buffer.concat([
        trojanPasswordHash('wrong'),
        Buffer.from('\r\n\x01\x01\x7f\x00\x00\x01\x00\x50\r\n'),
      ]),
    ],
  ] as const) {
    test(`${name}: no byte back, closed at the authentication timeout`, async () => {
      const { tls } = await server;
      const ws = await wsConnect(tls, { path: SS_PATH, host: 'localhost', tls: tlsOptions });
      const before = probes.length;
      ws.write(payload);
      // the server's authentication timeout is 1.5 s; 10 s only bounds a hung test
      const out = await streamOutcome(ws, 10_000);
      assert.equal(out.bytes.length, 0, 'no byte back');
      assert.notEqual(out.how, 'open', 'the server closed the connection');
      assert.ok(probes.length > before, 'counted as a probe');
    });
  }
});

test('classifyWsPayload: hex runs, Mux.Cool starts, salts', () => {
  const hash = trojanPasswordHash('x');
  assert.equal(classifyWsPayload(hash, true), 'trojan');
  assert.equal(classifyWsPayload(hash.subarray(0, 30), true), null);
  assert.equal(classifyWsPayload(hash, false), 'ss');
  assert.equal(classifyWsPayload(Buffer.from('abcz'), true), 'ss');
  assert.equal(classifyWsPayload(Buffer.from('000c00010101', 'hex'), true), null);
  assert.equal(classifyWsPayload(Buffer.from('000c0001010101', 'hex'), true), 'mux');
  assert.equal(classifyWsPayload(Buffer.from('ff', 'hex'), true), 'ss');
});
