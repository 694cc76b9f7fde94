// `ladder client --tun` in network namespaces of its own (root and /dev/net/tun needed; skipped with
// the reason otherwise): a real `ladder server` in one, the client in the other, and ordinary
// programs with no proxy setting (curl, a UDP exchange, DNS queries over UDP and TCP) reaching a
// host by name. The server side counts what arrives: nothing but the Ladder flow. Then kill -9 (the
// kill switch holds), --tun-cleanup and SIGTERM (routing exactly as before), and bad input.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labUnavailable } from '../../src/lab/topology.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import { LADDER_CLI, startProcess, type Peer } from '../helpers/peers.js';
import {
  LADDER_PORT,
  ORIGIN_ADDR,
  ORIGIN_ADDR6,
  RESOLVER_ADDR,
  SERVER_ADDR,
  SERVER_ADDR6,
  inNs,
  startLadderClientIn,
  routingSnapshot,
  tunNetDown,
  tunNetSettled,
  tunNetUp,
  watchServerSide,
  type TunNet,
} from '../helpers/tun-net.js';

const why = labUnavailable() ?? (spawnSync('nft', ['-v']).status === 0 ? undefined : 'no nft');
if (why) console.log(`--tun lab tests skipped: ${why}`);
const prefix = process.env.LADDER_LAB_TEST_PREFIX ?? 'tn-';
const KEY = `ss://${Buffer.from('chacha20-ietf-poly1305:tun-test-secret').toString('base64')}@${SERVER_ADDR}:${LADDER_PORT}`;

const ORIGIN = `
import http from 'node:http'; import https from 'node:https'; import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
const dir = process.argv[2];
const h = (q, r) => r.end('origin says ' + q.url + '\\n');
http.createServer(h).listen(80, '${ORIGIN_ADDR}');
http.createServer(h).listen(80, '${ORIGIN_ADDR6}');
const u6 = dgram.createSocket('udp6');
u6.on('message', (m, ri) => u6.send(Buffer.concat([Buffer.from('echo6:'), m]), ri.port, ri.address));
u6.bind(7, '${ORIGIN_ADDR6}');
https.createServer({ cert: readFileSync(dir + '/cert.pem'), key: readFileSync(dir + '/key.pem') }, h)
  .listen(443, '${ORIGIN_ADDR}');
const u = dgram.createSocket('udp4');
u.on('message', (m, ri) => u.send(Buffer.concat([Buffer.from('echo:'), m]), ri.port, ri.address));
// A domestic name server for --dns-direct: every A query is answered with the origin's address.
const ns = dgram.createSocket('udp4');
ns.on('message', (q, ri) => {
  let i = 12;
  while (i < q.length && q[i] !== 0) i += q[i] + 1;
  i += 5;
  const a = q.readUInt16BE(i - 4) === 1;
  const h = Buffer.from(q.subarray(0, 12));
  h[2] = 0x81; h[3] = 0x80; h.writeUInt16BE(1, 4); h.writeUInt16BE(a ? 1 : 0, 6); h.fill(0, 8);
  const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...'${ORIGIN_ADDR}'.split('.').map(Number)]);
  ns.send(Buffer.concat([h, q.subarray(12, i), a ? rr : Buffer.alloc(0)]), ri.port, ri.address);
});
ns.bind(53, '${ORIGIN_ADDR}', () =>
  u.bind(7, '${ORIGIN_ADDR}', () => console.log('origin ready')));
`;

// DNS over UDP (node's resolver) and over TCP (by hand: RFC 1035 §4.2.2 framing) to an address
// where nothing listens, and a UDP exchange with the origin by name. Prints one JSON line.
const PROBE = `
import dns from 'node:dns'; import dgram from 'node:dgram'; import net from 'node:net';
const out = {};
const r = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
r.setServers(['${RESOLVER_ADDR}']);
try { out.udpDns = await r.resolve4('blocked.test'); } catch (e) { out.udpDns = e.code; }
try { out.aaaa = await r.resolve6('origin6.test'); } catch (e) { out.aaaa = e.code; }
const q = Buffer.from('12340100000100000000000007626c6f636b6564047465737400000100 01'.replace(/ /g, ''), 'hex');
out.tcpDns = await new Promise((res) => {
  const s = net.connect(53, '${RESOLVER_ADDR}');
  const len = Buffer.alloc(2); len.writeUInt16BE(q.length);
  s.on('connect', () => s.write(Buffer.concat([len, q])));
  let buf = Buffer.alloc(0);
  s.on('data', (d) => { buf = Buffer.concat([buf, d]);
    if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { s.destroy(); res(buf.subarray(buf.length - 4).join('.')); } });
  s.on('error', (e) => res(e.code)); s.setTimeout(3000, () => { s.destroy(); res('timeout'); });
});
out.udp = await new Promise((res) => {
  const u = dgram.createSocket('udp4');
  const t = setTimeout(() => { u.close(); res('timeout'); }, 3000);
  u.on('message', (m) => { clearTimeout(t); u.close(); res(String(m)); });
  u.on('error', (e) => { clearTimeout(t); u.close(); res(e.code); });
  u.send('ping', 7, 'origin.test');
});
// UDP over IPv6 by name: the name's fake IPv6 address, through the tunnel to the origin's IPv6.
out.udp6 = await new Promise((res) => {
  const u = dgram.createSocket('udp6');
  const t = setTimeout(() => { u.close(); res('timeout'); }, 3000);
  u.on('message', (m) => { clearTimeout(t); u.close(); res(String(m)); });
  u.on('error', (e) => { clearTimeout(t); u.close(); res(e.code); });
  dns.promises.lookup('origin6.test', { family: 6 }).then(
    (a) => u.send('ping', 7, a.address), (e) => { clearTimeout(t); u.close(); res(e.code); });
});
console.log(JSON.stringify(out));
`;

// One UDP exchange with argv[1] port 7 over argv[2] (udp4 or udp6), by name: the app's lookup is
// answered by the tunnel's fake DNS.
const UDP_PING = `
const u = require('node:dgram').createSocket(process.argv[2]);
const t = setTimeout(() => { u.close(); console.log('timeout'); }, 3000);
u.on('message', (m) => { clearTimeout(t); u.close(); console.log(String(m)); });
u.send('ping', 7, process.argv[1]);
`;

/** Waits for `cond`, one event-loop turn at a time; fails after `limit` turns of a few ms. */
async function until(cond: () => boolean, what: string, limit = 2000): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

interface ProbeResult {
  udpDns: string[] | string;
  aaaa: string[] | string;
  udp6: string;
  tcpDns: string;
  udp: string;
}

function inFakeRange(a: string): boolean {
  const [x, y] = a.split('.').map(Number);
  return x === 100 && y! >= 96 && y! < 112;
}

describe('ladder client --tun in namespaces', { skip: why ?? false, timeout: 180_000 }, () => {
  let net: TunNet;
  let dir: string;
  const peers: Peer[] = [];
  let client: Peer | undefined;
  let before0 = '';
  let watch: ReturnType<typeof watchServerSide>;

  const cli = (args: string[], timeoutMs = 20_000) =>
    inNs(net.client, [process.execPath, LADDER_CLI, 'client', ...args], timeoutMs);
  const startClient = async (extra: string[] = []): Promise<Peer> =>
    startLadderClientIn(net.client, ['--server', KEY, '--tun', ...extra], /tunnel up/, 20_000);
  const curl = (url: string, ...args: string[]) =>
    inNs(net.client, ['curl', '-sS', '--max-time', '5', ...args, url]);

  before(async () => {
    net = tunNetUp(prefix);
    dir = mkdtempSync(join(tmpdir(), 'ladder-tun-'));
    const cert = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=origin.test',
      '-addext',
      'subjectAltName=DNS:origin.test',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    assert.equal(cert.status, 0, String(cert.stderr));
    writeFileSync(join(dir, 'origin.mjs'), ORIGIN);
    writeFileSync(join(dir, 'probe.mjs'), PROBE);
    writeFileSync(
      join(dir, 'hosts'),
      `${ORIGIN_ADDR} origin.test blocked.test\n${ORIGIN_ADDR6} origin6.test\n`,
    );
    await tunNetSettled(net);
    assert.equal(curl(`http://[${SERVER_ADDR6}]:1/`).status, 7, 'IPv6 reaches the server side');
    before0 = routingSnapshot(net.client);
    peers.push(
      await startProcess(
        ['ip', 'netns', 'exec', net.server, process.execPath, join(dir, 'origin.mjs'), dir],
        /origin ready/,
      ),
    );
    peers.push(
      await startProcess(
        [
          'ip',
          'netns',
          'exec',
          net.server,
          process.execPath,
          LADDER_CLI,
          'server',
          '--listen',
          `${SERVER_ADDR}:${LADDER_PORT}`,
          '--key',
          KEY,
          '--hosts',
          join(dir, 'hosts'),
          '--allow-private-targets',
        ],
        /listening/,
      ),
    );
    watch = watchServerSide(net);
  });

  after(async () => {
    if (client) await client.stop();
    for (const p of peers) await p.stop();
    if (net) tunNetDown(net);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('apps with no proxy setting reach a host by name; only the Ladder flow leaves', async () => {
    client = await startClient();
    const http = curl('http://origin.test/hello');
    assert.equal(http.stdout, 'origin says /hello\n', http.stderr);
    const tls = curl('https://origin.test/tls', '--cacert', join(dir, 'cert.pem'));
    assert.equal(tls.stdout, 'origin says /tls\n', tls.stderr);
    const byIp = curl(`http://${ORIGIN_ADDR}/ip`);
    assert.equal(byIp.stdout, 'origin says /ip\n', byIp.stderr);
    const probe = inNs(net.client, [process.execPath, join(dir, 'probe.mjs')]);
    const r = JSON.parse(probe.stdout) as ProbeResult;
    assert.ok(
      Array.isArray(r.udpDns) && r.udpDns.length === 1 && inFakeRange(r.udpDns[0]!),
      probe.stdout,
    );
    assert.ok(inFakeRange(r.tcpDns), `DNS over TCP answered with a fake address: ${r.tcpDns}`);
    assert.equal(r.udp, 'echo:ping');
    // IPv6 is carried: a fake IPv6 address for a name, by name and as a literal, TCP and UDP.
    assert.ok(
      Array.isArray(r.aaaa) && r.aaaa.length === 1 && r.aaaa[0]!.startsWith('fd4c:6164:6472:1:'),
      probe.stdout,
    );
    const byName6 = curl('http://origin6.test/v6', '-6');
    assert.equal(byName6.stdout, 'origin says /v6\n', byName6.stderr);
    const literal6 = curl(`http://[${ORIGIN_ADDR6}]/v6lit`);
    assert.equal(literal6.stdout, 'origin says /v6lit\n', literal6.stderr);
    assert.equal(r.udp6, 'echo6:ping');
    // ping through the tunnel: refused at once (no transport carries ICMP), not left to time out.
    for (const [family, name] of [
      ['-4', 'origin.test'],
      ['-6', 'origin6.test'],
    ] as const) {
      const ping = inNs(net.client, ['ping', family, '-c', '1', '-W', '10', name]);
      assert.notEqual(ping.status, 0);
      assert.match(ping.stdout, /filtered|prohibited/i, `${name}: ${ping.stdout}${ping.stderr}`);
    }
    const seen = watch();
    assert.ok(seen.ladder > 0, 'the Ladder flow is seen');
    assert.equal(
      seen.other,
      0,
      `nothing but the Ladder flow reaches the server side: ${seen.what}`,
    );
  });

  test('a second --tun in the namespace is refused, and the first keeps working', () => {
    const same = cli(['--server', KEY, '--tun']);
    assert.equal(same.status, 1);
    assert.match(same.stderr, /already running|in use/);
    const other = cli(['--server', KEY, '--tun', '--tun-name', 'ladder9']);
    assert.equal(other.status, 1);
    assert.match(other.stderr, /already running/);
    assert.equal(curl('http://origin.test/still').stdout, 'origin says /still\n');
  });

  test('after kill -9 nothing gets out; --tun-cleanup restores routing exactly', async () => {
    assert.ok(client);
    process.kill(client.pid, 'SIGKILL');
    await client.stop();
    client = undefined;
    const otherBefore = watch().other;
    assert.notEqual(curl(`http://${ORIGIN_ADDR}/leak`).status, 0);
    assert.notEqual(curl(`http://${SERVER_ADDR}/leak`).status, 0);
    assert.notEqual(curl(`http://[${ORIGIN_ADDR6}]/leak`).status, 0);
    assert.notEqual(curl(`http://[${SERVER_ADDR6}]/leak`).status, 0);
    const probe = JSON.parse(
      inNs(net.client, [process.execPath, join(dir, 'probe.mjs')]).stdout,
    ) as ProbeResult;
    assert.ok(!Array.isArray(probe.udpDns), 'no DNS answer with the tunnel down');
    const seen = watch();
    assert.equal(seen.other, otherBefore, `the kill switch held: ${seen.what}`);
    assert.notEqual(routingSnapshot(net.client), before0, 'the kill switch rules are in place');
    const c1 = cli(['--tun-cleanup']);
    assert.equal(c1.status, 0, c1.stderr);
    assert.match(c1.stdout, /removed/);
    assert.equal(routingSnapshot(net.client), before0);
    const c2 = cli(['--tun-cleanup']);
    assert.equal(c2.status, 0, c2.stderr);
    assert.match(c2.stdout, /nothing left/);
  });

  test('the next --tun start cleans up after kill -9 itself; SIGTERM restores routing', async () => {
    let c = await startClient();
    process.kill(c.pid, 'SIGKILL');
    await c.stop();
    c = await startClient();
    assert.equal(curl('http://origin.test/again').stdout, 'origin says /again\n');
    await c.stop(); // SIGTERM
    assert.match(c.output(), /routing restored/);
    assert.equal(routingSnapshot(net.client), before0);
  });

  test('--rules: a DIRECT rule goes around the tunnel, the rest through it', async () => {
    writeFileSync(join(dir, 'rules'), `IP-CIDR,${ORIGIN_ADDR}/32,DIRECT,no-resolve\nMATCH,PROXY\n`);
    // --dns-remote: an address of the lab's where nothing answers (rules here need no lookup)
    const c = await startClient([
      '--rules',
      join(dir, 'rules'),
      '--dns-remote',
      `${ORIGIN_ADDR}:53`,
    ]);
    try {
      const before = watch();
      const direct = curl(`http://${ORIGIN_ADDR}/direct`);
      assert.equal(direct.stdout, 'origin says /direct\n', direct.stderr);
      const mid = watch();
      assert.ok(mid.other > before.other, 'the DIRECT connection went around the tunnel');
      const proxied = curl('http://origin.test/proxied');
      assert.equal(proxied.stdout, 'origin says /proxied\n', proxied.stderr);
      assert.equal(watch().other, mid.other, 'the name went through the tunnel');
    } finally {
      await c.stop();
    }
    assert.equal(routingSnapshot(net.client), before0);
  });

  test('--rules: a DIRECT name is resolved by --dns-direct and reached, both around the tunnel', async () => {
    // The app's own lookup is answered by the tunnel's fake DNS; the client then resolves the name
    // for DIRECT at the domestic name server, from a socket that bypasses the device.
    writeFileSync(join(dir, 'rules-name'), 'DOMAIN,origin.test,DIRECT\nMATCH,PROXY\n');
    const c = await startClient([
      '--rules',
      join(dir, 'rules-name'),
      '--dns-direct',
      `${ORIGIN_ADDR}:53`,
      '--dns-remote',
      `${ORIGIN_ADDR}:53`,
      '--log-connections',
    ]);
    try {
      const before = watch();
      const r = curl('http://origin.test/direct-by-name');
      assert.equal(r.stdout, 'origin says /direct-by-name\n', `${r.stderr}\n${c.output()}`);
      assert.ok(watch().other > before.other, 'the DIRECT name went around the tunnel');
      // UDP follows the rules too: origin.test direct, origin6.test (MATCH) through the tunnel.
      const mid = watch();
      const u = inNs(net.client, [process.execPath, '-e', UDP_PING, 'origin.test', 'udp4']);
      assert.equal(u.stdout.trim(), 'echo:ping', `${u.stderr}\n${c.output()}`);
      assert.ok(watch().other > mid.other, 'the DIRECT UDP flow went around the tunnel');
      const after6 = watch();
      const u6 = inNs(net.client, [process.execPath, '-e', UDP_PING, 'origin6.test', 'udp6']);
      assert.equal(u6.stdout.trim(), 'echo6:ping', `${u6.stderr}\n${c.output()}`);
      assert.equal(watch().other, after6.other, 'the PROXY UDP flow went through the tunnel');
      // inNs blocked this loop: the client's lines are read now.
      await until(() => /route udp origin6\.test:7 → PROXY /.test(c.output()), 'the log');
      assert.match(c.output(), /route udp origin\.test:7 → DIRECT via /);
      assert.match(c.output(), /route udp origin6\.test:7 → PROXY \(.*rules-name:2 MATCH,PROXY\)/);
    } finally {
      await c.stop();
    }
    assert.equal(routingSnapshot(net.client), before0);
  });

  test('UDP through Trojan and through Trojan with Mux.Cool, over IPv4 and IPv6', async () => {
    const password = 'tun-trojan-secret';
    const trojanPort = LADDER_PORT + 1;
    const server = await startProcess(
      [
        'ip',
        'netns',
        'exec',
        net.server,
        process.execPath,
        LADDER_CLI,
        'server',
        '--listen',
        `${SERVER_ADDR}:${trojanPort}`,
        '--key',
        formatTrojanUri({ password, host: SERVER_ADDR, port: trojanPort, sni: 'localhost' }),
        '--hosts',
        join(dir, 'hosts'),
        '--allow-private-targets',
      ],
      /listening/,
    );
    try {
      const pin = /pin=([0-9a-f]{64})/.exec(server.output())?.[1];
      assert.ok(pin, server.output());
      for (const mux of [0, 4]) {
        const key = formatTrojanUri({
          password,
          host: SERVER_ADDR,
          port: trojanPort,
          sni: 'localhost',
          pinSha256: pin,
          ...(mux ? { mux } : {}),
        });
        const c = await startLadderClientIn(
          net.client,
          ['--server', key, '--tun'],
          /tunnel up/,
          20_000,
        );
        try {
          const probe = inNs(net.client, [process.execPath, join(dir, 'probe.mjs')]);
          const r = JSON.parse(probe.stdout) as ProbeResult;
          assert.equal(r.udp, 'echo:ping', `mux ${mux}: ${probe.stdout}`);
          assert.equal(r.udp6, 'echo6:ping', `mux ${mux}: ${probe.stdout}`);
        } finally {
          await c.stop();
        }
      }
    } finally {
      await server.stop();
    }
    assert.equal(routingSnapshot(net.client), before0);
  });

  test("--ui with --tun: the page and the Clash API show the tunnel's connections", async () => {
    const c = await startLadderClientIn(
      net.client,
      ['--server', KEY, '--tun', '--ui', '127.0.0.1:9090', '--ui-keys', join(dir, 'ui-keys.json')],
      /control page at/,
      20_000,
    );
    // An app's connection through the tunnel, held open until its stdin closes (bounded: 20 s).
    const holder = spawn(
      'ip',
      [
        'netns',
        'exec',
        net.client,
        process.execPath,
        '-e',
        "const s = require('net').connect(80, 'origin.test', () => console.log('open')); s.on('error', () => process.exit(1)); process.stdin.on('end', () => process.exit(0)); process.stdin.resume(); setTimeout(() => process.exit(2), 20000);",
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      assert.match(c.output(), /tunnel up/);
      const token = /#token=([A-Za-z0-9_-]+)/.exec(c.output())?.[1];
      assert.ok(token, c.output());
      const http = curl('http://origin.test/ui');
      assert.equal(http.stdout, 'origin says /ui\n', http.stderr);
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.on('data', (d: Buffer) => String(d).includes('open') && resolve());
        holder.once('exit', (code) => reject(new Error(`the app's connection ended: ${code}`)));
      });
      const api = curl('http://127.0.0.1:9090/connections', '-H', `Authorization: Bearer ${token}`);
      const body = JSON.parse(api.stdout) as {
        downloadTotal: number;
        connections: { metadata: { host: string; destinationPort: string } }[];
      };
      assert.ok(body.downloadTotal > 0, api.stdout);
      assert.ok(
        body.connections.some((x) => x.metadata.host === 'origin.test'),
        `the app's open connection is listed: ${api.stdout}`,
      );
    } finally {
      holder.stdin!.end();
      if (holder.exitCode === null) await new Promise((r) => holder.once('exit', r));
      await c.stop();
    }
    assert.equal(routingSnapshot(net.client), before0);
  });

  test('an unreachable server: connections fail, nothing takes another route', async () => {
    const server = peers.pop()!; // the ladder server, started last
    await server.stop();
    const c = await startClient();
    try {
      const otherBefore = watch().other;
      const r = curl('http://origin.test/unreachable');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /reset|Empty reply|Recv failure/i);
      const seen = watch();
      assert.equal(seen.other, otherBefore, `nothing around the tunnel: ${seen.what}`);
    } finally {
      await c.stop();
    }
    assert.equal(routingSnapshot(net.client), before0);
  });

  test('bad input: a clear message and nothing left behind', () => {
    const mtu = cli(['--server', KEY, '--tun', '--tun-mtu', '100']);
    assert.equal(mtu.status, 2);
    assert.match(mtu.stderr, /--tun-mtu '100' must be 576 to 65535/);
    const name = cli(['--server', KEY, '--tun', '--tun-name', 'bad/name']);
    assert.equal(name.status, 2);
    assert.match(name.stderr, /--tun-name/);
    const noAdmin = inNs(net.client, [
      'setpriv',
      '--bounding-set',
      '-net_admin',
      process.execPath,
      LADDER_CLI,
      'client',
      '--server',
      KEY,
      '--tun',
    ]);
    assert.equal(noAdmin.status, 1);
    assert.match(noAdmin.stderr, /CAP_NET_ADMIN.*sudo/s);
    assert.equal(routingSnapshot(net.client), before0);
  });
});
