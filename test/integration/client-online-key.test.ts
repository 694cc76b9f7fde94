// `ladder client --server <online key>` without --ui: the key is fetched from an HTTPS server on
// loopback (trusted through NODE_EXTRA_CA_CERTS, as a user's system store would), then traffic goes
// through the real shadowsocks-libev ss-server it names; Outline's YAML with a WebSocket endpoint
// carries traffic through Ladder's server's WebSocket port. An online key that answers with an error
// stops the client with the operator's message (the fetch's deadline and caps are online-keys.test).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { SOCKS_CMD } from '../../src/codec/socks5.js';
import { v2rayPlugin } from '../../src/codec/v2ray-plugin.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import { freePort, hasCommand, startLadder, startLibev, type Peer } from '../helpers/peers.js';
import { socksRequest } from '../helpers/socks5-client.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const METHOD = 'chacha20-ietf-poly1305';
const PASSWORD = 'online-key-cli-test';

describe(
  'ladder client --server ssconf:// without --ui',
  {
    timeout: 60_000,
    skip: !hasCommand('ss-server') && 'ss-server (shadowsocks-libev) is not installed',
  },
  () => {
    let cert: TestCert;
    let https: Server;
    let base = '';
    let echo: Running;
    const peers: Peer[] = [];
    const sockets = new Set<Socket>();
    const answers = new Map<string, string>();

    before(async () => {
      cert = makeCert();
      https = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
        const a = answers.get(req.url ?? '');
        if (a === undefined) res.writeHead(404).end('not here');
        else res.writeHead(200, { 'Content-Type': 'text/plain' }).end(a);
      });
      https.on('connection', (s: Socket) => {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
      });
      await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
      base = `127.0.0.1:${(https.address() as AddressInfo).port}`;
      echo = await tcpEcho();
      const sp = await freePort();
      peers.push(
        await startLibev('ss-server', {
          server: '127.0.0.1',
          server_port: sp,
          password: PASSWORD,
          method: METHOD,
          mode: 'tcp_only',
          timeout: 60,
        }),
      );
      answers.set(
        '/key',
        `${formatSsUri({ method: METHOD, password: PASSWORD, host: '127.0.0.1', port: sp })}\n`,
      );
      answers.set('/expired', 'error:\n  message: Key expired\n  details: ask the operator');
    });
    after(async () => {
      for (const p of peers) await p.stop();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => (https ? https.close(() => r()) : r()));
      await echo?.close();
      cert?.remove();
    });

    /** "hello" to the echo server through the client's SOCKS5 port, and back. */
    async function echoThrough(socks: number): Promise<void> {
      const { code, socket } = await socksRequest(socks, SOCKS_CMD.CONNECT, {
        host: '127.0.0.1',
        port: echo.port,
      });
      assert.equal(code, 0);
      const back = new Promise<string>((resolve, reject) => {
        let got = '';
        socket.on('data', (d: Buffer) => {
          got += d.toString();
          if (got.length >= 5) resolve(got);
        });
        socket.once('error', reject);
      });
      socket.write('hello');
      assert.equal(await back, 'hello');
      socket.destroy();
    }

    const env = () => ({ ...process.env, NODE_EXTRA_CA_CERTS: cert.certFile });

    test('fetches the key at start, then carries traffic through the server it names', async () => {
      const socks = await freePort();
      const client = await startLadder(
        [
          'client',
          '--server',
          `ssconf://${base}/key#Home`,
          '--socks',
          `127.0.0.1:${socks}`,
          '--no-http',
        ],
        /SOCKS5 listening/,
        { env: env(), timeoutMs: 30_000 },
      );
      peers.push(client);
      assert.match(client.output(), /online key 'Home': new key from https:\/\/127\.0\.0\.1:\d+/);
      await echoThrough(socks);
      // No destination in the client's output.
      assert.doesNotMatch(client.output(), new RegExp(`:${echo.port}\\b`));
      await client.stop();
    });

    test("Outline's WebSocket endpoint: the key rides in Ladder's server's WebSocket", async () => {
      // Ladder's server takes Shadowsocks in WebSocket binary messages on a plain port (what
      // outline-ss-server's WebSocket listener takes); the YAML names it by URL, and the nested
      // endpoint is the address to connect to.
      const port = await freePort();
      const wsPort = await freePort();
      const serverKey = formatSsUri({
        method: METHOD,
        password: PASSWORD,
        host: '127.0.0.1',
        port,
        plugin: v2rayPlugin({
          path: '/SECRET_PATH/tcp',
          host: 'localhost',
          tls: false,
          mux: false,
        }),
      });
      const server = await startLadder(
        [
          'server',
          '--allow-private-targets',
          '--listen',
          `127.0.0.1:${port}`,
          '--key',
          serverKey,
          '--ws-listen',
          `127.0.0.1:${wsPort}`,
        ],
        /secret path/,
      );
      peers.push(server);
      answers.set(
        '/ws',
        [
          'transport:',
          '  $type: tcpudp',
          '  tcp:',
          '    $type: shadowsocks',
          '    endpoint:',
          '      $type: websocket',
          `      url: ws://localhost:${wsPort}/SECRET_PATH/tcp`,
          `      endpoint: 127.0.0.1:${wsPort}`,
          `    cipher: ${METHOD}`,
          `    secret: ${PASSWORD}`,
        ].join('\n'),
      );
      const socks = await freePort();
      const client = await startLadder(
        ['client', '--server', `ssconf://${base}/ws`, '--socks', `127.0.0.1:${socks}`, '--no-http'],
        /carrying traffic through .*over WebSocket/,
        { env: env(), timeoutMs: 30_000 },
      );
      peers.push(client);
      await echoThrough(socks);
      await client.stop();
      await server.stop();
    });

    test("an online key's error answer stops the client, saying what the operator said", async () => {
      await assert.rejects(
        startLadder(['client', '--server', `ssconf://${base}/expired`, '--no-http'], /listening/, {
          env: env(),
          timeoutMs: 30_000,
        }),
        /exited with \d+ before it was ready[\s\S]*the operator's server says: Key expired \(ask the operator\)/,
      );
    });
  },
);
