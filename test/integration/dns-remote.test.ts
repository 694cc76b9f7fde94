/**
 * `ladder client --rules … --dns-remote tls://localhost:<port>` and `https://localhost:<port>/dns-query`
 * end to end on loopback: a Ladder Shadowsocks server (in-process, its dialer recording every target
 * and the local port of every connection it makes), a DoT and a DoH server made here (Node's tls and
 * https servers answering from test/helpers/dns-server.ts, with a certificate from
 * src/server/certificates.ts that the client trusts through NODE_EXTRA_CA_CERTS), a poisoned
 * domestic resolver, and an echo server. The rule needs an address (IP-CIDR without no-resolve), the
 * domestic answer would be refused, the encrypted resolver's answer is routed DIRECT: so the echo
 * answering proves the rule decided on that answer, and the ports prove the query came through the
 * Ladder server, not from the client directly.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsServer } from '../../src/server/ss-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import type { StreamDialer } from '../../src/transport/types.js';
import { issueCertificate } from '../../src/server/certificates.js';
import { SOCKS_CMD, SOCKS_REPLY } from '../../src/codec/socks5.js';
import {
  startDnsServer,
  startDohServer,
  startDotServer,
  type DnsServer,
  type TlsDnsServer,
} from '../helpers/dns-server.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import { socksRequest } from '../helpers/socks5-client.js';
import { startLadder } from '../helpers/peers.js';

/** What the encrypted resolvers say: an address the rules route direct (the echo listens there). */
const HONEST: Record<string, string[]> = {
  'one.lab': ['127.0.0.1'],
  'two.lab': ['127.0.0.1'],
};
/** What the domestic resolver says: an address the rules refuse. */
const POISONED: Record<string, string[]> = {
  'one.lab': ['198.18.0.66'],
  'two.lab': ['198.18.0.66'],
};
const RULES = 'IP-CIDR,127.0.0.0/8,DIRECT\nMATCH,REJECT\n';

let dir: string;
let echo: Running;
let domestic: DnsServer;
let dot: TlsDnsServer;
let doh: TlsDnsServer;
let server: SsServer;
let keyUri: string;
/** Targets the Ladder server was asked for, and the local ports of the connections it made. */
const serverSaw: string[] = [];
const serverPorts: number[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ladder-dns-remote-'));
  const ca = issueCertificate({
    commonName: 'Ladder test CA',
    isCA: true,
    serial: randomBytes(20),
  });
  const leaf = issueCertificate({
    commonName: 'localhost',
    altNames: ['localhost', '127.0.0.1'],
    issuer: { cert: ca.cert, key: ca.keyObject },
    serial: randomBytes(20),
  });
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  writeFileSync(join(dir, 'rules.txt'), RULES);
  echo = await tcpEcho();
  domestic = await startDnsServer(POISONED);
  dot = await startDotServer(HONEST, { cert: leaf.cert, key: leaf.key });
  doh = await startDohServer(HONEST, { cert: leaf.cert, key: leaf.key });
  const secret = randomBytes(16).toString('base64');
  const key = makeCipherKey('2022-blake3-aes-128-gcm', secret);
  const direct = new DirectDialer();
  // The server resolves the resolver's name: here `localhost` is 127.0.0.1, where the servers listen.
  const recording: StreamDialer = {
    async dial(t, signal) {
      serverSaw.push(`${t.host}:${t.port}`);
      const host = t.host === 'localhost' ? '127.0.0.1' : t.host;
      const s = await direct.dial({ host, port: t.port }, signal);
      serverPorts.push((s as Socket).localPort ?? -1);
      return s;
    },
  };
  server = new SsServer({ keys: [{ id: 'k', key }], dialer: recording });
  const port = (await server.listen('127.0.0.1', 0)).port;
  keyUri = `ss://2022-blake3-aes-128-gcm:${encodeURIComponent(secret)}@127.0.0.1:${port}`;
});

after(async () => {
  await server.close(200);
  await Promise.all([echo.close(), domestic.close(), dot.close(), doh.close()]);
  rmSync(dir, { recursive: true, force: true });
});

async function echoThrough(socksPort: number, host: string): Promise<string> {
  const r = await socksRequest(socksPort, SOCKS_CMD.CONNECT, { host, port: echo.port });
  try {
    if (r.code !== SOCKS_REPLY.SUCCEEDED) return `refused ${r.code}`;
    return await new Promise<string>((resolve, reject) => {
      let got = '';
      r.socket.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.length >= host.length) resolve(got);
      });
      r.socket.once('error', reject);
      r.socket.once('close', () => resolve(got));
      r.socket.write(host);
    });
  } finally {
    r.socket.destroy();
  }
}

for (const kind of ['tls', 'https'] as const) {
  test(`--dns-remote ${kind}://localhost: the query crosses the Ladder server, its answer decides`, async () => {
    const resolverServer = kind === 'tls' ? dot : doh;
    const url =
      kind === 'tls' ? `tls://localhost:${dot.port}` : `https://localhost:${doh.port}/dns-query`;
    const before = serverSaw.length;
    const client = await startLadder(
      [
        'client',
        '--server',
        keyUri,
        '--socks',
        '127.0.0.1:0',
        '--no-http',
        '--rules',
        join(dir, 'rules.txt'),
        '--dns-direct',
        `127.0.0.1:${domestic.port}`,
        '--dns-remote',
        url,
        '--log-connections',
      ],
      /SOCKS5 listening on 127\.0\.0\.1:\d+/,
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') } },
    );
    try {
      const socksPort = Number(/SOCKS5 listening on 127\.0\.0\.1:(\d+)/.exec(client.output())![1]);
      // The domestic answer alone would be refused (MATCH,REJECT): the echo proves the rule
      // decided on the encrypted resolver's 127.0.0.1.
      assert.equal(await echoThrough(socksPort, 'one.lab'), 'one.lab', client.output());
      assert.equal(await echoThrough(socksPort, 'two.lab'), 'two.lab', client.output());
      assert.ok(
        resolverServer.seen.includes('one.lab A') && resolverServer.seen.includes('two.lab A'),
      );
      // The resolver's name went to the Ladder server unresolved, once: one connection reused.
      assert.deepEqual(serverSaw.slice(before), [`localhost:${resolverServer.port}`]);
      assert.equal(resolverServer.peers.length, 1);
      // ... and that connection is the one the Ladder server made, not one from the client.
      assert.ok(serverPorts.includes(resolverServer.peers[0]!), 'the query came from the server');
      assert.match(
        client.output(),
        /route tcp one\.lab:\d+ → DIRECT via 127\.0\.0\.1 \(.*rules\.txt:1 IP-CIDR/,
      );
    } finally {
      await client.stop();
    }
  });
}
