/**
 * The DNS tunnel through the real CLI on loopback: `ladder server --dns-tunnel`, a UDP forwarder
 * standing in for the recursive resolver (it drops and duplicates some queries and answers, by a
 * fixed pattern), and `ladder client` with an ss:// 2022 key with dns=; a 200 KB download through
 * the client's SOCKS port arrives whole. Then the usage errors of the new flags and key parameter.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { LADDER_CLI, freePort, hasCommand, startLadder, type Peer } from '../helpers/peers.js';
import { startOrigin, expectedHash, type Origin } from '../helpers/origin.js';
import { curl } from '../helpers/curl.js';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { dnsTunnelConnect } from '../../src/transport/dns-tunnel-client.js';

const skip = hasCommand('curl') ? false : 'needs curl';
const peers: Peer[] = [];
const closers: (() => void)[] = [];
let origin: Origin | null = null;
after(async () => {
  await Promise.all(peers.map((p) => p.stop()));
  await origin?.close();
  for (const c of closers) c();
});

/**
 * A forwarding "resolver": each query from the client goes on to the server from its own socket,
 * each answer back to the client. Every 9th query and every 13th answer are dropped, every 5th
 * query is sent twice (as a resolver that retries does).
 */
async function startForwarder(server: number): Promise<{ port: number; queries: () => number }> {
  const down = createSocket('udp4');
  const up = createSocket('udp4');
  let client: RemoteInfo | null = null;
  let queries = 0;
  let answers = 0;
  down.on('message', (msg, from) => {
    client = from;
    queries++;
    if (queries % 9 === 0) return;
    up.send(msg, server, '127.0.0.1');
    if (queries % 5 === 0) up.send(msg, server, '127.0.0.1');
  });
  up.on('message', (msg) => {
    answers++;
    if (answers % 13 === 0 || !client) return;
    down.send(msg, client.port, client.address);
  });
  await new Promise<void>((r) => down.bind(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => up.bind(0, '127.0.0.1', () => r()));
  closers.push(() => {
    down.close();
    up.close();
  });
  return { port: down.address().port, queries: () => queries };
}

const SIZE = 200 * 1024;

test('200 KB through ladder server --dns-tunnel and a lossy resolver', { skip }, async () => {
  origin = await startOrigin();
  const port = await freePort();
  const dnsPort = await freePort();
  const key = formatSsUri({
    method: '2022-blake3-aes-256-gcm',
    password: randomBytes(32).toString('base64'),
    host: '127.0.0.1',
    port,
    dns: 't.lab',
  });
  assert.match(key, /[?&]dns=t\.lab/);
  const server = await startLadder(
    [
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      key,
      '--dns-tunnel',
      'T.Lab.',
      '--dns-tunnel-listen',
      `127.0.0.1:${dnsPort}`,
    ],
    /DNS tunnel for t\.lab on UDP 127\.0\.0\.1:\d+/,
  );
  peers.push(server);
  const resolver = await startForwarder(dnsPort);
  const socks = await freePort();
  const client = await startLadder(
    [
      'client',
      '--server',
      key,
      '--dns-tunnel-resolver',
      `127.0.0.1:${resolver.port}`,
      '--socks',
      `127.0.0.1:${socks}`,
      '--no-http',
    ],
    /carrying traffic/,
  );
  peers.push(client);
  assert.match(client.output(), /in a DNS tunnel under t\.lab/);
  const r = await curl(
    ['--socks5-hostname', `127.0.0.1:${socks}`, `http://127.0.0.1:${origin.port}/bytes/${SIZE}`],
    60,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.sha256, expectedHash(SIZE));
  // The bytes came in DNS answers: at ~900 bytes an answer, hundreds of queries.
  assert.ok(resolver.queries() > SIZE / 1200, `${resolver.queries()} queries`);
  // No query name (nor the domain) in what the server or the client print.
  assert.doesNotMatch(server.output() + client.output(), /[a-z2-7]{40,}/);
});

test('a session that never authenticates: no byte back, closed at --auth-timeout', async () => {
  const port = await freePort();
  const dnsPort = await freePort();
  const key = formatSsUri({
    method: '2022-blake3-aes-256-gcm',
    password: randomBytes(32).toString('base64'),
    host: '127.0.0.1',
    port,
  });
  const server = await startLadder(
    [
      'server',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      key,
      '--auth-timeout',
      '2',
      '--dns-tunnel',
      't.lab',
      '--dns-tunnel-listen',
      `127.0.0.1:${dnsPort}`,
    ],
    /DNS tunnel for t\.lab/,
  );
  peers.push(server);
  const s = dnsTunnelConnect({ host: '127.0.0.1', port: dnsPort }, { domain: 't.lab' });
  let received = 0;
  s.on('data', (c: Buffer) => (received += c.length));
  s.write(randomBytes(300));
  await new Promise<void>((resolve, reject) => {
    s.once('end', resolve);
    s.once('error', reject);
  });
  assert.equal(received, 0, 'the server wrote nothing before authentication');
  s.destroy();
});

test('usage errors: --dns-tunnel, --dns-tunnel-listen, dns= and --dns-tunnel-resolver', () => {
  const ladder = (...args: string[]): { status: number | null; stderr: string } => {
    const r = spawnSync(process.execPath, [LADDER_CLI, ...args], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    return { status: r.status, stderr: r.stderr };
  };
  const key = formatSsUri({
    method: '2022-blake3-aes-256-gcm',
    password: randomBytes(32).toString('base64'),
    host: '127.0.0.1',
    port: 1,
  });
  const bad = ladder('server', '--key', key, '--dns-tunnel', 'not_a.domain');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--dns-tunnel: the domain 'not_a\.domain' is not a host name/);
  const lonely = ladder('server', '--key', key, '--dns-tunnel-listen', '127.0.0.1:5353');
  assert.match(lonely.stderr, /--dns-tunnel-listen needs --dns-tunnel <domain>/);
  const badKey = ladder('client', '--server', `${key}?dns=a..b`, '--no-http');
  assert.match(badKey.stderr, /dns='a\.\.b' is not a tunnel domain/);
  const badResolver = ladder(
    'client',
    '--server',
    key,
    '--dns-tunnel-resolver',
    'nowhere',
    '--no-http',
  );
  assert.match(badResolver.stderr, /--dns-tunnel-resolver/);
});
