/**
 * Split routing end to end on loopback: the SOCKS5 and HTTP fronts over a RoutedDialer whose tunnel
 * is a real Shadowsocks server (in-process), a poisoned "domestic" resolver (UDP) and an honest one
 * reached through the tunnel (DNS over TCP). The server's own dialers resolve `.lab` names from the
 * honest zone and record every target, so the test sees what crossed the tunnel.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsServer } from '../../src/server/ss-server.js';
import { SsPacketDialer, SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import type { PacketDialer, StreamDialer, Target } from '../../src/transport/types.js';
import { Socks5Server } from '../../src/proxy/socks5-server.js';
import { HttpProxyServer } from '../../src/proxy/http-proxy.js';
import { SOCKS_CMD, SOCKS_REPLY } from '../../src/codec/socks5.js';
import { parseRules, type RuleFiles } from '../../src/routing/rules.js';
import { RoutedDialer } from '../../src/routing/routed-dialer.js';
import { StreamResolver, udpResolver } from '../../src/probe/dns-client.js';
import { lookupWith } from '../../src/cli/routing-setup.js';
import { startDnsServer, startTcpDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { tcpEcho, udpEcho, type Running } from '../helpers/echo.js';
import { socksRequest, socksUdpRoundTrip } from '../helpers/socks5-client.js';

/** What the honest resolver (and the server's view of DNS) says. */
const HONEST: Record<string, string[]> = {
  'domestic.lab': ['127.0.0.1'],
  'blocked.lab': ['127.0.0.1'],
  'cdn.lab': ['127.0.0.1'],
  'forged.lab': ['127.0.0.1'],
};
/** The domestic resolver: blocked.lab and forged.lab are poisoned (nothing listens there). */
const POISONED: Record<string, string[]> = {
  'domestic.lab': ['127.0.0.1'],
  'blocked.lab': ['127.3.0.66'],
  'cdn.lab': ['127.0.0.1'],
  'forged.lab': ['127.3.0.66'],
};
const RULES = `# test rules
DOMAIN,ads.lab,REJECT
DOMAIN-SUFFIX,domestic.lab,DIRECT
DOMAIN,blocked.lab,PROXY
IP-CIDR,127.0.0.0/16,DIRECT
MATCH,PROXY
`;

/** A dialer that records each target and resolves `.lab` names from `zone` before dialing. */
function recording(
  zone: Record<string, string[]>,
  seen: string[],
): { stream: StreamDialer; packet: PacketDialer } {
  const direct = new DirectDialer();
  const packets = new DirectPacketDialer();
  const map = (t: Target): Target => ({ host: zone[t.host]?.[0] ?? t.host, port: t.port });
  return {
    stream: {
      dial(t, signal) {
        seen.push(`tcp ${t.host}`);
        return direct.dial(map(t), signal);
      },
    },
    packet: {
      open(onPacket) {
        const s = packets.open(onPacket);
        return {
          send(payload, t) {
            seen.push(`udp ${t.host}`);
            s.send(payload, map(t));
          },
          close: () => s.close(),
        };
      },
    },
  };
}

let echo: Running;
let uecho: Running;
let local: DnsServer;
let remote: DnsServer;
let server: SsServer;
let socks: Socks5Server;
let http: HttpProxyServer;
let socksPort: number;
let httpPort: number;
const serverSaw: string[] = [];
const directSaw: string[] = [];
const logLines: string[] = [];

before(async () => {
  echo = await tcpEcho();
  uecho = await udpEcho();
  local = await startDnsServer(POISONED);
  remote = await startTcpDnsServer(HONEST);
  const key = makeCipherKey('2022-blake3-aes-128-gcm', randomBytes(16).toString('base64'));
  const onServer = recording(HONEST, serverSaw);
  server = new SsServer({
    keys: [{ id: 'k', key }],
    dialer: onServer.stream,
    packetDialer: onServer.packet,
  });
  const at = { host: '127.0.0.1', port: (await server.listen('127.0.0.1', 0)).port };
  const tunnel = new SsStreamDialer(at, key);
  const onDirect = recording({}, directSaw);
  const files: RuleFiles = {
    read() {
      throw new Error('no rule sets here');
    },
  };
  const routed = new RoutedDialer({
    table: parseRules(RULES, 'test-rules.txt', files),
    direct: onDirect,
    proxy: { stream: tunnel, packet: new SsPacketDialer(at, key) },
    resolveDirect: lookupWith(udpResolver({ host: '127.0.0.1', port: local.port })),
    resolveRemote: lookupWith(
      new StreamResolver(tunnel, { host: '127.0.0.1', port: remote.port }, ' (tunnel)'),
    ),
    log: (l) => logLines.push(l),
  });
  socks = new Socks5Server({ dialer: routed, packetDialer: routed });
  socksPort = (await socks.listen('127.0.0.1', 0)).port;
  http = new HttpProxyServer({ dialer: routed });
  httpPort = (await http.listen('127.0.0.1', 0)).port;
});

after(async () => {
  await socks.close();
  await http.close();
  await server.close(200);
  await Promise.all([echo.close(), uecho.close(), local.close(), remote.close()]);
});

async function echoThrough(host: string): Promise<string> {
  const r = await socksRequest(socksPort, SOCKS_CMD.CONNECT, { host, port: echo.port });
  try {
    if (r.code !== SOCKS_REPLY.SUCCEEDED) return `refused ${r.code}`;
    return await roundTrip(r.socket, `hello ${host}`);
  } finally {
    r.socket.destroy();
  }
}

function roundTrip(s: Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) resolve(got);
    });
    s.once('error', reject);
    s.once('close', () => resolve(got));
    s.write(text);
  });
}

test('a DIRECT name goes direct: the Ladder server sees no connection for it', async () => {
  const before = serverSaw.length;
  assert.equal(await echoThrough('domestic.lab'), 'hello domestic.lab');
  assert.deepEqual(serverSaw.slice(before), []);
  assert.ok(directSaw.includes('tcp 127.0.0.1'), 'dialed at the domestic answer');
  assert.ok(local.seen.includes('domestic.lab A'));
  assert.ok(!remote.seen.some((q) => q.startsWith('domestic.lab')), 'no tunnel lookup needed');
});

test('a PROXY name travels to the server unresolved, whatever the poisoned resolver says', async () => {
  const before = serverSaw.length;
  assert.equal(await echoThrough('blocked.lab'), 'hello blocked.lab');
  assert.deepEqual(serverSaw.slice(before), ['tcp blocked.lab']);
  assert.ok(!local.seen.some((q) => q.startsWith('blocked.lab')), 'never resolved locally');
  assert.ok(!directSaw.includes('tcp 127.3.0.66'), 'the poisoned address is never dialed');
});

test('REJECT: SOCKS5 reply 0x02 at once, HTTP 403 naming the ruleset', async () => {
  const r = await socksRequest(socksPort, SOCKS_CMD.CONNECT, { host: 'ads.lab', port: 443 });
  r.socket.destroy();
  assert.equal(r.code, SOCKS_REPLY.NOT_ALLOWED);
  const s = connect(httpPort, '127.0.0.1');
  const head = await new Promise<string>((resolve, reject) => {
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.once('error', reject);
    s.once('close', () => resolve(got));
    s.write('CONNECT ads.lab:443 HTTP/1.1\r\nHost: ads.lab:443\r\n\r\n');
  });
  assert.match(head, /^HTTP\/1\.1 403 /);
  assert.match(head, /not allowed by ruleset/);
  assert.ok(!serverSaw.some((x) => x.includes('ads.lab')));
});

test('an address rule resolves the name through the tunnel; a forged domestic answer is not used', async () => {
  // cdn.lab: both resolvers agree on an address the rules route direct: the domestic one is used.
  assert.equal(await echoThrough('cdn.lab'), 'hello cdn.lab');
  assert.ok(remote.seen.includes('cdn.lab A'), 'looked up through the tunnel');
  assert.ok(serverSaw.includes(`tcp 127.0.0.1`), 'the DNS over TCP went through the server');
  // forged.lab: the tunnel says 127.0.0.1 (direct); the domestic answer 127.3.0.66 would route
  // through the tunnel, so it is untrusted and the tunnel's answer is dialed direct.
  const before = directSaw.length;
  assert.equal(await echoThrough('forged.lab'), 'hello forged.lab');
  assert.deepEqual(directSaw.slice(before), ['tcp 127.0.0.1']);
});

test('UDP follows the rules: DIRECT datagrams go direct, PROXY ones through the server', async () => {
  const before = serverSaw.length;
  assert.deepEqual(
    await socksUdpRoundTrip(socksPort, { host: 'domestic.lab', port: uecho.port }, ['d1']),
    ['d1'],
  );
  assert.ok(!serverSaw.slice(before).some((x) => x.startsWith('udp')));
  assert.ok(directSaw.includes('udp 127.0.0.1'));
  assert.deepEqual(
    await socksUdpRoundTrip(socksPort, { host: 'blocked.lab', port: uecho.port }, ['b1']),
    ['b1'],
  );
  assert.ok(serverSaw.slice(before).includes('udp blocked.lab'));
});

test('--log-connections lines name the rule and the route', () => {
  assert.ok(
    logLines.some((l) =>
      /^tcp domestic\.lab:\d+ → DIRECT via 127\.0\.0\.1 \(test-rules\.txt:3 DOMAIN-SUFFIX,domestic\.lab,DIRECT\)$/.test(
        l,
      ),
    ),
    logLines.join('\n'),
  );
  assert.ok(logLines.some((l) => /^tcp ads\.lab:443 → REJECT \(test-rules\.txt:2 /.test(l)));
  assert.ok(logLines.some((l) => /^udp blocked\.lab:\d+ → PROXY \(test-rules\.txt:4 /.test(l)));
});
