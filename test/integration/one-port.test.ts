/**
 * One port for everything (issue #4 groundwork), through the real CLI: `ladder server` with an ss://
 * key and a trojan:// key on the same port; `ladder client` with each; a browser-like HTTPS visitor
 * without a key sees the decoy site; raw Shadowsocks probes still get the uniform silence.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { freePort, hasCommand, startLadder, type Peer } from '../helpers/peers.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { curl } from '../helpers/curl.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';

const skip = hasCommand('curl') ? false : 'needs curl';
const peers: Peer[] = [];
let origin: Origin | null = null;
after(async () => {
  await Promise.all(peers.map((p) => p.stop()));
  await origin?.close();
});

test('ss:// and trojan:// on one port, and a decoy for everyone else', { skip }, async () => {
  origin = await startOrigin();
  const port = await freePort();
  const ss = formatSsUri({
    method: '2022-blake3-aes-128-gcm',
    password: randomBytes(16).toString('base64'),
    host: '127.0.0.1',
    port,
    tag: 'ss-user',
  });
  const trojanPassword = randomBytes(12).toString('base64url');
  const server = await startLadder(
    [
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      ss,
      '--key',
      formatTrojanUri({ password: trojanPassword, host: '127.0.0.1', port, tag: 'trojan-user' }),
    ],
    /pin=([0-9a-f]{64})/,
  );
  peers.push(server);
  const pin = server.match[1]!;
  assert.match(
    server.output(),
    /listening on 127\.0\.0\.1:\d+ \(tcp\+udp\), 2 keys: 2022-blake3-aes-128-gcm x1, trojan over TLS x1/,
  );

  const url = `http://127.0.0.1:${origin.port}/bytes/${4 << 20}`;
  for (const key of [
    ss,
    formatTrojanUri({
      password: trojanPassword,
      host: '127.0.0.1',
      port,
      sni: 'localhost',
      pinSha256: pin,
    }),
  ]) {
    const socks = await freePort();
    const client = await startLadder(
      ['client', '--server', key, '--socks', `127.0.0.1:${socks}`, '--no-http'],
      /SOCKS5 listening/,
    );
    peers.push(client);
    const r = await curl(['--socks5-hostname', `127.0.0.1:${socks}`, url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.sha256, expectedHash(4 << 20), `download through ${key.slice(0, 9)}`);
  }

  const page = await curl([
    '-k',
    '--resolve',
    `localhost:${port}:127.0.0.1`,
    `https://localhost:${port}/`,
  ]);
  assert.equal(page.code, 0, page.stderr);
  assert.match(page.body.toString(), /Notes from the workshop/);

  // A TLS client with a wrong password reaches the decoy too.
  const reply = await new Promise<string>((resolve) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false },
      () => s.write('0'.repeat(56) + '\r\n\x01\x01\x7f\x00\x00\x01\x00\x50\r\n'),
    );
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
    // The 400 closes the connection; this bound only keeps a bug from hanging the test.
    const bound = setTimeout(() => s.destroy(), 30_000);
    s.once('close', () => clearTimeout(bound));
  });
  assert.match(reply, /^HTTP\/1\.1 400/);
});
