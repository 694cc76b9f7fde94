/**
 * Interop (issue #4 item 7) with v2ray 4.34 (Debian `v2ray`), on loopback.
 *
 * As a client against `ladder server`: its trojan outbound over TLS (to the main port), over
 * WebSocket over TLS (the main port, a secret path) and over plain WebSocket (to `--ws-listen`, as
 * behind a CDN), each also with its `mux` on (Trojan to v1.mux.cool, then Mux.Cool sessions).
 * As a server for `ladder client`: its trojan inbound over TLS and over WebSocket over TLS, with
 * and without Mux.Cool (`mux=8` in the key). curl fetches through the SOCKS5 port and checks the
 * bytes.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, hasCommand, startDaemon, startLadder, type Peer } from '../helpers/peers.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { curl } from '../helpers/curl.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';
import { v2rayClientConfig, v2rayServerConfig, type V2rayStream } from '../helpers/peer-configs.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';

const skip =
  !hasCommand('v2ray') || !hasCommand('curl') || !hasCommand('openssl')
    ? 'needs v2ray (Debian v2ray 4.34), curl and openssl'
    : false;
if (skip) console.log(`# interop-v2ray skipped: ${skip}`);

const PASSWORD = 'ladder-interop-v2ray-1';
const WS_PATH = '/v2ray-trojan-ws';
const peers: Peer[] = [];
let origin: Origin;
let cert: TestCert;
let server: Peer;
let tlsPort: number;
let wsPort: number;

before(async () => {
  if (skip) return;
  origin = await startOrigin();
  cert = makeCert();
  tlsPort = await freePort();
  wsPort = await freePort();
  server = await startLadder(
    [
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${tlsPort}`,
      // One password, two keys: Trojan over TLS, and Trojan over WebSocket on a secret path.
      '--key',
      formatTrojanUri({ password: PASSWORD, host: '127.0.0.1', port: tlsPort, tag: 'tls' }),
      '--key',
      formatTrojanUri({
        password: PASSWORD,
        host: '127.0.0.1',
        port: tlsPort,
        type: 'ws',
        path: WS_PATH,
        tag: 'ws',
      }),
      '--tls-cert',
      cert.certFile,
      '--tls-key',
      cert.keyFile,
      '--ws-listen',
      `127.0.0.1:${wsPort}`,
    ],
    /secret path/,
    { env: { ...process.env, NODE_DEBUG: 'ladder:ws,ladder:trojan,ladder:mux' } },
  );
  peers.push(server);
});
after(async () => {
  await Promise.all(peers.map((p) => p.stop()));
  await origin?.close();
  cert?.remove();
});

const cases: [string, V2rayStream, () => number, number?][] = [
  ['trojan over TLS', { network: 'tcp', tls: true }, () => tlsPort],
  ['trojan over WebSocket over TLS', { network: 'ws', tls: true, path: WS_PATH }, () => tlsPort],
  ['trojan over plain WebSocket (CDN)', { network: 'ws', tls: false, path: WS_PATH }, () => wsPort],
  ['trojan over TLS with mux', { network: 'tcp', tls: true }, () => tlsPort, 8],
  [
    'trojan over WebSocket over TLS with mux',
    { network: 'ws', tls: true, path: WS_PATH },
    () => tlsPort,
    8,
  ],
];

for (const [name, stream, port, mux] of cases) {
  test(`v2ray 4.34 ${name} -> ladder server`, { skip }, async () => {
    const socks = await freePort();
    const before = server.output().length;
    const client = await startDaemon(
      (file) => ['v2ray', '-config', file],
      v2rayClientConfig({
        protocol: 'trojan',
        socksPort: socks,
        serverPort: port(),
        secret: PASSWORD,
        certFile: cert.certFile,
        stream,
        ...(mux ? { mux } : {}),
      }),
      socks,
    );
    peers.push(client);
    const size = 8 << 20;
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${socks}`,
      `http://127.0.0.1:${origin.port}/bytes/${size}`,
    ]);
    assert.equal(r.code, 0, `${r.stderr}\n${client.output()}`);
    assert.equal(r.sha256, expectedHash(size));
    const many = await Promise.all(
      Array.from({ length: 8 }, () =>
        curl(['--socks5-hostname', `127.0.0.1:${socks}`, `http://127.0.0.1:${origin.port}/hello`]),
      ),
    );
    for (const m of many) assert.equal(m.body.toString(), 'hello\n', m.stderr);
    const log = server.output().slice(before);
    if (stream.network === 'ws') assert.match(log, /websocket carrying trojan/);
    else assert.doesNotMatch(log, /websocket carrying/);
    // With mux, the nine requests rode Mux.Cool sessions on fewer Trojan connections.
    const muxConnections = log.match(/mux connection/g)?.length ?? 0;
    if (mux) assert.ok(muxConnections >= 1 && muxConnections < 9, `${muxConnections}\n${log}`);
    else assert.equal(muxConnections, 0);
    // Ladder's server padded its first frames of each session with KeepAlive data, which v2ray's
    // client discarded (else the bytes above would not match): 9 sessions, up to 4 frames each.
    const padded = log.match(/padded a frame/g)?.length ?? 0;
    if (mux) assert.ok(padded >= 9, `${padded} padded frames\n${log}`);
    else assert.equal(padded, 0);
    await client.stop();
  });
}

const serverCases: [string, V2rayStream, number?][] = [
  ['trojan over TLS', { network: 'tcp', tls: true }],
  ['trojan over TLS with mux', { network: 'tcp', tls: true }, 8],
  ['trojan over WebSocket over TLS', { network: 'ws', tls: true, path: WS_PATH }],
  ['trojan over WebSocket over TLS with mux', { network: 'ws', tls: true, path: WS_PATH }, 8],
];

for (const [name, stream, mux] of serverCases) {
  test(`ladder client ${name} -> v2ray 4.34 server`, { skip }, async () => {
    const port = await freePort();
    const v2 = await startDaemon(
      (file) => ['v2ray', '-config', file],
      v2rayServerConfig({
        protocol: 'trojan',
        port,
        secret: PASSWORD,
        certFile: cert.certFile,
        keyFile: cert.keyFile,
        stream,
        logLevel: 'info',
      }),
      port,
    );
    peers.push(v2);
    const socks = await freePort();
    const key = formatTrojanUri({
      password: PASSWORD,
      host: '127.0.0.1',
      port,
      sni: 'localhost',
      pinSha256: cert.pin,
      ...(stream.network === 'ws'
        ? { type: 'ws' as const, path: WS_PATH, wsHost: 'localhost' }
        : {}),
      ...(mux ? { mux } : {}),
    });
    const client = await startLadder(
      ['client', '--server', key, '--socks', `127.0.0.1:${socks}`, '--no-http'],
      /carrying traffic/,
      { env: { ...process.env, NODE_DEBUG: 'ladder:mux' } },
    );
    peers.push(client);
    const size = 8 << 20;
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${socks}`,
      `http://127.0.0.1:${origin.port}/bytes/${size}`,
    ]);
    assert.equal(r.code, 0, `${r.stderr}\n${client.output()}\n${v2.output()}`);
    assert.equal(r.sha256, expectedHash(size));
    const many = await Promise.all(
      Array.from({ length: 8 }, () =>
        curl(['--socks5-hostname', `127.0.0.1:${socks}`, `http://127.0.0.1:${origin.port}/hello`]),
      ),
    );
    for (const m of many) assert.equal(m.body.toString(), 'hello\n', m.stderr);
    // v2ray's own log says where each Trojan request went: v1.mux.cool for Mux.Cool.
    const v2log = v2.output();
    const opened = client.output().match(/new Mux\.Cool connection/g)?.length ?? 0;
    // Ladder's client padded its sessions' first frames with KeepAlive data, which v2ray's server
    // discarded (else the bytes above would not match): 9 sessions, at least one frame each.
    const padded = client.output().match(/padded a frame/g)?.length ?? 0;
    if (mux) {
      assert.match(v2log, /v1\.mux\.cool/, v2log);
      assert.ok(opened >= 1 && opened < 9, `${opened} connections for 9 requests`);
      assert.ok(padded >= 9, `${padded} padded frames`);
    } else {
      assert.doesNotMatch(v2log, /v1\.mux\.cool/);
      assert.equal(opened, 0);
    }
    await client.stop();
    await v2.stop();
  });
}
