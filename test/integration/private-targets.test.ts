// A real `ladder server` listening on loopback (as behind a reverse proxy) refuses key holders'
// connections to loopback, in every spelling, over Shadowsocks and Trojan, unless it is started
// with --allow-private-targets, which it then warns about. A listener on 127.0.0.1 counts what
// reaches it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import type { StreamDialer } from '../../src/transport/types.js';

const METHOD = 'chacha20-ietf-poly1305';
const SS_PASSWORD = 'private-targets-ss';
const TROJAN_PASSWORD = 'private-targets-trojan';
const WARNING = /warning: --allow-private-targets: key holders can reach/;

/** What came back for an HTTP GET through `dialer` to host:port: the reply, or '' if closed. */
async function fetchVia(dialer: StreamDialer, host: string, port: number): Promise<string> {
  let s: Duplex;
  try {
    s = await dialer.dial({ host, port });
  } catch {
    return '';
  }
  s.on('error', () => {});
  s.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve) => {
    s.once('end', () => resolve());
    s.once('close', () => resolve());
  });
  s.destroy();
  return Buffer.concat(chunks).toString('latin1');
}

interface Running {
  peer: Peer;
  ss: StreamDialer;
  trojan: StreamDialer;
}

async function startServer(extra: string[]): Promise<Running> {
  const port = await freePort();
  const ssKey = formatSsUri({ method: METHOD, password: SS_PASSWORD, host: '127.0.0.1', port });
  const trojanKey = formatTrojanUri({ password: TROJAN_PASSWORD, host: '127.0.0.1', port });
  const peer = await startLadder([
    'server',
    ...extra,
    '--listen',
    `127.0.0.1:${port}`,
    '--key',
    ssKey,
    '--key',
    trojanKey,
    '--no-udp',
  ]);
  const pin = /\?pin=([0-9a-f]{64})/.exec(peer.output())?.[1];
  assert.ok(pin, `the server printed its pin:\n${peer.output()}`);
  const server = { host: '127.0.0.1', port };
  return {
    peer,
    ss: new SsStreamDialer(server, makeCipherKey(METHOD, SS_PASSWORD)),
    trojan: new TrojanDialer(server, {
      password: TROJAN_PASSWORD,
      sni: 'localhost',
      pinSha256: pin,
    }),
  };
}

describe('ladder server: private targets', { timeout: 60_000 }, () => {
  let origin: Server;
  let originPort: number;
  let accepted = 0;
  before(async () => {
    origin = createServer((s) => {
      accepted++;
      s.on('error', () => {});
      s.resume(); // read the request, and so see the peer's end
      s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    originPort = (origin.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => origin.close(() => r())));

  test('without the flag: loopback in every spelling is refused on every transport, no warning', async () => {
    const srv = await startServer(['--metrics', '127.0.0.1:0']);
    try {
      assert.doesNotMatch(srv.peer.output(), WARNING);
      const before = accepted;
      for (const host of [
        '127.0.0.1',
        'localhost',
        '2130706433',
        '0x7f.1',
        '127.1',
        '::ffff:127.0.0.1',
        '0.0.0.0',
        '[::1]',
      ]) {
        for (const [name, dialer] of [
          ['ss', srv.ss],
          ['trojan', srv.trojan],
        ] as const) {
          const reply = await fetchVia(dialer, host, originPort);
          assert.equal(reply, '', `${name} to ${host}: closed without a reply`);
        }
      }
      assert.equal(accepted, before, 'nothing reached the listener on 127.0.0.1');
      // The server stays up and keeps serving after the refusals.
      assert.equal(await fetchVia(srv.ss, '127.0.0.1', originPort), '');
      // Each refusal is counted, with no address in the metrics.
      const url = /metrics at (http:\/\/\S+)/.exec(srv.peer.output())?.[1];
      assert.ok(url, 'the server printed its metrics address');
      const text = await (await fetch(url)).text();
      assert.match(text, /^ladder_private_targets_refused_total\{transport="tcp"\} 17$/m);
      assert.match(text, /^ladder_private_targets_refused_total\{transport="udp"\} 0$/m);
      assert.doesNotMatch(text, /127\.0\.0\.|localhost|0x7f|::1/, 'no target in the metrics');
    } finally {
      await srv.peer.stop();
    }
  });

  test('with --allow-private-targets: the same targets are reached, and the server warns', async () => {
    const srv = await startServer(['--allow-private-targets']);
    try {
      assert.match(srv.peer.output(), WARNING);
      const before = accepted;
      for (const host of ['127.0.0.1', '2130706433', '::ffff:127.0.0.1']) {
        assert.match(
          await fetchVia(srv.ss, host, originPort),
          /^HTTP\/1\.1 200 OK/,
          `ss to ${host}`,
        );
        assert.match(
          await fetchVia(srv.trojan, host, originPort),
          /^HTTP\/1\.1 200 OK/,
          `trojan to ${host}`,
        );
      }
      assert.equal(accepted, before + 6);
    } finally {
      await srv.peer.stop();
    }
  });
});
