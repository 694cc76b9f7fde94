/**
 * `ladder server --max-connections-per-key`: while a key holds its cap of connections, its next one
 * is refused exactly as a wrong key is (Shadowsocks' rule: no byte back, closed at the
 * authentication timeout); once one closes, the key gets in again.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { SsTcpClientSession } from '../../src/codec/ss-tcp.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import { echoRoundTrip, until } from '../helpers/pre-auth-suite.js';

const peers: Peer[] = [];
let echo: Running | null = null;
after(async () => {
  await Promise.all(peers.map((p) => p.stop()));
  await echo?.close();
});

test('--max-connections-per-key: the key past its cap meets the wrong-key rule', async () => {
  echo = await tcpEcho();
  const method = 'aes-256-gcm';
  const password = randomBytes(12).toString('base64url');
  const port = await freePort();
  const server = await startLadder([
    'server',
    '--listen',
    `127.0.0.1:${port}`,
    '--key',
    formatSsUri({ method, password, host: '127.0.0.1', port }),
    '--max-connections-per-key',
    '2',
    '--auth-timeout',
    '1',
    '--no-udp',
    '--allow-private-targets',
  ]);
  peers.push(server);
  const key = makeCipherKey(method, password);
  const dialer = new SsStreamDialer({ host: '127.0.0.1', port }, key, { firstPayloadWaitMs: 0 });
  const target = { host: '127.0.0.1', port: echo.port };
  const held: Duplex[] = [];
  for (let i = 0; i < 2; i++) {
    const s = await dialer.dial(target);
    await echoRoundTrip(s);
    held.push(s);
  }
  // The third: a valid request, refused by the cap: not a byte back, closed by the server.
  const raw = connect(port, '127.0.0.1');
  let got = 0;
  let closed = false;
  raw.on('data', (d: Buffer) => (got += d.length));
  raw.on('error', () => {});
  raw.on('close', () => (closed = true));
  raw.write(
    new SsTcpClientSession(key, randomBytes).encodeRequest(target, Buffer.from('hi'), Date.now()),
  );
  await until(() => closed, 'the refused connection to be closed at the authentication timeout');
  assert.equal(got, 0, 'refused in silence, as a wrong key');
  // The two held connections still work; after one closes, the key gets in again.
  await echoRoundTrip(held[0]!);
  held[1]!.destroy();
  await until(() => held[1]!.destroyed, 'the second connection gone');
  let fourth: Duplex | null = null;
  // The server sees the close a moment later: retry until the key's place is free (bounded).
  for (let i = 0; i < 20 && !fourth; i++) {
    const s = await dialer.dial(target);
    try {
      await echoRoundTrip(s);
      fourth = s;
    } catch {
      s.destroy();
    }
  }
  assert.ok(fourth, 'a place freed by a close is taken again');
  fourth.destroy();
  held[0]!.destroy();
});
