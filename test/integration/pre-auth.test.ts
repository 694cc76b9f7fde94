/**
 * Every front that takes connections from the internet passes the one pre-authentication suite
 * (test/helpers/pre-auth-suite.ts): raw Shadowsocks, the one port without and with TLS (Trojan
 * behind it, and Trojan with the WebSocket front), and the plain WebSocket port (`--ws-listen`).
 */
import { after, before } from 'node:test';
import { createSecureContext } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { issueCertificate } from '../../src/server/certificates.js';
import {
  trojanPasswordHash,
  encodeTrojanRequest,
  trojanRequestLength,
  TROJAN_CMD,
} from '../../src/codec/trojan.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsServer } from '../../src/server/ss-server.js';
import { PortMux } from '../../src/server/port-mux.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { TlsInnerFront, WsFront, WsListener } from '../../src/server/ws-front.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import type { PreAuthGuard } from '../../src/server/pre-auth.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import type { Duplex } from 'node:stream';
import { WebSocketStream } from '../../src/stream/websocket-stream.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import {
  echoRoundTrip,
  openTcp,
  openTls,
  preAuthSuite,
  DECOY_MTIME_MS,
  wsUpgrade,
  type PreAuthFront,
} from '../helpers/pre-auth-suite.js';

const key = makeCipherKey('2022-blake3-aes-128-gcm', randomBytes(16).toString('base64'));
const trojanPassword = 'pre-auth-suite';
const WS_PATH = '/pre-auth-suite';
const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost'],
  serial: randomBytes(16),
});
let echo: Running;
before(async () => {
  echo = await tcpEcho();
});
after(() => echo.close());

function ssServer(preAuth: PreAuthGuard): SsServer {
  const allow = { allow: (h: string, p: number) => h === '127.0.0.1' && p === echo.port };
  return new SsServer({ keys: [{ id: 'k', key }], dialer: new DirectDialer(allow), preAuth });
}

function trojanHandler(decoy: DecoySite): TrojanHandler {
  const allow = { allow: (h: string, p: number) => h === '127.0.0.1' && p === echo.port };
  return new TrojanHandler({
    users: [{ id: 't', hash: trojanPasswordHash(trojanPassword) }],
    dialer: new DirectDialer(allow),
    fallback: decoy,
  });
}

/** A keyed Shadowsocks client through `port`: one echo now, one later. */
async function ssKeyed(port: number): Promise<Awaited<ReturnType<PreAuthFront['keyed']>>> {
  const d = new SsStreamDialer({ host: '127.0.0.1', port }, key);
  const s = await d.dial({ host: '127.0.0.1', port: echo.port });
  await echoRoundTrip(s);
  return { stillWorks: () => echoRoundTrip(s), close: () => s.destroy() };
}

/** A keyed Trojan client over TLS to `port`. */
async function trojanKeyed(port: number): Promise<Awaited<ReturnType<PreAuthFront['keyed']>>> {
  const c = await openTls(port);
  const target = { host: '127.0.0.1', port: echo.port };
  const head = Buffer.alloc(trojanRequestLength(target));
  encodeTrojanRequest(
    { hash: trojanPasswordHash(trojanPassword), command: TROJAN_CMD.CONNECT, target },
    head,
    0,
  );
  c.sock.write(head);
  await echoRoundTrip(c.sock);
  return { stillWorks: () => echoRoundTrip(c.sock), close: () => c.sock.destroy() };
}

/** Shadowsocks inside a WebSocket on the secret path, over `sock` (v2ray-plugin's way). */
async function wsKeyed(
  sock: Duplex,
  port: number,
): Promise<Awaited<ReturnType<PreAuthFront['keyed']>>> {
  await wsUpgrade(sock, WS_PATH);
  const ws = new WebSocketStream(sock, { role: 'client' });
  const d = new SsStreamDialer({ host: '127.0.0.1', port }, key, {
    connect: () => Promise.resolve(ws as never),
  });
  const s = await d.dial({ host: '127.0.0.1', port: echo.port });
  await echoRoundTrip(s);
  return { stillWorks: () => echoRoundTrip(s), close: () => s.destroy() };
}

preAuthSuite(
  'Shadowsocks (ss-server)',
  { tls: false, http: false, ssRule: true },
  async (preAuth) => {
    const ss = ssServer(preAuth);
    const { port } = await ss.listen('127.0.0.1', 0);
    return { port, keyed: () => ssKeyed(port), close: () => ss.close(0) };
  },
);

preAuthSuite(
  'one port without TLS (port-mux)',
  { tls: false, http: false, ssRule: true },
  async (preAuth) => {
    const mux = new PortMux({ ss: ssServer(preAuth), preAuth });
    const { port } = await mux.listen('127.0.0.1', 0);
    return { port, keyed: () => ssKeyed(port), close: () => mux.close(0) };
  },
);

preAuthSuite(
  'one port with TLS and Trojan (port-mux, tls-handover, trojan-server)',
  { tls: true, http: true, ssRule: false },
  async (preAuth) => {
    const decoy = new DecoySite({ builtinMtimeMs: DECOY_MTIME_MS });
    const mux = new PortMux({
      ss: ssServer(preAuth),
      preAuth,
      tls: {
        secureContext: createSecureContext({ cert: cert.cert, key: cert.key }),
        handler: trojanHandler(decoy),
        plainHttp: decoy.handlePlainOnTlsPort,
      },
    });
    const { port } = await mux.listen('127.0.0.1', 0);
    return {
      port,
      keyed: async () => {
        // Both key holders: Shadowsocks on the TLS port, then Trojan.
        const ss = await ssKeyed(port);
        ss.close();
        return trojanKeyed(port);
      },
      close: async () => {
        await mux.close(0);
        decoy.close();
      },
    };
  },
);

preAuthSuite(
  'one port with TLS, Trojan and WebSockets (ws-front TlsInnerFront)',
  { tls: true, http: true, ssRule: false },
  async (preAuth) => {
    const decoy = new DecoySite({ builtinMtimeMs: DECOY_MTIME_MS });
    const ss = ssServer(preAuth);
    const trojan = trojanHandler(decoy);
    const web = new WsFront({ paths: [WS_PATH], ss, trojan, fallback: decoy });
    const mux = new PortMux({
      ss,
      preAuth,
      tls: {
        secureContext: createSecureContext({ cert: cert.cert, key: cert.key }),
        handler: new TlsInnerFront({ trojan, web }),
        plainHttp: decoy.handlePlainOnTlsPort,
      },
    });
    const { port } = await mux.listen('127.0.0.1', 0);
    return {
      port,
      keyed: async () => {
        const t = await trojanKeyed(port);
        t.close();
        return wsKeyed((await openTls(port)).sock, port);
      },
      close: async () => {
        await mux.close(0);
        web.close();
        decoy.close();
      },
    };
  },
);

preAuthSuite(
  'plain WebSocket port (ws-front WsListener)',
  { tls: false, http: true, ssRule: false },
  async (preAuth) => {
    const decoy = new DecoySite({ builtinMtimeMs: DECOY_MTIME_MS });
    const web = new WsFront({ paths: [WS_PATH], ss: ssServer(preAuth), fallback: decoy });
    const listener = new WsListener(web, preAuth);
    const { port } = await listener.listen('127.0.0.1', 0);
    return {
      port,
      keyed: async () => {
        return wsKeyed((await openTcp(port)).sock, port);
      },
      close: async () => {
        await listener.close();
        web.close();
        decoy.close();
      },
    };
  },
);
