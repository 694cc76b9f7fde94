/**
 * Interoperability with Debian's shadowsocks-libev, both ways, for every AEAD-2017 method:
 *   ss-local  → ladder server : curl through ss-local's SOCKS5; UDP echo through its UDP relay
 *   ladder client → ss-server : curl through Ladder's SOCKS5 and HTTP proxies; UDP echo via SOCKS5 UDP ASSOCIATE
 * and a control leg ss-local → ss-server that proves the harness itself. Real peers, real curl.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { freePort, hasCommand, startLadder, startLibev, type Peer } from '../helpers/peers.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { udpEcho, type Running } from '../helpers/echo.js';
import { socksUdpRoundTrip } from '../helpers/socks5-client.js';

const METHODS = ['aes-128-gcm', 'aes-256-gcm', 'chacha20-ietf-poly1305'] as const;
const SIZE = 3 * 1024 * 1024 + 17;
const missing = ['ss-server', 'ss-local', 'curl'].filter((c) => !hasCommand(c));
const skip =
  missing.length > 0
    ? `needs ${missing.join(', ')} (apt-get install shadowsocks-libev curl; .ci/run does)`
    : false;
if (skip) console.log(`# interop-libev skipped: ${skip}`);

/** Runs curl (asynchronously: the origin server lives in this process) and hashes what it downloaded. */
function curlHash(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('curl', ['-sS', '--max-time', '30', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const h = createHash('sha256');
    let err = '';
    c.stdout.on('data', (d: Buffer) => h.update(d));
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('error', reject);
    c.on('close', (code) =>
      code === 0 ? resolve(h.digest('hex')) : reject(new Error(`curl exited ${code}: ${err}`)),
    );
  });
}

let origin: Origin;
let echo: Running;
before(async () => {
  if (skip) return;
  origin = await startOrigin();
  echo = await udpEcho();
});
after(async () => {
  await origin?.close();
  await echo?.close();
});

for (const method of METHODS) {
  describe(`${method} with shadowsocks-libev`, { skip }, () => {
    const password = randomBytes(18).toString('base64url');
    const peers: Peer[] = [];
    after(async () => {
      await Promise.all(peers.map((p) => p.stop()));
    });

    test('control: ss-local → ss-server (the harness works)', async () => {
      const sp = await freePort();
      const lp = await freePort();
      peers.push(
        await startLibev('ss-server', {
          server: '127.0.0.1',
          server_port: sp,
          password,
          method,
          mode: 'tcp_and_udp',
          timeout: 60,
        }),
      );
      peers.push(
        await startLibev('ss-local', {
          server: '127.0.0.1',
          server_port: sp,
          local_address: '127.0.0.1',
          local_port: lp,
          password,
          method,
          mode: 'tcp_and_udp',
          timeout: 60,
        }),
      );
      assert.equal(
        await curlHash([
          '--socks5-hostname',
          `127.0.0.1:${lp}`,
          `http://127.0.0.1:${origin.port}/bytes/${SIZE}`,
        ]),
        expectedHash(SIZE),
      );
    });

    test('ss-local → ladder server: TCP (curl) and UDP (echo)', async () => {
      const sp = await freePort();
      const lp = await freePort();
      const key = formatSsUri({ method, password, host: '127.0.0.1', port: sp });
      peers.push(
        await startLadder([
          'server',
          '--allow-private-targets',
          '--listen',
          `127.0.0.1:${sp}`,
          '--key',
          key,
        ]),
      );
      peers.push(
        await startLibev('ss-local', {
          server: '127.0.0.1',
          server_port: sp,
          local_address: '127.0.0.1',
          local_port: lp,
          password,
          method,
          mode: 'tcp_and_udp',
          timeout: 60,
        }),
      );
      assert.equal(
        await curlHash([
          '--socks5-hostname',
          `127.0.0.1:${lp}`,
          `http://127.0.0.1:${origin.port}/bytes/${SIZE}`,
        ]),
        expectedHash(SIZE),
      );
      const got = await socksUdpRoundTrip(lp, { host: '127.0.0.1', port: echo.port }, [
        'alpha',
        'beta',
        'gamma',
      ]);
      assert.deepEqual(got, ['alpha', 'beta', 'gamma']);
    });

    test('ladder client → ss-server: TCP via SOCKS5 and HTTP (curl), UDP via SOCKS5 UDP ASSOCIATE', async () => {
      const sp = await freePort();
      const socks = await freePort();
      const http = await freePort();
      peers.push(
        await startLibev('ss-server', {
          server: '127.0.0.1',
          server_port: sp,
          password,
          method,
          mode: 'tcp_and_udp',
          timeout: 60,
        }),
      );
      const key = formatSsUri({ method, password, host: '127.0.0.1', port: sp });
      peers.push(
        await startLadder(
          [
            'client',
            '--server',
            key,
            '--socks',
            `127.0.0.1:${socks}`,
            '--http',
            `127.0.0.1:${http}`,
          ],
          /HTTP proxy listening/,
        ),
      );
      const url = `http://127.0.0.1:${origin.port}/bytes/${SIZE}`;
      assert.equal(
        await curlHash(['--socks5-hostname', `127.0.0.1:${socks}`, url]),
        expectedHash(SIZE),
      );
      assert.equal(await curlHash(['-x', `http://127.0.0.1:${http}`, url]), expectedHash(SIZE));
      const got = await socksUdpRoundTrip(socks, { host: '127.0.0.1', port: echo.port }, [
        'one',
        'two',
        'three',
      ]);
      assert.deepEqual(got, ['one', 'three', 'two']);
    });
  });
}
