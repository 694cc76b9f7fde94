/**
 * Interop (issue #4 item 7) with trojan-gfw 1.16 (Debian `trojan`), on loopback, certificate made
 * by openssl: trojan-gfw's client (its SOCKS5) against `ladder server`, and `ladder client` against
 * trojan-gfw's server. curl fetches through both and checks the bytes; a visitor without the
 * password reaches the fallback web server in both directions of the pairing. Then fp=chrome against
 * a trojan-gfw server held to TLS 1.2.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, hasCommand, startDaemon, startLadder, type Peer } from '../helpers/peers.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { curl } from '../helpers/curl.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';
import { trojanClientConfig, trojanServerConfig } from '../helpers/peer-configs.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import {
  TROJAN_CMD,
  encodeTrojanRequest,
  trojanPasswordHash,
  trojanRequestLength,
} from '../../src/codec/trojan.js';
import { chromeTlsConnect } from '../../src/transport/chrome-tls.js';

const skip =
  !hasCommand('trojan') || !hasCommand('curl') || !hasCommand('openssl')
    ? 'needs trojan (Debian trojan, trojan-gfw), curl and openssl'
    : false;
if (skip) console.log(`# interop-trojan skipped: ${skip}`);

const PASSWORD = 'ladder-interop-trojan-1';
const peers: Peer[] = [];
let origin: Origin;
let cert: TestCert;

before(() => {
  if (skip) return;
  cert = makeCert();
});
after(async () => {
  await Promise.all(peers.map((p) => p.stop()));
  await origin?.close();
  cert?.remove();
});

test('trojan-gfw client -> ladder server', { skip }, async () => {
  origin = await startOrigin();
  const port = await freePort();
  const server = await startLadder([
    'server',
    '--allow-private-targets',
    '--listen',
    `127.0.0.1:${port}`,
    '--key',
    formatTrojanUri({ password: PASSWORD, host: '127.0.0.1', port }),
    '--tls-cert',
    cert.certFile,
    '--tls-key',
    cert.keyFile,
  ]);
  peers.push(server);
  const socks = await freePort();
  const client = await startDaemon(
    (file) => ['trojan', '-c', file],
    trojanClientConfig({
      socksPort: socks,
      serverPort: port,
      password: PASSWORD,
      certFile: cert.certFile,
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
  // A wrong password from trojan-gfw lands on the decoy site, which answers as a web server.
  const wrongSocks = await freePort();
  const wrong = await startDaemon(
    (file) => ['trojan', '-c', file],
    trojanClientConfig({
      socksPort: wrongSocks,
      serverPort: port,
      password: 'not-the-password',
      certFile: cert.certFile,
    }),
    wrongSocks,
  );
  peers.push(wrong);
  const w = await curl(
    ['--socks5-hostname', `127.0.0.1:${wrongSocks}`, `http://127.0.0.1:${origin.port}/hello`],
    10,
  );
  assert.notEqual(w.body.toString(), 'hello\n', 'no tunnel without the password');
  await Promise.all([wrong.stop(), client.stop(), server.stop()]);
});

for (const split of [false, true])
  test(`ladder client${split ? ' with split=1' : ''} -> trojan-gfw server`, { skip }, async () => {
    origin ??= await startOrigin();
    const port = await freePort();
    const server = await startDaemon(
      (file) => ['trojan', '-c', file],
      trojanServerConfig({
        port,
        fallbackPort: origin.port,
        password: PASSWORD,
        certFile: cert.certFile,
        keyFile: cert.keyFile,
      }),
      port,
    );
    peers.push(server);
    const socks = await freePort();
    const client = await startLadder(
      [
        'client',
        '--server',
        formatTrojanUri({
          password: PASSWORD,
          host: '127.0.0.1',
          port,
          sni: 'localhost',
          pinSha256: cert.pin,
          ...(split ? { split: true as const } : {}),
        }),
        '--socks',
        `127.0.0.1:${socks}`,
        '--no-http',
      ],
      /carrying traffic/,
      { env: { ...process.env, NODE_DEBUG: 'ladder:trojan' } },
    );
    peers.push(client);
    const size = 8 << 20;
    const r = await curl([
      '--socks5-hostname',
      `127.0.0.1:${socks}`,
      `http://127.0.0.1:${origin.port}/bytes/${size}`,
    ]);
    assert.equal(r.code, 0, `${r.stderr}\n${server.output()}`);
    assert.equal(r.sha256, expectedHash(size));
    const many = await Promise.all(
      Array.from({ length: 8 }, () =>
        curl(['--socks5-hostname', `127.0.0.1:${socks}`, `http://127.0.0.1:${origin.port}/hello`]),
      ),
    );
    for (const m of many) assert.equal(m.body.toString(), 'hello\n', m.stderr);
    // With split, each of the nine connections sent its first payload split around trojan-gfw's
    // session tickets, or whole when a ticket came before it (curl writes after the SOCKS reply).
    // (Or, when curl's request came later than the first-payload wait, as a busy machine makes it
    // with nine handshakes at once, none: the request left alone.)
    const firsts = client.output().match(/first payload (split at|whole|none)/g) ?? [];
    if (split) assert.equal(firsts.length, 9, client.output());
    else assert.equal(firsts.length, 0);
    console.log(
      `# split=${split}: ${firsts.filter((f) => f.endsWith('split at')).length} of ${firsts.length} first payloads split`,
    );
    // trojan-gfw's own fallback: an HTTPS visitor without the password reaches its remote (the origin).
    const page = await curl([
      '-k',
      '--resolve',
      `localhost:${port}:127.0.0.1`,
      `https://localhost:${port}/hello`,
    ]);
    assert.equal(page.body.toString(), 'hello\n', page.stderr);
    await Promise.all([client.stop(), server.stop()]);
  });

// trojan-gfw has no protocol-version setting; OpenSSL's system_default section (through
// OPENSSL_CONF, read by libssl at start) limits it to TLS 1.2, so fp=chrome's TLS 1.2 path meets it.
test('ladder client (fp=chrome) -> trojan-gfw server limited to TLS 1.2', { skip }, async () => {
  origin ??= await startOrigin();
  const port = await freePort();
  const sslConf = [
    'openssl_conf = default_conf',
    '[default_conf]',
    'ssl_conf = ssl_sect',
    '[ssl_sect]',
    'system_default = system_default_sect',
    '[system_default_sect]',
    'MaxProtocol = TLSv1.2',
    '',
  ].join('\n');
  const confFile = join(cert.dir, 'openssl-tls12.cnf');
  writeFileSync(confFile, sslConf);
  const limited = await startDaemon(
    (file) => ['trojan', '-c', file],
    trojanServerConfig({
      port,
      fallbackPort: origin.port,
      password: PASSWORD,
      certFile: cert.certFile,
      keyFile: cert.keyFile,
    }),
    port,
    { env: { ...process.env, OPENSSL_CONF: confFile } },
  );
  peers.push(limited);
  const tls = await chromeTlsConnect(
    { host: '127.0.0.1', port },
    { sni: 'localhost', pinSha256: cert.pin, alpn: ['http/1.1'], timeoutMs: 5000 },
  );
  assert.equal(tls.getProtocol(), 'TLSv1.2');
  const target = { host: '127.0.0.1', port: origin.port };
  const req = Buffer.alloc(trojanRequestLength(target));
  encodeTrojanRequest(
    { hash: trojanPasswordHash(PASSWORD), command: TROJAN_CMD.CONNECT, target },
    req,
    0,
  );
  const body: Buffer[] = [];
  const ended = new Promise<void>((r) => tls.on('end', r));
  tls.on('data', (d: Buffer) => body.push(d));
  tls.write(
    Buffer.concat([
      req,
      Buffer.from('GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    ]),
  );
  await ended;
  tls.destroy();
  assert.match(Buffer.concat(body).toString(), /^HTTP\/1\.1 200[\s\S]*hello\n$/);
  await limited.stop();
});
