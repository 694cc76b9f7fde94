// Pure tests (no root) of the 2024–2026 censor modules (reference censorship-2024-2026.md): each
// module driven with packets through the real engine, its control behaviour reproduced (what the
// source reports), and what must pass, passing. The namespace runs are the report card's columns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { buildTcpPacket, buildUdpPacket, TCP_FLAG } from '../../src/lab/packet/l4.js';
import { cryptoFrame, sealQuicInitial } from '../../src/lab/packet/quic.js';
import { joinHandshakeRecords, parseClientHello } from '../../src/lab/packet/tls-client-hello.js';
import { nodeClientHelloRecord } from '../../src/lab/packet/node-hello.js';
import { CensorEngine } from '../../src/lab/censor/engine.js';
import { seededRandom } from '../../src/lab/censor/run.js';
import type { CensorEvent } from '../../src/lab/censor/types.js';
import { buildModules, profilePolicy, PROFILES, type Policy } from '../../src/lab/policy.js';
import { planLab } from '../../src/lab/topology.js';
import { drawBudget, helloScore, ruTlsInTls } from '../../src/lab/modules/tspu.js';
import { isServerHello } from '../../src/lab/modules/iran.js';
import { PairCounter } from '../../src/lab/modules/mux.js';
import { ja3Hash } from '../../src/lab/modules/tls-fingerprint.js';
import { columns } from '../../src/lab/card.js';

const C = '198.18.1.2';
const S = '198.19.2.20';
const OTHER = '203.0.113.0/24'; // never contacted: a prefix in a policy only

interface Lab {
  readonly engine: CensorEngine;
  readonly out: Buffer[];
  readonly events: CensorEvent[];
  clock: number;
}

function lab(policy: Policy, seed = 1): Lab {
  const l: Lab = { engine: undefined as unknown as CensorEngine, out: [], events: [], clock: 0 };
  (l as { engine: CensorEngine }).engine = new CensorEngine({
    modules: buildModules(policy),
    send: (p) => l.out.push(p),
    inside: ['198.18.0.0/16', '2001:2:0:1::/64'],
    now: () => l.clock,
    random: seededRandom(seed),
    timeFactor: 1,
    onEvent: (e) => l.events.push(e),
  });
  return l;
}

/** A TCP connection through the engine: handshake, then payloads either way; counts what passed. */
class Conn {
  #cseq: number;
  #sseq = 5000;
  readonly l: Lab;
  readonly sport: number;
  readonly server: string;
  readonly dport: number;
  readonly client: string;
  constructor(l: Lab, sport: number, server = S, dport = 443, client = C, isn = 1000) {
    this.#cseq = isn;
    this.l = l;
    this.sport = sport;
    this.server = server;
    this.dport = dport;
    this.client = client;
  }
  #seg(c2s: boolean, flags: number, payload?: Buffer): Buffer {
    const pkt = buildTcpPacket({
      ip: {
        src: c2s ? this.client : this.server,
        dst: c2s ? this.server : this.client,
        protocol: 6,
        ttl: 64,
      },
      srcPort: c2s ? this.sport : this.dport,
      dstPort: c2s ? this.dport : this.sport,
      seq: c2s ? this.#cseq : this.#sseq,
      ack: c2s ? this.#sseq : this.#cseq,
      flags,
      ...(payload ? { payload } : {}),
    });
    return pkt;
  }
  open(): this {
    this.send(true, TCP_FLAG.SYN);
    this.#cseq++;
    this.send(false, TCP_FLAG.SYN | TCP_FLAG.ACK);
    this.#sseq++;
    this.send(true, TCP_FLAG.ACK);
    return this;
  }
  /** Sends one packet; true if the engine forwarded it. */
  send(c2s: boolean, flags: number, payload?: Buffer): boolean {
    const pkt = this.#seg(c2s, flags, payload);
    const before = this.l.engine.stats.forwarded;
    this.l.engine.handle(pkt);
    if (payload) {
      if (c2s) this.#cseq += payload.length;
      else this.#sseq += payload.length;
    }
    return this.l.engine.stats.forwarded > before;
  }
  data(c2s: boolean, payload: Buffer): boolean {
    return this.send(c2s, TCP_FLAG.ACK | TCP_FLAG.PSH, payload);
  }
  fin(): void {
    this.send(true, TCP_FLAG.FIN | TCP_FLAG.ACK);
  }
}

function udp(l: Lab, sport: number, dport: number, payload: Buffer, dst = S, src = C): boolean {
  const before = l.engine.stats.forwarded;
  l.engine.handle(
    buildUdpPacket({
      ip: { src, dst, protocol: 17, ttl: 64 },
      srcPort: sport,
      dstPort: dport,
      payload,
    }),
  );
  return l.engine.stats.forwarded > before;
}

const serverHello = () =>
  Buffer.concat([Buffer.from('160303007a02000076', 'hex'), randomBytes(118)]);

test('engine: a new connection on a reused 4-tuple (a fresh SYN, another ISN) is a new flow that modules see from its start; a retransmitted SYN is not', async () => {
  const l = lab({
    modules: { 'tls-in-tls': { action: 'score', rules: ['A', 'B'], measure: true } },
  });
  const hello = await nodeClientHelloRecord('allowed.lab');
  const ccs = Buffer.concat([Buffer.from('140303000101', 'hex'), randomBytes(53)]);
  for (const isn of [1000, 700_000]) {
    const c = new Conn(l, 40_000, S, 443, C, isn);
    c.send(true, TCP_FLAG.SYN); // a first SYN, unanswered; open() sends it again: the same flow
    c.open();
    c.data(true, hello);
    c.data(false, randomBytes(1200));
    c.data(true, ccs);
    c.fin();
  }
  assert.equal(l.engine.stats.flows, 2, 'two connections, two flows');
  const measured = l.events.filter((e) => e.module === 'tls-in-tls' && e.action === 'measure');
  assert.deepEqual(
    measured.map((e) => e.detail),
    ['runs 59; A -; B -', 'runs 59; A -; B -'],
    'both measured from their CCS',
  );
});

test('byte-budget (n4p#490): server→client data to a foreign-hosting range stalls silently after a budget drawn from 14–32 KB; other ranges and exempt SNIs pass', async () => {
  for (let u = 0; u < 1; u += 0.1) {
    const b = drawBudget(u, { minBytes: 14 * 1024, maxBytes: 32 * 1024 });
    assert.ok(b >= 14 * 1024 && b <= 32 * 1024, `budget ${b}`);
  }
  const hello = await nodeClientHelloRecord('ladder.lab');
  for (const seed of [1, 2, 3]) {
    const l = lab({ modules: { 'byte-budget': { ranges: ['198.19.2.0/24'] } } }, seed);
    const c = new Conn(l, 40000).open();
    assert.ok(c.data(true, hello));
    let delivered = 0;
    let stalledAt = -1;
    for (let i = 0; i < 20; i++) {
      if (c.data(false, randomBytes(1400))) delivered += 1400;
      else if (stalledAt < 0) stalledAt = delivered;
    }
    assert.ok(stalledAt >= 14 * 1024 - 1400 && stalledAt <= 32 * 1024, `stalled at ${stalledAt}`);
    assert.equal(delivered, stalledAt, 'nothing passes after the stall');
    assert.equal(l.engine.stats.injected, 0, 'silent: no RST');
    assert.ok(c.data(true, randomBytes(100)), 'the client can still send');
    assert.equal(l.events.filter((e) => e.action === 'stall').length, 1);
  }
  // another range, and an exempt SNI: no stall
  for (const policy of [
    { 'byte-budget': { ranges: [OTHER] } },
    { 'byte-budget': { ranges: ['198.19.2.0/24'], exemptSni: ['ladder.lab'] } },
  ]) {
    const l = lab({ modules: policy });
    const c = new Conn(l, 40001).open();
    c.data(true, hello);
    for (let i = 0; i < 40; i++) assert.ok(c.data(false, randomBytes(1400)));
  }
});

test('whitelist mode (n4p#516, #579): only allowed SNIs (TLS, QUIC) and ranges pass; other TLS, non-TLS and other UDP dropped; DNS passes', async () => {
  const policy: Policy = {
    modules: { whitelist: { sni: ['allowed.lab'], ranges: ['198.19.2.53/32'] } },
  };
  const l = lab(policy);
  const ok = new Conn(l, 40000).open();
  assert.ok(ok.data(true, await nodeClientHelloRecord('www.allowed.lab')));
  assert.ok(ok.data(false, serverHello()));
  const bad = new Conn(l, 40001).open();
  assert.equal(bad.data(true, await nodeClientHelloRecord('ladder.lab')), false);
  assert.equal(bad.data(false, serverHello()), false, 'the whole flow is dropped');
  const raw = new Conn(l, 40002).open();
  assert.equal(raw.data(true, randomBytes(200)), false, 'not TLS');
  const range = new Conn(l, 40003, '198.19.2.53', 8388).open();
  assert.ok(range.data(true, randomBytes(200)), 'an allowed range passes whatever it carries');
  const hs = (await nodeClientHelloRecord('allowed.lab')).subarray(5);
  assert.ok(udp(l, 50000, 443, sealQuicInitial({ dcid: randomBytes(8), frames: cryptoFrame(hs) })));
  const hs2 = (await nodeClientHelloRecord('ladder.lab')).subarray(5);
  assert.equal(
    udp(l, 50001, 443, sealQuicInitial({ dcid: randomBytes(8), frames: cryptoFrame(hs2) })),
    false,
  );
  assert.equal(udp(l, 50002, 4000, randomBytes(50)), false);
  assert.ok(udp(l, 50003, 53, randomBytes(50)), 'DNS');
  assert.deepEqual(
    l.events.map((e) => e.detail),
    ['SNI not allowed', 'not TLS', 'QUIC SNI not allowed', 'UDP without an allowed QUIC SNI'],
  );
});

test('conn-count (n4p#546): the connection beyond N concurrent TLS connections to one server is reset; a closed one frees a slot; N by fingerprint', async () => {
  const hello = await nodeClientHelloRecord('ladder.lab');
  const l = lab({ modules: { 'conn-count': { maxConnections: 6 } } });
  const conns = Array.from({ length: 6 }, (_, i) => new Conn(l, 41000 + i).open());
  for (const c of conns) assert.ok(c.data(true, hello));
  assert.equal(l.engine.stats.injected, 0);
  const seventh = new Conn(l, 41010).open();
  assert.equal(seventh.data(true, hello), false, 'the 7th is cut');
  assert.ok(l.engine.stats.injected > 0, 'with RSTs');
  assert.equal(l.events.at(-1)?.detail, '7 > 6 connections');
  const other = new Conn(l, 41011, '198.19.2.21').open();
  assert.ok(other.data(true, hello), 'another server address has its own count');
  conns[0]!.fin();
  assert.ok(new Conn(l, 41012).open().data(true, hello), 'a closed connection frees its slot');
  const raw = new Conn(l, 41013).open();
  assert.ok(raw.data(true, randomBytes(300)), 'non-TLS connections do not count');
  // a fingerprint with a stricter N
  const ja3 = ja3Hash(parseClientHello(hello)!);
  const l2 = lab({
    modules: { 'conn-count': { maxConnections: 6, perFingerprint: { [ja3]: 2 } } },
  });
  const ok = [0, 1].map((i) => new Conn(l2, 42000 + i).open().data(true, hello));
  assert.deepEqual(ok, [true, true]);
  assert.equal(new Conn(l2, 42002).open().data(true, hello), false);
});

test('hello-score (Xray-core#6293): range + SNI + fingerprint against a threshold; an allowed SNI on the same server passes', async () => {
  const p = {
    ranges: [{ cidr: '198.19.2.0/24', score: 1 }],
    allowedSni: ['allowed.lab'],
    allowedSniScore: -2,
    otherSniScore: 1,
    knownFingerprints: ['chrome'],
    unknownFingerprintScore: 1,
    badFingerprints: ['chrome-120'],
    badFingerprintScore: 2,
    threshold: 3,
  };
  assert.equal(helloScore('ladder.lab', 'x', S, p).score, 3);
  assert.equal(helloScore('ladder.lab', 'chrome', S, p).score, 2);
  assert.equal(helloScore('ladder.lab', 'chrome-120', S, p).score, 4);
  assert.equal(helloScore('allowed.lab', 'x', S, p).score, 0);
  assert.equal(helloScore('ladder.lab', 'x', '203.0.113.9', p).score, 2);
  const l = lab({ modules: { 'hello-score': { ranges: p.ranges, allowedSni: p.allowedSni } } });
  const bad = new Conn(l, 40000).open();
  assert.equal(bad.data(true, await nodeClientHelloRecord('ladder.lab')), false);
  assert.equal(bad.data(false, serverHello()), false, 'frozen both ways');
  assert.equal(l.engine.stats.injected, 0);
  const good = new Conn(l, 40001).open();
  assert.ok(good.data(true, await nodeClientHelloRecord('allowed.lab')));
  assert.match(
    l.events[0]!.detail!,
    /^score 3: range 198\.19\.2\.0\/24 1, other SNI 1, unknown fingerprint 1$/,
  );
});

test('sni reassemble (teleproxy#39, n4p#550): a ClientHello split over TLS records and segments hides the SNI from the stateless filter, not from the reassembling one', async () => {
  const rec = await nodeClientHelloRecord('blocked.lab');
  const hs = rec.subarray(5);
  // the handshake in 40-byte records, sent in 2 segments
  const records: Buffer[] = [];
  for (let i = 0; i < hs.length; i += 40) {
    const part = hs.subarray(i, i + 40);
    records.push(Buffer.concat([Buffer.of(0x16, 0x03, 0x01, 0, part.length), part]));
  }
  const split = Buffer.concat(records);
  assert.equal(parseClientHello(joinHandshakeRecords(split)!)?.sni, 'blocked.lab');
  assert.equal(parseClientHello(split)?.sni, undefined, 'the first record alone');
  for (const reassemble of [false, true]) {
    const l = lab({ modules: { sni: { blocklist: ['blocked.lab'], reassemble } } });
    const c = new Conn(l, 40000).open();
    c.data(true, split.subarray(0, 100));
    c.data(true, split.subarray(100));
    assert.equal(l.engine.stats.injected > 0, reassemble, `reassemble ${reassemble}`);
  }
  // joinHandshakeRecords on hostile input: a value, null or undefined; never a throw or a hang
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), (d) => {
      const r = joinHandshakeRecords(Buffer.concat([Buffer.of(0x16, 0x03), d]));
      assert.ok(r === null || r === undefined || Buffer.isBuffer(r));
      if (r) parseClientHello(r);
    }),
    { numRuns: 500 },
  );
  // a prefix of a split hello is "need more", never a wrong answer
  for (let i = 0; i < split.length; i += 7) {
    const r = joinHandshakeRecords(split.subarray(0, i));
    assert.ok(r === null, `prefix ${i}`);
  }
});

test('iran (n4p#489, #630): the ServerHello is dropped (the ClientHello passes); UDP other than DNS, QUIC and IPv6 dropped; a client allowlist', async () => {
  assert.ok(isServerHello(serverHello()));
  assert.equal(isServerHello(Buffer.from('170303001000', 'hex')), false);
  const l = lab({ modules: { iran: {} } });
  const tls = new Conn(l, 40000).open();
  assert.ok(tls.data(true, await nodeClientHelloRecord('ladder.lab')));
  assert.equal(tls.data(false, serverHello()), false, 'ServerHello dropped');
  assert.equal(tls.data(false, serverHello()), false, 'and its retransmission');
  const ss = new Conn(l, 40001, S, 8388).open();
  assert.ok(ss.data(true, randomBytes(300)));
  assert.ok(ss.data(false, randomBytes(300)), 'a server that speaks first with other bytes passes');
  assert.equal(udp(l, 50000, 443, randomBytes(1200)), false, 'QUIC/UDP');
  assert.ok(udp(l, 50001, 53, randomBytes(40)), 'DNS');
  const v6 = new Conn(l, 40002, '2001:2:0:2::20', 443, '2001:2:0:1::2');
  assert.equal(v6.send(true, TCP_FLAG.SYN), false, 'IPv6');
  const l2 = lab({ modules: { iran: { clientAllowlist: ['198.18.1.200/32'] } } });
  assert.equal(new Conn(l2, 40003).send(true, TCP_FLAG.SYN), false, 'client not allowlisted');
  const listed = new Conn(l2, 40004, S, 8388, '198.18.1.200');
  assert.ok(listed.send(true, TCP_FLAG.SYN));
});

test('volume-ban (n4p#523): after a volume the outside address is banned for every protocol and flow until the ban ends', () => {
  const l = lab({ modules: { 'volume-ban': { bytes: 20_000, banSeconds: 60 } } });
  const c = new Conn(l, 40000, S, 8388).open();
  let sent = 0;
  while (c.data(false, randomBytes(1400))) sent += 1400;
  assert.ok(sent >= 18_000 && sent <= 20_000, `banned after ${sent}`);
  assert.equal(new Conn(l, 40001, S, 22).send(true, TCP_FLAG.SYN), false, 'another port');
  assert.equal(udp(l, 50000, 9999, randomBytes(10)), false, 'UDP too');
  assert.ok(udp(l, 50000, 9999, randomBytes(10), '198.19.2.21'), 'another address is not');
  l.clock += 61_000;
  assert.ok(new Conn(l, 40002, S, 22).send(true, TCP_FLAG.SYN), 'the ban ends');
  // random UDP alone draws a ban
  const l2 = lab({ modules: { 'volume-ban': { bytes: 5_000 } } });
  let n = 0;
  while (udp(l2, 50000, 7000, randomBytes(500)) && n < 100) n++;
  assert.ok(n < 12, `banned after ${n} datagrams`);
});

test('mux (NDSS 2025): request/response pairs counted per flow; a flow reaching the threshold is flagged or reset', () => {
  const pc = new PairCounter();
  for (const d of [true, true, false, false, true, false, false, true]) pc.push(d);
  assert.equal(pc.pairs, 2);
  for (const action of ['score', 'reset'] as const) {
    const l = lab({ modules: { mux: { pairs: 10, action } } });
    const c = new Conn(l, 40000).open();
    let cut = -1;
    for (let i = 0; i < 15 && cut < 0; i++) {
      c.data(true, randomBytes(100));
      if (!c.data(false, randomBytes(400))) cut = i;
    }
    assert.equal(cut, action === 'reset' ? 9 : -1);
    assert.equal(l.events[0]?.action, action === 'reset' ? 'reset' : 'flag');
    // a short exchange is never flagged
    const l2 = lab({ modules: { mux: { pairs: 10, action } } });
    const s = new Conn(l2, 40001).open();
    for (let i = 0; i < 3; i++) {
      s.data(true, randomBytes(100));
      s.data(false, randomBytes(4000));
    }
    assert.equal(l2.events.length, 0);
  }
});

test('tls-in-tls-ru (n4p#363): 3 client packets ≥ 411 bytes in a fully encrypted flow freeze it; smaller packets and TLS outside pass', async () => {
  assert.equal(ruTlsInTls([50, 517, 80, 411, 600]), 4);
  assert.equal(ruTlsInTls([50, 410, 410, 410, 80]), -1);
  const l = lab({ modules: { 'tls-in-tls-ru': {} } });
  const ss = new Conn(l, 40000, S, 8388).open();
  assert.ok(ss.data(true, randomBytes(60)));
  assert.ok(ss.data(true, randomBytes(600)));
  assert.ok(ss.data(false, randomBytes(3000)));
  assert.ok(ss.data(true, randomBytes(450)));
  assert.equal(ss.data(true, randomBytes(411)), false, 'the third large packet');
  assert.equal(ss.data(false, randomBytes(100)), false, 'frozen both ways');
  assert.equal(l.engine.stats.injected, 0);
  const small = new Conn(l, 40001, S, 8388).open();
  for (let i = 0; i < 10; i++) assert.ok(small.data(true, randomBytes(400)));
  const tls = new Conn(l, 40002).open();
  assert.ok(tls.data(true, await nodeClientHelloRecord('ladder.lab')));
  for (let i = 0; i < 5; i++) assert.ok(tls.data(true, randomBytes(800)));
  // a TLS flow first seen mid-way (application data records) is TLS outside too
  const mid = new Conn(l, 40003).open();
  for (let i = 0; i < 5; i++)
    assert.ok(mid.data(true, Buffer.concat([Buffer.from('1703030320', 'hex'), randomBytes(800)])));
});

test('quic load shedding (USENIX Security 2025): Initials beyond the capacity in a second are not inspected', async () => {
  const hs = (await nodeClientHelloRecord('blocked.lab')).subarray(5);
  const l = lab({ modules: { quic: { blocklist: ['blocked.lab'], capacityPerSecond: 2 } } });
  for (let i = 0; i < 4; i++)
    udp(l, 50000 + i, 443 + i, sealQuicInitial({ dcid: randomBytes(8), frames: cryptoFrame(hs) }));
  assert.deepEqual(
    l.events.map((e) => e.action),
    ['block', 'block', 'shed'],
  );
  l.clock += 1000;
  udp(
    l,
    50010,
    443,
    sealQuicInitial({ dcid: randomBytes(8), frames: cryptoFrame(hs) }),
    '198.19.2.21',
  );
  assert.equal(l.events.at(-1)?.action, 'block', 'the next second inspects again');
});

test('port443-reset (GFW Report, 2025-08-20): inside-out SYN and SYN+ACK, outside-in SYN+ACK only, three RST+ACK each way', () => {
  const l = lab({ modules: { 'port443-reset': {} } });
  new Conn(l, 40000).send(true, TCP_FLAG.SYN);
  assert.equal(l.engine.stats.injected, 6, '3 RST+ACK to each end');
  const l2 = lab({ modules: { 'port443-reset': {} } });
  // outside-in: the SYN of an outside client does not trigger, its SYN+ACK from inside does
  const inbound = new Conn(l2, 40001, C, 443, S);
  inbound.send(true, TCP_FLAG.SYN);
  assert.equal(l2.engine.stats.injected, 0);
  inbound.send(false, TCP_FLAG.SYN | TCP_FLAG.ACK);
  assert.equal(l2.engine.stats.injected, 6);
  const l3 = lab({ modules: { 'port443-reset': {} } });
  new Conn(l3, 40002, S, 8443).open();
  assert.equal(l3.engine.stats.injected, 0, 'port 8443 unaffected');
});

test('profiles ru-2026, ru-2026-mobile, ir-2026, tm-2025 build; every profile and new module is a report-card column', () => {
  const plan = planLab('cs-');
  const names = (p: string) => buildModules(profilePolicy(p, plan)).map((m) => m.name);
  assert.deepEqual(names('ru-2026'), [
    'dns',
    'sni',
    'ech',
    'hello-score',
    'conn-count',
    'quic',
    'http',
    'openvpn',
    'wireguard',
    'tls-in-tls-ru',
    'byte-budget',
  ]);
  assert.ok(names('ru-2026-mobile').includes('whitelist'));
  assert.deepEqual(names('ir-2026'), ['iran', 'dns', 'sni', 'http']);
  assert.deepEqual(names('tm-2025'), ['volume-ban', 'dns', 'sni', 'http']);
  assert.equal(profilePolicy('ru-2026', plan).modules.sni?.reassemble, true);
  const cols = columns().map((c) => c.name);
  for (const c of [
    ...PROFILES,
    'byte-budget',
    'whitelist',
    'conn-count',
    'hello-score',
    'browser-only',
    'sni reassembled',
    'iran',
    'iran allowlist',
    'volume-ban',
    'mux',
    'tls-in-tls-ru',
    'ech',
    'port443-reset',
  ])
    assert.ok(cols.includes(c), c);
});

test('hostile packets through every new module: forwarded, dropped or answered, never a throw', () => {
  const l = lab({
    modules: {
      'byte-budget': {
        ranges: ['198.19.2.0/24'],
        exemptSni: ['allowed.lab'],
        minBytes: 10,
        maxBytes: 20,
      },
      whitelist: { sni: ['allowed.lab'] },
      'conn-count': { maxConnections: 1 },
      'hello-score': { ranges: [{ cidr: '198.19.2.0/24', score: 1 }] },
      sni: { blocklist: ['blocked.lab'], reassemble: true },
      iran: { serverHelloPaths: ['198.19.2.0/24'] },
      'volume-ban': { bytes: 100_000 },
      mux: { pairs: 3, action: 'reset' },
      'tls-in-tls-ru': {},
    },
  });
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.boolean(),
      fc.integer({ min: 1, max: 65535 }),
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 1500 }),
      (isUdp, c2s, port, flags, body) => {
        const payload = Buffer.concat([Buffer.of(0x16, 0x03, 0x01), body]);
        const ends = { src: c2s ? C : S, dst: c2s ? S : C };
        const pkt = isUdp
          ? buildUdpPacket({
              ip: { ...ends, protocol: 17, ttl: 64 },
              srcPort: c2s ? port : 443,
              dstPort: c2s ? 443 : port,
              payload,
            })
          : buildTcpPacket({
              ip: { ...ends, protocol: 6, ttl: 64 },
              srcPort: c2s ? port : 443,
              dstPort: c2s ? 443 : port,
              seq: port * 7,
              ack: 1,
              flags,
              payload,
            });
        l.engine.handle(pkt);
      },
    ),
    { numRuns: 2000 },
  );
  assert.ok(l.engine.stats.packets >= 2000);
});
