// Pure tests (no root): packet codecs, FET Algorithm 1, blocklist styles, ClientHello and HTTP
// parsing, DNS forging, and the engine's decisions on constructed packets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeIpHeader, ipv6Bytes, ipv6String } from '../../src/lab/packet/ip.js';
import {
  buildTcpPacket,
  buildUdpPacket,
  decodeTcpHeader,
  l4ChecksumOk,
  TCP_FLAG,
} from '../../src/lab/packet/l4.js';
import {
  buildForgedAnswer,
  buildQuery,
  decodeAnswers,
  decodeDnsQuestion,
  DNS_TYPE,
} from '../../src/lab/packet/dns.js';
import { parseClientHello } from '../../src/lab/packet/tls-client-hello.js';
import { parseHttpRequestHead } from '../../src/lab/packet/http-request.js';
import { fetExemption } from '../../src/lab/modules/fet.js';
import { nameMatcher } from '../../src/lab/modules/names.js';
import { wireGuardType, WireGuardScorer } from '../../src/lab/modules/wireguard.js';
import { OpenVpnScorer } from '../../src/lab/modules/openvpn.js';
import { classifyServer, replayProbes } from '../../src/lab/modules/prober.js';
import { CensorEngine, prefixMatcher } from '../../src/lab/censor/engine.js';
import { seededRandom } from '../../src/lab/censor/run.js';
import { buildModules, modulePolicy } from '../../src/lab/policy.js';
import { planLab, upCommands } from '../../src/lab/topology.js';
import { nodeClientHelloRecord } from '../../src/lab/packet/node-hello.js';

const C = '198.18.1.2';
const S = '198.19.2.10';

test('IPv4/TCP packets round-trip with valid checksums; a flipped byte breaks the checksum', () => {
  const pkt = buildTcpPacket({
    ip: { src: C, dst: S, protocol: 6, ttl: 64, id: 7, df: true },
    srcPort: 40000,
    dstPort: 443,
    seq: 0xfffffff0,
    ack: 5,
    flags: TCP_FLAG.PSH | TCP_FLAG.ACK,
    payload: Buffer.from('hello'),
  });
  const ip = decodeIpHeader(pkt, 0)!.value;
  assert.deepEqual(
    [ip.version, ip.src, ip.dst, ip.protocol, ip.ttl, ip.id, ip.df],
    [4, C, S, 6, 64, 7, true],
  );
  const tcp = decodeTcpHeader(pkt, ip.headerLength)!.value;
  assert.deepEqual([tcp.srcPort, tcp.dstPort, tcp.seq, tcp.ack], [40000, 443, 0xfffffff0, 5]);
  assert.ok(l4ChecksumOk(pkt, 4, 6, 20, ip.payloadLength));
  pkt[pkt.length - 1] = pkt[pkt.length - 1]! ^ 1;
  assert.ok(!l4ChecksumOk(pkt, 4, 6, 20, ip.payloadLength));
  // every strict prefix is "need more bytes", never an exception
  for (let i = 0; i < pkt.length; i++) assert.equal(decodeIpHeader(pkt.subarray(0, i), 0), null);
});

test('IPv6 text and bytes agree (RFC 5952 compression) and UDP over IPv6 checksums verify', () => {
  for (const a of ['2001:2:0:1::2', '2001:2::', '::1', '2001:2:0:fe::a', '1:2:3:4:5:6:7:8'])
    assert.equal(ipv6String(ipv6Bytes(a), 0), a);
  const pkt = buildUdpPacket({
    ip: { src: '2001:2:0:1::2', dst: '2001:2:0:2::2', protocol: 17, ttl: 64 },
    srcPort: 5,
    dstPort: 53,
    payload: Buffer.from('x'),
  });
  const ip = decodeIpHeader(pkt, 0)!.value;
  assert.equal(ip.src, '2001:2:0:1::2');
  assert.ok(l4ChecksumOk(pkt, 6, 17, 40, ip.payloadLength));
});

test('FET Algorithm 1: each exemption rule and the non-exempt case (§1)', () => {
  const rnd = seededRandom(1);
  const random = (n: number) =>
    Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  // uniformly random data is almost never exempt: count over 200 samples
  let exempt = 0;
  for (let i = 0; i < 200; i++) if (fetExemption(random(300)) !== undefined) exempt++;
  assert.ok(exempt < 10, `random payloads exempt: ${exempt}/200`);
  assert.equal(fetExemption(Buffer.alloc(100, 0x00)), 'Ex1'); // popcount 0
  assert.equal(fetExemption(Buffer.alloc(100, 0xff)), 'Ex1'); // popcount 8
  const pre = random(300);
  pre.write('ABCDEF', 0, 'latin1');
  assert.equal(fetExemption(pre), fetExemption(pre) === 'Ex1' ? 'Ex1' : 'Ex2');
  const five = random(300);
  five.write('ABCDE', 0, 'latin1');
  five[5] = 0x80;
  assert.notEqual(fetExemption(five), 'Ex2'); // five printable bytes are not enough
  const tls = random(300);
  tls.set([0x16, 0x03, 0x01]);
  assert.ok(['Ex5', 'Ex1'].includes(fetExemption(tls)!));
  tls[2] = 0x0a; // paper regex: minor ≤ 0x09
  assert.notEqual(fetExemption(tls), 'Ex5');
  const alert = random(300);
  alert.set([0x15, 0x03, 0x03]); // TLS alert is not exempt (§1 note)
  assert.notEqual(fetExemption(alert), 'Ex5');
  const run = random(300);
  run.fill(0x41, 100, 122); // a 22-byte printable run
  assert.ok(fetExemption(run) !== undefined);
});

test('blocklist styles: domain and subdomains by default, raw regex with re:', () => {
  const m = nameMatcher(['blocked.lab', 're:^exact\\.lab$']);
  assert.ok(m('blocked.lab') && m('www.blocked.lab') && m('BLOCKED.LAB.'));
  assert.ok(!m('notblocked.lab') && !m('blocked.lab.example'));
  assert.ok(m('exact.lab') && !m('www.exact.lab'));
});

const realClientHello = nodeClientHelloRecord;

test("ClientHello SNI from Node's own TLS client; split records hide it; incomplete is null (§6)", async () => {
  const ch = await realClientHello('www.blocked.lab');
  const info = parseClientHello(ch);
  assert.equal(info?.sni, 'www.blocked.lab');
  assert.ok(info!.cipherSuites.length > 0);
  assert.equal(parseClientHello(ch.subarray(0, ch.length - 1)), null);
  // re-frame the handshake into two records split 20 bytes in: the SNI is past the first record
  const hs = ch.subarray(5);
  const rec = (b: Buffer) =>
    Buffer.concat([Buffer.from([0x16, 0x03, 0x01, b.length >> 8, b.length & 0xff]), b]);
  const split = Buffer.concat([rec(hs.subarray(0, 20)), rec(hs.subarray(20))]);
  assert.equal(parseClientHello(split)?.sni, undefined);
  assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')), undefined);
});

test('HTTP head: Host without port, %-decoded path; incomplete head is null (§5)', () => {
  const h = parseHttpRequestHead(
    Buffer.from('GET /a%20b?q=%E6%B3%95 HTTP/1.1\r\nCookie: x\r\nHost: Blocked.LAB:8080\r\n\r\n'),
  );
  assert.equal(h?.host, 'blocked.lab');
  assert.equal(h?.path, '/a b?q=法');
  assert.equal(parseHttpRequestHead(Buffer.from('GET / HTTP/1.1\r\nHost: a')), null);
  assert.equal(parseHttpRequestHead(Buffer.from([0x16, 3, 1, 0, 5])), undefined);
});

test('forged DNS answers follow the published format: A for any non-AAAA QTYPE, flags by RD (§4)', () => {
  for (const [qtype, want, len] of [
    [DNS_TYPE.A, DNS_TYPE.A, 4],
    [DNS_TYPE.TXT, DNS_TYPE.A, 4],
    [DNS_TYPE.AAAA, DNS_TYPE.AAAA, 16],
  ] as const) {
    const q = buildQuery(0x1234, 'www.blocked.lab', qtype);
    const parsed = decodeDnsQuestion(q, 0)!.value;
    const a = buildForgedAnswer(q, parsed, new Uint8Array(len).fill(9), 100);
    assert.equal(a.readUInt16BE(0), 0x1234);
    assert.equal(a.readUInt16BE(2), 0x8180); // RD was set
    const d = decodeAnswers(a);
    assert.equal(d.answers.length, 1);
    assert.equal(d.answers[0]!.type, want);
    assert.equal(d.answers[0]!.rdata.length, len);
  }
  const noRd = buildQuery(1, 'x.lab', DNS_TYPE.A);
  noRd.writeUInt16BE(0, 2);
  assert.equal(
    buildForgedAnswer(noRd, decodeDnsQuestion(noRd, 0)!.value, new Uint8Array(4), 1).readUInt16BE(
      2,
    ),
    0x8400,
  );
});

test('WireGuard and OpenVPN scorers on constructed message sequences (§10, §11)', () => {
  const init = Buffer.alloc(148);
  init[0] = 1;
  init.writeUInt32LE(0xabcdef01, 4);
  const resp = Buffer.alloc(92);
  resp[0] = 2;
  resp.writeUInt32LE(0x11111111, 4);
  resp.writeUInt32LE(0xabcdef01, 8);
  assert.equal(wireGuardType(init), 1);
  assert.equal(wireGuardType(Buffer.alloc(147, 1)), 0);
  const wg = new WireGuardScorer();
  wg.add(true, init);
  assert.ok(!wg.flagged);
  wg.add(false, resp);
  assert.ok(wg.flagged);
  const notWg = new WireGuardScorer();
  notWg.add(true, Buffer.alloc(148, 1));
  notWg.add(false, Buffer.alloc(92, 2));
  assert.ok(!notWg.flagged);
  // OpenVPN over UDP: client HARD_RESET_CLIENT_V2 (0x38), server HARD_RESET_SERVER_V2 (0x40), then
  // CONTROL_V1 (0x20), ACK_V1 (0x28) and DATA_V2 (0x48): five opcodes, no reset again.
  const ovpn = new OpenVpnScorer(false);
  ovpn.add(true, Buffer.from([0x38, 1, 2]));
  ovpn.add(false, Buffer.from([0x40, 1, 2]));
  const rest = [0x20, 0x28, 0x20, 0x28, 0x48];
  for (let i = 0; i < 98; i++)
    ovpn.add(i % 2 === 0, Buffer.from([rest[i % rest.length]!, 0, 0, 0]));
  assert.ok(ovpn.done && ovpn.opcodeMatch());
  const random = new OpenVpnScorer(false);
  const rnd = seededRandom(3);
  for (let i = 0; i < 100; i++) random.add(i % 2 === 0, Buffer.from([Math.floor(rnd() * 256), 0]));
  assert.ok(
    !random.opcodeMatch(),
    'random first bytes show more than 10 opcodes or repeat a reset',
  );
});

test('active-probe catalogue and classification (§2)', () => {
  const first = Buffer.alloc(200, 7);
  const p = replayProbes(first, seededRandom(5));
  assert.deepEqual(
    p.map((x) => x.name),
    ['R1', 'R2', 'R3', 'R4', 'R5'],
  );
  assert.deepEqual(p[0]!.payload, first);
  assert.notEqual(p[1]!.payload[0], 7);
  assert.equal(p[1]!.payload[1], 7);
  assert.ok(classifyServer([{ probe: 'R1', length: 200, reaction: 'DATA' }]).confirmed);
  const threshold = [8, 12, 16, 22, 33, 41, 49, 221].map(
    (length) => ({ probe: 'NR1', length, reaction: length < 50 ? 'TIMEOUT' : 'RST' }) as const,
  );
  assert.ok(classifyServer(threshold).confirmed);
  const uniform = threshold.map((r) => ({ ...r, reaction: 'TIMEOUT' as const }));
  assert.ok(!classifyServer(uniform).confirmed);
});

test('topology plan: names share the prefix, addresses only from 198.18.0.0/15 and 2001:2::/48', () => {
  const plan = planLab('ldrx-');
  assert.ok(Object.values(plan.ns).every((n) => n.startsWith('ldrx-')));
  const inLab = [prefixMatcher('198.18.0.0/15'), prefixMatcher('2001:2::/48')];
  for (const c of upCommands(plan)) {
    for (const w of c) {
      const m = /^([0-9a-f:.]+)\/\d+$/.exec(w);
      if (m && (m[1]!.includes('.') || m[1]!.includes(':')))
        assert.ok(
          inLab.some((f) => f(m[1]!)),
          `address outside the lab space: ${w}`,
        );
    }
    assert.ok(!c.includes('0.0.0.0/0'));
  }
  assert.throws(() => planLab('Bad'));
});

/** A tiny harness: the engine with a module policy, packets in, packets out. */
function harness(policy: ReturnType<typeof modulePolicy>) {
  const out: Buffer[] = [];
  const events: string[] = [];
  const engine = new CensorEngine({
    modules: buildModules(policy),
    send: (p) => out.push(Buffer.from(p)),
    inside: ['198.18.0.0/16'],
    random: seededRandom(42),
    onEvent: (e) => events.push(`${e.module}/${e.action}`),
  });
  const seg = (
    c2s: boolean,
    seq: number,
    ack: number,
    flags: number,
    payload?: Buffer,
    cport = 40000,
  ) =>
    buildTcpPacket({
      ip: { src: c2s ? C : S, dst: c2s ? S : C, protocol: 6, ttl: 64 },
      srcPort: c2s ? cport : 443,
      dstPort: c2s ? 443 : cport,
      seq,
      ack,
      flags,
      payload,
    });
  return { engine, out, events, seg };
}

test('engine + sni: a blocked SNI draws RSTs with valid sequence numbers to both ends, then the residual resets the 3-tuple (§6)', async () => {
  const plan = planLab('ldrx-');
  const h = harness(modulePolicy('sni', plan));
  const ch = await realClientHello('blocked.lab');
  h.engine.handle(h.seg(true, 1000, 0, TCP_FLAG.SYN));
  h.engine.handle(h.seg(false, 5000, 1001, TCP_FLAG.SYN | TCP_FLAG.ACK));
  h.engine.handle(h.seg(true, 1001, 5001, TCP_FLAG.ACK));
  // the ClientHello in two TCP segments: the censor reassembles TCP (§0)
  h.out.length = 0;
  h.engine.handle(h.seg(true, 1001, 5001, TCP_FLAG.ACK, ch.subarray(0, 30)));
  assert.equal(h.out.length, 1, 'first segment forwarded, nothing injected yet');
  h.engine.handle(h.seg(true, 1031, 5001, TCP_FLAG.ACK | TCP_FLAG.PSH, ch.subarray(30)));
  const rsts = h.out
    .map((p) => ({ ip: decodeIpHeader(p, 0)!.value, tcp: decodeTcpHeader(p, 20)!.value }))
    .filter((x) => x.tcp.flags & TCP_FLAG.RST);
  assert.equal(rsts.length, 6, 'type II injector: three RST+ACK each way');
  const toServer = rsts.filter((r) => r.ip.dst === S);
  const toClient = rsts.filter((r) => r.ip.dst === C);
  assert.ok(toServer.every((r) => r.tcp.seq === 1001 + ch.length && r.ip.df));
  assert.ok(toClient.every((r) => r.tcp.seq === 5001));
  assert.deepEqual(h.events, ['sni/reset']);
  // a new connection on the same 3-tuple with an innocuous payload is reset at its first data
  h.out.length = 0;
  h.engine.handle(h.seg(true, 9000, 0, TCP_FLAG.SYN, undefined, 40001));
  assert.equal(h.out.length, 1, 'SYN passes during the residual');
  h.engine.handle(
    h.seg(true, 9001, 7001, TCP_FLAG.ACK | TCP_FLAG.PSH, Buffer.from('hello'), 40001),
  );
  assert.ok(h.out.some((p) => decodeTcpHeader(p, 20)!.value.flags & TCP_FLAG.RST));
  assert.ok(h.events.includes('sni/residual-reset'));
});

test('engine + sni: an allowed SNI passes untouched', async () => {
  const h = harness(modulePolicy('sni', planLab('ldrx-')));
  const ch = await realClientHello('allowed.lab');
  h.engine.handle(h.seg(true, 1000, 0, TCP_FLAG.SYN));
  h.engine.handle(h.seg(true, 1001, 5001, TCP_FLAG.ACK | TCP_FLAG.PSH, ch));
  assert.equal(h.out.length, 2);
  assert.deepEqual(h.events, []);
});

test('engine + fet p=1: a random first payload null-routes the 3-tuple; a printable prefix is exempt (§1)', () => {
  const plan = planLab('ldrx-');
  const pol = modulePolicy('fet', plan, { p: 1, targetPrefixes: ['198.19.2.0/24'] });
  const rnd = seededRandom(9);
  const data = Buffer.from(Array.from({ length: 300 }, () => Math.floor(rnd() * 256)));
  assert.equal(fetExemption(data), undefined, 'the seeded random payload must not be exempt');
  const h = harness(pol);
  h.engine.handle(h.seg(true, 1, 0, TCP_FLAG.SYN));
  h.engine.handle(h.seg(true, 2, 9, TCP_FLAG.ACK | TCP_FLAG.PSH, data));
  assert.equal(h.out.length, 1, 'the random first payload was dropped');
  assert.deepEqual(h.events, ['fet/block']);
  h.engine.handle(h.seg(true, 100, 0, TCP_FLAG.SYN, undefined, 40002));
  assert.equal(h.out.length, 1, 'a new SYN on the 3-tuple is dropped (residual, no RST)');
  const h2 = harness(pol);
  const pre = Buffer.from(data);
  pre.write('GETXYZ', 0, 'latin1');
  h2.engine.handle(h2.seg(true, 1, 0, TCP_FLAG.SYN));
  h2.engine.handle(h2.seg(true, 2, 9, TCP_FLAG.ACK | TCP_FLAG.PSH, pre));
  assert.equal(h2.out.length, 2);
  assert.deepEqual(h2.events, []);
});

test('engine + fet p=0.263: the blocked fraction over 2000 independent flows is near 26.3%', () => {
  const plan = planLab('ldrx-');
  const h = harness(
    modulePolicy('fet', plan, { targetPrefixes: ['198.19.2.0/24'], residualSeconds: 0 }),
  );
  const rnd = seededRandom(11);
  let blocked = 0;
  const N = 2000;
  for (let i = 0; i < N; i++) {
    const data = Buffer.from(Array.from({ length: 200 }, () => Math.floor(rnd() * 256)));
    const before = h.out.length;
    h.engine.handle(h.seg(true, 1, 0, TCP_FLAG.SYN, undefined, 10000 + i));
    h.engine.handle(h.seg(true, 2, 9, TCP_FLAG.ACK | TCP_FLAG.PSH, data, 10000 + i));
    if (h.out.length - before === 1) blocked++;
  }
  const rate = blocked / N;
  assert.ok(Math.abs(rate - 0.263) < 0.04, `blocked ${rate}`);
});

test('engine + dns: a blocked name draws forged answers from the queried address, and the query still goes on (§4)', () => {
  const h = harness(modulePolicy('dns', planLab('ldrx-')));
  const q = buildQuery(77, 'www.blocked.lab', DNS_TYPE.TXT);
  h.engine.handle(
    buildUdpPacket({
      ip: { src: C, dst: '198.19.2.53', protocol: 17, ttl: 61 },
      srcPort: 5353,
      dstPort: 53,
      payload: q,
    }),
  );
  const forged = h.out.filter((p) => decodeIpHeader(p, 0)!.value.src === '198.19.2.53');
  assert.equal(forged.length, 2);
  assert.equal(h.out.length, 3, 'the genuine query is forwarded too');
  assert.equal(decodeIpHeader(forged[0]!, 0)!.value.ttl, 61, 'one injector mirrors the query TTL');
  const ans = decodeAnswers(forged[0]!.subarray(28));
  assert.equal(ans.answers[0]!.type, DNS_TYPE.A, 'a TXT query gets an A answer');
  h.out.length = 0;
  h.engine.handle(
    buildUdpPacket({
      ip: { src: C, dst: '198.19.2.53', protocol: 17, ttl: 61 },
      srcPort: 5354,
      dstPort: 53,
      payload: buildQuery(78, 'allowed.lab', DNS_TYPE.A),
    }),
  );
  assert.equal(h.out.length, 1);
});
