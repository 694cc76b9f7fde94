/**
 * A TLS client that ends its side (a TLS close_notify, or a bare FIN) before its bytes can be judged
 * as a Trojan request gets from `ladder server` what the web site alone gives it: the site sees
 * the bytes, then the end, answers, and closes. Before, the decoy took over a connection whose end
 * had already been read, so it never saw the end: after a close_notify with no data Ladder stayed
 * open until its 30 s timeout, and 30 hex digits then an end drew nothing instead of the site's
 * 400 — a prober's way to tell Ladder from the site (issue #4, "noticed" in session 3).
 *
 * The reference is the built-in decoy site alone behind a TLS socket with the same certificate (as
 * in one-port-tell.test.ts and the lab); for `--fallback`, the web server it forwards to, spoken to
 * over plain TCP with the same bytes and end.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer, type Server, type AddressInfo } from 'node:net';
import { connect as tlsConnect, createSecureContext, TLSSocket } from 'node:tls';
import { createServer as createHttpServer } from 'node:http';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

const WAIT_MS = 3000;
let cert: TestCert;
let ladder: Peer;
let ladderPort: number;
let forwarding: Peer;
let forwardingPort: number;
let reference: Server;
let origin: ReturnType<typeof createHttpServer>;
const decoy = new DecoySite();

interface Reaction {
  end: 'closed' | 'open';
  reply: string;
}

/** The first line of an HTTP reply, or its length when it is not one; '' for nothing. */
function summary(reply: Buffer): string {
  if (reply.length === 0) return '';
  const line = reply.toString('latin1').split('\r\n')[0]!;
  return line.startsWith('HTTP/') ? line : `${reply.length} bytes`;
}

/** TLS handshake, `data`, then close_notify (`tls.end()`) or a bare FIN under TLS (`raw.end()`). */
function overTls(port: number, how: 'close_notify' | 'fin', data: string): Promise<Reaction> {
  return new Promise((resolve) => {
    const raw = netConnect(port, '127.0.0.1');
    raw.on('error', () => {});
    const s = tlsConnect({
      socket: raw,
      rejectUnauthorized: false,
      servername: 'localhost',
      allowHalfOpen: true,
    } as never);
    s.on('error', () => {});
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('secureConnect', () => {
      if (data) s.write(data);
      if (how === 'fin') raw.end();
      else s.end();
    });
    let settled = false;
    const done = (end: Reaction['end']): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.destroy();
      resolve({ end, reply: summary(Buffer.concat(parts)) });
    };
    const timer = setTimeout(() => done('open'), WAIT_MS);
    raw.on('close', () => done('closed'));
  });
}

/** The same bytes and end over plain TCP. */
function overTcp(port: number, data: string): Promise<Reaction> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1', () => s.end(data));
    s.on('error', () => {});
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    const timer = setTimeout(() => done('open'), WAIT_MS);
    const done = (end: Reaction['end']): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ end, reply: summary(Buffer.concat(parts)) });
    };
    s.on('close', () => done('closed'));
  });
}

const CASES: [string, string][] = [
  ['nothing', ''],
  ['30 hex digits (the start of a Trojan password hash)', 'a'.repeat(30)],
  ['56 hex digits and CR', `${'b'.repeat(56)}\r`],
  ['half a request line', 'GET / HTTP/1.1\r\n'],
  ['a whole request', 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'],
];

before(async () => {
  cert = makeCert();
  const secureContext = createSecureContext({
    cert: readFileSync(cert.certFile),
    key: readFileSync(cert.keyFile),
  });
  reference = createServer((raw) => {
    raw.on('error', () => raw.destroy());
    const s = new TLSSocket(raw, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
    s.on('error', () => s.destroy());
    s.once('secure', () => decoy.handle(s, Buffer.alloc(0)));
  });
  await new Promise<void>((r) => reference.listen(0, '127.0.0.1', r));
  origin = createHttpServer((_req, res) => res.end('origin page'));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const serve = async (extra: string[]): Promise<[Peer, number]> => {
    const port = await freePort();
    const key = formatTrojanUri({ password: 'half-close-1', host: '127.0.0.1', port });
    const args = [
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      key,
      '--no-udp',
    ];
    args.push('--tls-cert', cert.certFile, '--tls-key', cert.keyFile, ...extra);
    return [await startLadder(args), port];
  };
  [ladder, ladderPort] = await serve([]);
  const originPort = (origin.address() as AddressInfo).port;
  [forwarding, forwardingPort] = await serve(['--fallback', `127.0.0.1:${originPort}`]);
});

after(async () => {
  await ladder?.stop();
  await forwarding?.stop();
  reference?.close();
  origin?.close();
  decoy.close();
  cert?.remove();
});

for (const how of ['close_notify', 'fin'] as const) {
  test(`after the TLS handshake, ${how}: the Trojan server reacts as the decoy site alone`, async () => {
    for (const [what, data] of CASES) {
      const got = await overTls(ladderPort, how, data);
      const want = await overTls((reference.address() as AddressInfo).port, how, data);
      assert.deepEqual(got, want, `${what}, then ${how}`);
      assert.equal(got.end, 'closed', `${what}, then ${how}: the site closes`);
    }
  });

  test(`after the TLS handshake, ${how}: --fallback gives the web server the bytes and the end`, async () => {
    for (const [what, data] of CASES) {
      const got = await overTls(forwardingPort, how, data);
      const want = await overTcp((origin.address() as AddressInfo).port, data);
      assert.deepEqual(got, want, `${what}, then ${how}`);
    }
  });
}
