/**
 * Hostile bytes at running servers: random, truncated and oversized input to the Shadowsocks server,
 * the SOCKS5 front end and the HTTP proxy. None may crash, hang or stop serving: after the barrage
 * each still carries a real request end to end.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { SsServer } from '../../src/server/ss-server.js';
import { Socks5Server } from '../../src/proxy/socks5-server.js';
import { HttpProxyServer } from '../../src/proxy/http-proxy.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import { socksRequest } from '../helpers/socks5-client.js';

let echo: Running;
const key = makeCipherKey('2022-blake3-aes-128-gcm', randomBytes(16).toString('base64'));
let ss: SsServer;
let socks: Socks5Server;
let http: HttpProxyServer;
const ports: Record<string, number> = {};

before(async () => {
  echo = await tcpEcho();
  // Random bytes could happen to form a valid request: only the echo server may ever be dialled.
  const onlyEcho = {
    allow: (host: string, port: number) => host === '127.0.0.1' && port === echo.port,
  };
  ss = new SsServer({
    keys: [{ id: 'k', key }],
    dialer: new DirectDialer(onlyEcho),
    packetDialer: new DirectPacketDialer(),
    authTimeoutMs: 300,
  });
  ports.ss = (await ss.listen('127.0.0.1', 0)).port;
  socks = new Socks5Server({ dialer: new DirectDialer(onlyEcho), handshakeTimeoutMs: 300 });
  ports.socks = (await socks.listen('127.0.0.1', 0)).port;
  http = new HttpProxyServer({ dialer: new DirectDialer(onlyEcho) });
  ports.http = (await http.listen('127.0.0.1', 0)).port;
});
after(async () => {
  await ss.close(100);
  await socks.close();
  await http.close();
  await echo.close();
});

/** Sends `pieces`, optionally half-closes, and waits (bounded) for the server to close or go quiet. */
function hit(port: number, pieces: Uint8Array[], end: boolean): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const t = setTimeout(() => {
      s.destroy();
      resolve();
    }, 400);
    s.on('connect', () => {
      for (const p of pieces) s.write(p);
      if (end) s.end();
    });
    s.on('data', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve();
    });
    s.on('error', () => {});
  });
}

const input = fc.tuple(
  fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 4 }),
  fc.boolean(),
);

for (const name of ['ss', 'socks', 'http'] as const) {
  test(`hostile bytes at the ${name} server: no crash, still serving`, async () => {
    await fc.assert(
      fc.asyncProperty(input, async ([pieces, end]) => {
        // 20 connections at once per run, to shake out shared state
        await Promise.all(Array.from({ length: 4 }, () => hit(ports[name]!, pieces, end)));
      }),
      { numRuns: 25 },
    );
    // still serving, end to end
    if (name === 'ss') {
      const d = await new SsStreamDialer({ host: '127.0.0.1', port: ports.ss! }, key).dial({
        host: '127.0.0.1',
        port: echo.port,
      });
      const got = new Promise<string>((r) => {
        let s = '';
        d.on('data', (c: Buffer) => (s += c));
        d.on('end', () => r(s));
      });
      d.end('still alive');
      assert.equal(await got, 'still alive');
    } else if (name === 'socks') {
      const r = await socksRequest(ports.socks!, 1, { host: '127.0.0.1', port: echo.port });
      assert.equal(r.code, 0);
      r.socket.destroy();
    } else {
      const reply = await new Promise<string>((resolve) => {
        const s = connect(ports.http!, '127.0.0.1');
        let got = '';
        s.on('connect', () =>
          s.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`),
        );
        s.on('data', (d) => {
          got += d;
          if (got.includes('\r\n\r\n')) {
            s.destroy();
            resolve(got);
          }
        });
      });
      assert.match(reply, /^HTTP\/1\.1 200/);
    }
  });
}
