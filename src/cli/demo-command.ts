/**
 * `ladder demo` (what `npm start` runs): a server with a fresh 2022 key and a client, both on
 * loopback, a small local web page, and a fetch of that page through the tunnel by SOCKS5 and by the
 * HTTP proxy to prove the path. Then it stays up until Ctrl-C, so the proxies can be tried by hand.
 * @module
 */
import { createServer, request, type Server } from 'node:http';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { makeCipherKey } from '../crypto/ss-key.js';
import { formatSsUri } from '../codec/access-key-uri.js';
import { SsServer } from '../server/ss-server.js';
import { DirectDialer, DirectPacketDialer } from '../transport/direct.js';
import { SsPacketDialer, SsStreamDialer } from '../transport/ss-dialer.js';
import { Socks5Server } from '../proxy/socks5-server.js';
import { HttpProxyServer } from '../proxy/http-proxy.js';
import { formatHostPort, parseFlags, untilSignal } from './args.js';
import { printQr } from './qr.js';

const PAGE = '<!doctype html><title>Ladder</title><h1>Hello through the Ladder tunnel</h1>\n';
const METHOD = '2022-blake3-aes-256-gcm';

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('demo', argv, {
    'exit-after-check': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(
      'ladder demo [--exit-after-check]\n\nStarts a server and a client on loopback with a fresh key and proves the path.',
    );
    return 0;
  }
  const { web, port: webPort } = await startDemoPage();

  const psk = randomBytes(32).toString('base64');
  const key = makeCipherKey(METHOD, psk);
  const server = new SsServer({
    keys: [{ id: 'demo', key }],
    // Unguarded, as `ladder server --allow-private-targets`: the demo's web page is on loopback.
    dialer: new DirectDialer({ recycleReads: true }),
    packetDialer: new DirectPacketDialer(),
  });
  const sAddr = await server.listen('127.0.0.1', 0);
  const uri = formatSsUri({
    method: METHOD,
    password: psk,
    host: '127.0.0.1',
    port: sAddr.port,
    tag: 'Ladder demo',
  });

  const target = { host: '127.0.0.1', port: sAddr.port };
  const dialer = new SsStreamDialer(target, key, { recycleReads: true }); // its fronts honour holdChunks
  const socks = new Socks5Server({ dialer, packetDialer: new SsPacketDialer(target, key) });
  const http = new HttpProxyServer({ dialer });
  const socksAddr = await socks.listen('127.0.0.1', 0);
  const httpAddr = await http.listen('127.0.0.1', 0);

  console.log(
    `ladder demo: server listening on ${formatHostPort('127.0.0.1', sAddr.port)} (tcp+udp)`,
  );
  console.log(`ladder demo: access key (${METHOD}):\n\n  ${uri}\n`);
  await printQr(uri);
  console.log(
    `ladder demo: SOCKS5 listening on ${formatHostPort(socksAddr.address, socksAddr.port)}`,
  );
  console.log(
    `ladder demo: HTTP proxy listening on ${formatHostPort(httpAddr.address, httpAddr.port)}`,
  );

  const url = `http://127.0.0.1:${webPort}/`;
  const ok = await checkPath(socksAddr.port, httpAddr.port, webPort, url);
  if (ok && !values['exit-after-check']) {
    console.log(`\nTry it:  curl --socks5-hostname 127.0.0.1:${socksAddr.port} ${url}`);
    console.log(`         curl -x http://127.0.0.1:${httpAddr.port} ${url}`);
    console.log('Press Ctrl-C to stop.');
    await untilSignal();
  }
  await Promise.all([
    socks.close(),
    http.close(),
    server.close(1000),
    new Promise((r) => web.close(r)),
  ]);
  web.closeAllConnections();
  return ok ? 0 : 1;
}

/** The page the demo fetches through the tunnel, on a loopback port. */
async function startDemoPage(): Promise<{ web: Server; port: number }> {
  const web = createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(PAGE),
    });
    res.end(PAGE);
  });
  await listen(web);
  return { web, port: (web.address() as AddressInfo).port };
}

/** Fetches the page through both proxies; true if both brought it back. */
async function checkPath(
  socksPort: number,
  httpPort: number,
  webPort: number,
  url: string,
): Promise<boolean> {
  try {
    const viaSocks = await fetchViaSocks(socksPort, webPort);
    const viaHttp = await fetchViaHttpProxy(httpPort, url);
    const ok =
      viaSocks.includes('Hello through the Ladder tunnel') &&
      viaHttp.includes('Hello through the Ladder tunnel');
    console.log(
      `ladder demo: fetched ${url} through the tunnel: SOCKS5 ${viaSocks.length} bytes, HTTP proxy ${viaHttp.length} bytes: ${ok ? 'OK' : 'WRONG CONTENT'}`,
    );
    return ok;
  } catch (err) {
    console.error(`ladder demo: fetching through the tunnel failed: ${(err as Error).message}`);
    return false;
  }
}

function listen(s: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
}

/** A minimal SOCKS5 CONNECT (RFC 1928, no auth) and an HTTP/1.0 GET over it. */
function fetchViaSocks(socksPort: number, webPort: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socksPort, '127.0.0.1');
    const timer = setTimeout(() => s.destroy(new Error('timed out after 10 s')), 10_000);
    let stage = 0;
    let buf = Buffer.alloc(0);
    s.on('connect', () => s.write(Buffer.from([5, 1, 0])));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]); // a handshake of a few bytes: copying is fine here
      if (stage === 0 && buf.length >= 2) {
        if (buf[0] !== 5 || buf[1] !== 0) return s.destroy(new Error('SOCKS5 method refused'));
        buf = buf.subarray(2);
        stage = 1;
        s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, webPort >> 8, webPort & 0xff]));
      }
      if (stage === 1 && buf.length >= 10) {
        if (buf[1] !== 0) return s.destroy(new Error(`SOCKS5 reply code ${buf[1]}`));
        buf = buf.subarray(10);
        stage = 2;
        s.write('GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n');
      }
    });
    s.on('end', () => {
      clearTimeout(timer);
      resolve(buf.toString('utf8'));
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function fetchViaHttpProxy(proxyPort: number, url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: proxyPort,
        path: url,
        headers: { host: new URL(url).host },
        timeout: 10_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out after 10 s')));
    req.on('error', reject);
    req.end();
  });
}
