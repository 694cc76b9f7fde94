/**
 * What Ladder's TLS client says in its ClientHello (docs/tls-fingerprint.md): captured on loopback
 * from the real dialers, parsed, and held to every property the document claims — Chrome's cipher
 * suites in Chrome's order, Chrome's signature algorithms, Chrome's classical groups, ALPN h2 and
 * http/1.1 (http/1.1 alone for WebSockets), the key's SNI, status_request on and encrypt_then_mac
 * off — and to the differences it admits (no GREASE, no post-quantum share, OpenSSL's order).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { tlsConnect } from '../../src/transport/tls.js';
import { wsConnect } from '../../src/transport/ws-dialer.js';
import { EXT, ja4, parseClientHello, type ClientHello } from '../helpers/client-hello.js';

/** Chrome's cipher suites in Chrome's order (GREASE left out), IANA code points. */
const CHROME_CIPHERS = [
  0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
  0x009d, 0x002f, 0x0035,
];
/** Chrome's signature_algorithms, in order. */
const CHROME_SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];

/** Opens a TLS client against a loopback listener that records the first record and hangs up. */
async function capture(open: (port: number) => Promise<unknown>): Promise<ClientHello> {
  let got!: (b: Buffer) => void;
  const first = new Promise<Buffer>((r) => (got = r));
  const server = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        got(buf);
        s.destroy();
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const done = open(port).catch(() => {});
  const rec = await first;
  await done;
  server.close();
  return parseClientHello(rec);
}

test('Trojan/TLS ClientHello: Chrome ciphers, sigalgs and groups; h2 + http/1.1; SNI; OpenSSL order', async () => {
  const ch = await capture((port) =>
    tlsConnect({ host: '127.0.0.1', port }, { sni: 'www.example.com', timeoutMs: 2000 }),
  );
  // Chrome's 15 suites, in Chrome's order; OpenSSL appends the renegotiation SCSV.
  assert.deepEqual(ch.ciphers, [...CHROME_CIPHERS, 0x00ff]);
  assert.deepEqual(ch.sigAlgs, CHROME_SIGALGS);
  assert.deepEqual(ch.groups, [0x001d, 0x0017, 0x0018], 'x25519, secp256r1, secp384r1');
  assert.deepEqual(ch.keyShareGroups, [0x001d], 'one x25519 share');
  assert.deepEqual(ch.versions, [0x0304, 0x0303], 'TLS 1.3 and 1.2');
  assert.deepEqual(ch.alpn, ['h2', 'http/1.1']);
  assert.equal(ch.sni, 'www.example.com');
  assert.equal(ch.recordVersion, 0x0301);
  assert.equal(ch.legacyVersion, 0x0303);
  assert.equal(
    ch.sessionIdLength,
    32,
    'a legacy session id, as Chrome sends (middlebox compatibility)',
  );
  assert.deepEqual(ch.pointFormats, [0, 1, 2], 'OpenSSL offers three point formats; Chrome one');
  // Exactly these extensions, in OpenSSL's fixed order (Chrome shuffles its own on every connection).
  assert.deepEqual(ch.extensions, [
    EXT.SERVER_NAME,
    EXT.EC_POINT_FORMATS,
    EXT.SUPPORTED_GROUPS,
    EXT.SESSION_TICKET,
    EXT.STATUS_REQUEST,
    EXT.ALPN,
    EXT.EXTENDED_MASTER_SECRET,
    EXT.SIGNATURE_ALGORITHMS,
    EXT.SUPPORTED_VERSIONS,
    EXT.PSK_KEY_EXCHANGE_MODES,
    EXT.KEY_SHARE,
  ]);
  for (const absent of [
    EXT.ENCRYPT_THEN_MAC,
    EXT.ALPS,
    EXT.COMPRESS_CERTIFICATE,
    EXT.ECH,
    EXT.SCT,
    EXT.RENEGOTIATION_INFO,
  ])
    assert.ok(
      !(ch.extensions as number[]).includes(absent),
      `no extension 0x${absent.toString(16)}`,
    );
  assert.ok(!ch.ciphers.some((c) => (c & 0x0f0f) === 0x0a0a), 'no GREASE (Node cannot send it)');
  assert.ok(ch.length < 400, `a small hello without a post-quantum share: ${ch.length} bytes`);
  // JA4: the cipher part differs from Chrome's 8daaf6152771 only by the SCSV (see the document).
  assert.equal(ja4(ch), 't13d1611h2_1711a4c0508c_6d021c4c45cd');
});

test("the cipher part of JA4 without the SCSV is Chrome's (8daaf6152771)", () => {
  const chrome: ClientHello = {
    recordVersion: 0x0301,
    legacyVersion: 0x0303,
    sessionIdLength: 32,
    ciphers: [0x2a2a, ...CHROME_CIPHERS],
    extensions: [],
    versions: [0x0304],
    alpn: ['h2'],
    sni: 'x',
    length: 0,
  };
  assert.equal(ja4(chrome).split('_')[1], '8daaf6152771');
});

test('WebSocket over TLS offers http/1.1 alone (as a browser opening a WebSocket)', async () => {
  const ch = await capture((port) =>
    wsConnect(
      { host: '127.0.0.1', port },
      { path: '/p', host: 'cdn.example', tls: { sni: 'cdn.example' }, timeoutMs: 2000 },
    ),
  );
  assert.deepEqual(ch.alpn, ['http/1.1']);
  assert.equal(ch.sni, 'cdn.example');
  assert.deepEqual(ch.ciphers, [...CHROME_CIPHERS, 0x00ff]);
});

test('an IP address as the server name: no SNI extension (RFC 6066 §3), as browsers do', async () => {
  const ch = await capture((port) =>
    tlsConnect({ host: '127.0.0.1', port }, { sni: '127.0.0.1', timeoutMs: 2000 }),
  );
  assert.equal(ch.sni, undefined);
  assert.ok(!ch.extensions.includes(EXT.SERVER_NAME));
});
