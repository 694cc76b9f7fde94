/**
 * Interop (issue #4 item 7): Debian's `ss-local` with its v2ray-plugin (`ss-v2ray-plugin`, SIP003)
 * against `ladder server`, through the real CLI on loopback: plain WebSocket (to `--ws-listen`, as
 * behind a CDN) and WebSocket over TLS (the main port, certificate made by openssl), each with the
 * plugin's default Mux.Cool and with `mux=0`. curl downloads through ss-local's SOCKS5 and checks
 * the bytes; the server's debug output shows which payload the real client sent. Also Ladder's
 * client with a v2ray-plugin key, against the same server.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, hasCommand, startDaemon, startLadder, type Peer } from '../helpers/peers.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { curl } from '../helpers/curl.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { v2rayPlugin } from '../../src/codec/v2ray-plugin.js';

const plugin = ['ss-v2ray-plugin', 'v2ray-plugin'].find((c) => hasCommand(c));
const skip =
  !hasCommand('ss-local') || !plugin || !hasCommand('curl') || !hasCommand('openssl')
    ? 'needs ss-local, ss-v2ray-plugin (Debian shadowsocks-v2ray-plugin), curl and openssl'
    : false;
if (skip) console.log(`# interop-v2ray-plugin skipped: ${skip}`);

const PASSWORD = 'ladder-interop-password-1';
const PATH = '/v2ray-plugin-secret';
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
  const key = formatSsUri({
    method: 'aes-256-gcm',
    password: PASSWORD,
    host: '127.0.0.1',
    port: tlsPort,
    plugin: v2rayPlugin({ path: PATH, host: 'localhost', tls: true, mux: true }),
  });
  server = await startLadder(
    [
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${tlsPort}`,
      '--key',
      key,
      '--tls-cert',
      cert.certFile,
      '--tls-key',
      cert.keyFile,
      '--ws-listen',
      `127.0.0.1:${wsPort}`,
    ],
    /secret path/,
    { env: { ...process.env, NODE_DEBUG: 'ladder:ws,ladder:mux' } },
  );
  peers.push(server);
});
after(async () => {
  await Promise.all(peers.map((p) => p.stop()));
  await origin?.close();
  cert?.remove();
});

for (const tls of [false, true]) {
  for (const mux of [true, false]) {
    const name = `ss-local + v2ray-plugin, ${tls ? 'WebSocket over TLS' : 'plain WebSocket'}, ${mux ? 'default (Mux.Cool)' : 'mux=0'}`;
    test(`${name} -> ladder server`, { skip }, async () => {
      const local = await freePort();
      const opts = [
        `path=${PATH}`,
        'host=localhost',
        ...(tls ? ['tls', `cert=${cert.certFile}`] : []),
        ...(mux ? [] : ['mux=0']),
      ].join(';');
      const before = server.output().length;
      const ssLocal = await startDaemon(
        (file) => ['ss-local', '-c', file],
        {
          server: '127.0.0.1',
          server_port: tls ? tlsPort : wsPort,
          local_address: '127.0.0.1',
          local_port: local,
          password: PASSWORD,
          method: 'aes-256-gcm',
          timeout: 60,
          plugin,
          plugin_opts: opts,
        },
        local,
      );
      peers.push(ssLocal);
      await untilPluginListens(local);
      const size = 8 << 20;
      const r = await curl([
        '--socks5-hostname',
        `127.0.0.1:${local}`,
        `http://127.0.0.1:${origin.port}/bytes/${size}`,
      ]);
      assert.equal(r.code, 0, `${r.stderr}\n${ssLocal.output()}`);
      assert.equal(r.sha256, expectedHash(size));
      // Several at once, as a browser would open them.
      const many = await Promise.all(
        Array.from({ length: 8 }, () =>
          curl([
            '--socks5-hostname',
            `127.0.0.1:${local}`,
            `http://127.0.0.1:${origin.port}/hello`,
          ]),
        ),
      );
      for (const m of many) assert.equal(m.body.toString(), 'hello\n', m.stderr);
      const log = server.output().slice(before);
      assert.match(log, mux ? /websocket carrying mux/ : /websocket carrying ss/);
      assert.doesNotMatch(log, mux ? /websocket carrying ss/ : /websocket carrying mux/);
      // With Mux.Cool, Ladder's server padded each session's first frames (KeepAlive data that
      // v2ray-plugin's client discarded, else the bytes above would not match).
      const padded = log.match(/padded a frame/g)?.length ?? 0;
      if (mux) assert.ok(padded >= 9, `${padded} padded frames`);
      else assert.equal(padded, 0);
      await ssLocal.stop();
    });
  }
}

/**
 * ss-local listens at once and starts its plugin beside it (SIP003); until the plugin listens,
 * ss-local's connection to it is refused ("getpeername: Transport endpoint is not connected") and
 * curl gets an empty reply. One request through both, retried for at most 10 s, waits that out, so
 * the test judges Ladder's server rather than the peers' start-up.
 */
async function untilPluginListens(local: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await curl(
      ['--socks5-hostname', `127.0.0.1:${local}`, `http://127.0.0.1:${origin.port}/hello`],
      2,
    );
    if (r.code === 0 && r.body.toString() === 'hello\n') return;
    if (Date.now() > deadline)
      throw new Error(`nothing passed through ss-local and its plugin in 10 s: ${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

for (const mux of [true, false]) {
  test(
    `ladder client with a v2ray-plugin key (tls, ${mux ? 'Mux.Cool' : 'mux=0'}) -> ladder server`,
    { skip },
    async () => {
      const socks = await freePort();
      const key = formatSsUri({
        method: 'aes-256-gcm',
        password: PASSWORD,
        host: '127.0.0.1',
        port: tlsPort,
        plugin: v2rayPlugin({ path: PATH, host: 'localhost', tls: true, mux, pinSha256: cert.pin }),
      });
      const client = await startLadder(
        ['client', '--server', key, '--socks', `127.0.0.1:${socks}`, '--no-http'],
        /carrying traffic/,
      );
      peers.push(client);
      assert.match(
        client.output(),
        new RegExp(`aes-256-gcm over WebSocket over TLS${mux ? ' \\(Mux.Cool\\)' : ''}`),
      );
      const size = 4 << 20;
      const r = await curl([
        '--socks5-hostname',
        `127.0.0.1:${socks}`,
        `http://127.0.0.1:${origin.port}/bytes/${size}`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.sha256, expectedHash(size));
      await client.stop();
    },
  );
}

for (const mux of [true, false]) {
  test(
    `ladder client (plain WebSocket, ${mux ? 'Mux.Cool' : 'mux=0'}) -> ss-server + v2ray-plugin`,
    { skip },
    async () => {
      const port = await freePort();
      const opts = ['server', `path=${PATH}`, 'host=localhost', ...(mux ? [] : ['mux=0'])].join(
        ';',
      );
      const ssServer = await startDaemon(
        (file) => ['ss-server', '-c', file],
        {
          server: '127.0.0.1',
          server_port: port,
          password: PASSWORD,
          method: 'chacha20-ietf-poly1305',
          timeout: 60,
          mode: 'tcp_only',
          plugin,
          plugin_opts: opts,
        },
        port,
      );
      peers.push(ssServer);
      const socks = await freePort();
      const key = formatSsUri({
        method: 'chacha20-ietf-poly1305',
        password: PASSWORD,
        host: '127.0.0.1',
        port,
        plugin: v2rayPlugin({ path: PATH, host: 'localhost', tls: false, mux }),
      });
      const client = await startLadder(
        ['client', '--server', key, '--socks', `127.0.0.1:${socks}`, '--no-http'],
        /carrying traffic/,
        { env: { ...process.env, NODE_DEBUG: 'ladder:mux' } },
      );
      peers.push(client);
      const size = 4 << 20;
      for (let i = 0; i < 3; i++) {
        const r = await curl([
          '--socks5-hostname',
          `127.0.0.1:${socks}`,
          `http://127.0.0.1:${origin.port}/bytes/${size}`,
        ]);
        assert.equal(r.code, 0, `${r.stderr}\n${ssServer.output()}`);
        assert.equal(r.sha256, expectedHash(size));
      }
      // With Mux.Cool, Ladder's client padded its sessions' first frames; v2ray-plugin's server
      // discarded the KeepAlive data (else the bytes above would not match).
      const padded = client.output().match(/padded a frame/g)?.length ?? 0;
      if (mux) assert.ok(padded >= 3, `${padded} padded frames`);
      else assert.equal(padded, 0);
      await client.stop();
      await ssServer.stop();
    },
  );
}
