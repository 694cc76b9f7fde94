/**
 * The WebSocket transports through the real CLI: `ladder server` with a v2ray-plugin ss:// key and a
 * trojan:// type=ws key on the one TLS port (certificate made at start, pinned by the clients),
 * `ladder client` with each, a plain `--ws-listen` port for a CDN, and the usage errors.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { LADDER_CLI, freePort, hasCommand, startLadder, type Peer } from '../helpers/peers.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { curl } from '../helpers/curl.js';
import { closedPort } from '../helpers/echo.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import { v2rayPlugin } from '../../src/codec/v2ray-plugin.js';

const skip = hasCommand('curl') ? false : 'needs curl';
const run = promisify(execFile);
const peers: Peer[] = [];
let origin: Origin | null = null;
after(async () => {
  await Promise.all(peers.map((p) => p.stop()));
  await origin?.close();
});

test(
  'ss over WebSocket and trojan over WebSocket on one port, plain WebSocket on another',
  { skip },
  async () => {
    origin = await startOrigin();
    const port = await freePort();
    const wsPort = await freePort();
    const ssPassword = randomBytes(32).toString('base64');
    const ssKey = (host: string, p: number, pin?: string, tls = true): string =>
      formatSsUri({
        method: '2022-blake3-aes-256-gcm',
        password: ssPassword,
        host,
        port: p,
        plugin: v2rayPlugin({
          path: '/ss-secret',
          host: 'localhost',
          tls,
          mux: false,
          ...(pin ? { pinSha256: pin } : {}),
        }),
      });
    const trojanPassword = randomBytes(12).toString('base64url');
    const trojanKey = (p: number, pin?: string, tls = true): string =>
      formatTrojanUri({
        password: trojanPassword,
        host: '127.0.0.1',
        port: p,
        sni: 'localhost',
        type: 'ws',
        path: '/trojan-secret',
        ...(tls ? {} : { security: 'none' as const }),
        ...(pin ? { pinSha256: pin } : {}),
      });
    const server = await startLadder(
      [
        'server',
        '--allow-private-targets',
        '--listen',
        `127.0.0.1:${port}`,
        '--key',
        ssKey('127.0.0.1', port),
        '--key',
        trojanKey(port),
        '--ws-listen',
        `127.0.0.1:${wsPort}`,
      ],
      /secret path/,
    );
    peers.push(server);
    const pin = /pin=([0-9a-f]{64})/.exec(server.output())![1]!;
    assert.match(server.output(), /2 keys: 2022-blake3-aes-256-gcm x1, trojan over TLS x1/);
    assert.match(
      server.output(),
      new RegExp(
        `plain WebSocket \\(for a CDN or reverse proxy\\) listening on 127\\.0\\.0\\.1:${wsPort}`,
      ),
    );
    assert.match(server.output(), /WebSocket on 2 secret path\(s\)/);

    const url = `http://127.0.0.1:${origin.port}/bytes/${2 << 20}`;
    for (const [key, what] of [
      [ssKey('127.0.0.1', port, pin), /2022-blake3-aes-256-gcm over WebSocket over TLS/],
      [trojanKey(port, pin), /trojan over WebSocket over TLS \(pinned certificate\)/],
      [ssKey('127.0.0.1', wsPort, undefined, false), /2022-blake3-aes-256-gcm over WebSocket$/m],
      [trojanKey(wsPort, undefined, false), /trojan over WebSocket$/m],
    ] as const) {
      const socks = await freePort();
      const client = await startLadder(
        ['client', '--server', key, '--socks', `127.0.0.1:${socks}`, '--no-http'],
        /carrying traffic/,
      );
      peers.push(client);
      assert.match(client.output(), what);
      const r = await curl(['--socks5-hostname', `127.0.0.1:${socks}`, url]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.sha256, expectedHash(2 << 20), key.slice(0, 12));
      await client.stop();
    }
    // `ladder probe` checks the same four keys as the client uses them: inside the WebSocket.
    const closed = await closedPort();
    const keys = [
      ssKey('127.0.0.1', port, pin),
      trojanKey(port, pin),
      ssKey('127.0.0.1', wsPort, undefined, false),
      trojanKey(wsPort, undefined, false),
    ];
    // Not spawnSync: the origin answering the probe runs in this process.
    const probe = await run(
      process.execPath,
      [
        LADDER_CLI,
        'probe',
        ...keys.flatMap((k) => ['--key', k]),
        '--only',
        'transports',
        '--attempts',
        '1',
        '--backoff',
        '0',
        '--timeout',
        '10',
        '--check-url',
        `http://127.0.0.1:${origin.port}/hello`,
        '--resolver',
        `127.0.0.1:${closed}`,
        '--control-resolver',
        `127.0.0.1:${closed}`,
        '--json',
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const checks = probe.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { test_keys: { status: string; transport: string } });
    assert.deepEqual(
      checks.map((c) => [c.test_keys.transport, c.test_keys.status]),
      [
        ['shadowsocks 2022-blake3-aes-256-gcm (WebSocket, TLS, SNI localhost)', 'ok'],
        ['trojan (WebSocket, TLS, SNI localhost)', 'ok'],
        ['shadowsocks 2022-blake3-aes-256-gcm (WebSocket)', 'ok'],
        ['trojan (WebSocket)', 'ok'],
      ],
      probe.stderr,
    );

    // The plain port is a web site to everyone else.
    const page = await curl([`http://127.0.0.1:${wsPort}/`]);
    assert.match(page.body.toString(), /Notes from the workshop/);
  },
);

test('--ws-listen without WebSocket keys is a usage error naming the fix', () => {
  const r = spawnSync(
    process.execPath,
    [
      LADDER_CLI,
      'server',
      '--listen',
      '127.0.0.1:0',
      '--key',
      formatTrojanUri({ password: 'x', host: 'h.example', port: 443 }),
      '--ws-listen',
      '127.0.0.1:0',
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--ws-listen needs WebSocket keys.*ladder keys new --transport ws/);
});

test('a key with a plugin Ladder does not have is refused by the client, naming it', () => {
  const key = formatSsUri({
    method: 'aes-256-gcm',
    password: 'x',
    host: '127.0.0.1',
    port: 8388,
    plugin: { name: 'obfs-local', options: { obfs: 'http' } },
  });
  const r = spawnSync(
    process.execPath,
    [LADDER_CLI, 'client', '--server', key, '--socks', '127.0.0.1:0'],
    {
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /plugin 'obfs-local' is not built in/);
});
