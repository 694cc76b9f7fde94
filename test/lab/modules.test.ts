// Pure tests (no root) of the QUIC SNI (§8) and TLS-in-TLS (§14) modules: QUIC Initial keys against
// RFC 9001 Appendix A, Initials built here around Node's own ClientHello (Node 20 has no QUIC
// client), the GFW's parsing quirks, and the engine's residual on the UDP 3-tuple.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buildTcpPacket, buildUdpPacket, TCP_FLAG } from '../../src/lab/packet/l4.js';
import {
  clientInitialKeys,
  cryptoFrame,
  openQuicInitial,
  sealQuicInitial,
} from '../../src/lab/packet/quic.js';
import { quicInitialSni } from '../../src/lab/modules/quic.js';
import { ruleB, TlsInTlsTracker, trojanKiller } from '../../src/lab/modules/tls-in-tls.js';
import { ja3Hash, ja3String } from '../../src/lab/modules/tls-fingerprint.js';
import { parseClientHello } from '../../src/lab/packet/tls-client-hello.js';
import { CensorEngine } from '../../src/lab/censor/engine.js';
import { seededRandom } from '../../src/lab/censor/run.js';
import { buildModules, checkPolicy, modulePolicy, profilePolicy } from '../../src/lab/policy.js';
import { planLab } from '../../src/lab/topology.js';
import { nodeClientHelloRecord } from '../../src/lab/packet/node-hello.js';

const C = '198.18.1.2';
const S = '198.19.2.20';

async function clientHelloHandshake(servername: string): Promise<Buffer> {
  return (await nodeClientHelloRecord(servername)).subarray(5); // the handshake message, as a CRYPTO frame carries it
}

test('QUIC v1 client Initial keys match RFC 9001 Appendix A.1', () => {
  const k = clientInitialKeys(Buffer.from('8394c8f03e515708', 'hex'));
  assert.equal(k.key.toString('hex'), '1f369613dd76d5467730efcbe3b1a22d');
  assert.equal(k.iv.toString('hex'), 'fa044b2f42a3fd3b46fb255c');
  assert.equal(k.hp.toString('hex'), '9f50449e04a0e810283a1e9933adedd2');
});

test('QUIC Initial: SNI read after decryption; the quirks of §8 Table 3', async () => {
  const hs = await clientHelloHandshake('www.blocked.lab');
  const dcid = randomBytes(8);
  const initial = sealQuicInitial({ dcid, scid: randomBytes(8), frames: cryptoFrame(hs) });
  assert.equal(initial.length, 1200);
  assert.equal(openQuicInitial(initial)?.dcid.toString('hex'), dcid.toString('hex'));
  assert.equal(quicInitialSni(initial), 'www.blocked.lab');
  // zero-length DCID and SCID: still blocked
  assert.equal(
    quicInitialSni(sealQuicInitial({ dcid: Buffer.alloc(0), frames: cryptoFrame(hs) })),
    'www.blocked.lab',
  );
  // the GFW authenticates: remove the last byte and there is no block
  assert.equal(quicInitialSni(initial.subarray(0, initial.length - 1)), undefined);
  const flipped = Buffer.from(initial);
  flipped[600] = flipped[600]! ^ 1;
  assert.equal(quicInitialSni(flipped), undefined);
  // QUIC v2 (another version number) is not inspected
  assert.equal(
    quicInitialSni(sealQuicInitial({ dcid, frames: cryptoFrame(hs), version: 0x6b3343cf })),
    undefined,
  );
  // PING + PADDING before the CRYPTO frame (Chrome-style) is not inspected
  const pingFirst = Buffer.concat([Buffer.of(0x01, 0x00, 0x00), cryptoFrame(hs)]);
  assert.equal(quicInitialSni(sealQuicInitial({ dcid, frames: pingFirst })), undefined);
  assert.equal(
    quicInitialSni(sealQuicInitial({ dcid, frames: pingFirst }), false),
    'www.blocked.lab',
  );
  // random datagrams and short inputs
  for (let i = 0; i < 200; i++) assert.equal(quicInitialSni(randomBytes(i * 7)), undefined);
});

test('engine + quic: a blocked SNI drops later UDP on the 3-tuple from any source port; allowed SNI, sport < dport and a datagram first are not blocked (§8)', async () => {
  const plan = planLab('ldrx-');
  const run = async (sni: string, sport: number, dummyFirst = false) => {
    const out: Buffer[] = [];
    const events: string[] = [];
    const engine = new CensorEngine({
      modules: buildModules(modulePolicy('quic', plan)),
      send: (p) => out.push(p),
      inside: ['198.18.0.0/16'],
      random: seededRandom(1),
      onEvent: (e) => events.push(`${e.module}/${e.action}`),
    });
    const dgram = (srcPort: number, payload: Buffer) =>
      buildUdpPacket({
        ip: { src: '198.18.1.2', dst: '198.19.2.10', protocol: 17, ttl: 64 },
        srcPort,
        dstPort: 443,
        payload,
      });
    if (dummyFirst) engine.handle(dgram(sport, randomBytes(20)));
    const hs = await clientHelloHandshake(sni);
    engine.handle(dgram(sport, sealQuicInitial({ dcid: randomBytes(8), frames: cryptoFrame(hs) })));
    const delivered = out.length;
    engine.handle(dgram(sport, randomBytes(100)));
    engine.handle(dgram(sport + 1, randomBytes(100))); // another source port, same 3-tuple
    return { delivered, later: out.length - delivered, events };
  };
  const blocked = await run('blocked.lab', 50000);
  assert.equal(blocked.delivered, 1, 'the triggering Initial itself is delivered');
  assert.equal(blocked.later, 0, 'later datagrams on the 3-tuple are dropped');
  assert.deepEqual(blocked.events, ['quic/block', 'quic/residual-drop', 'quic/residual-drop']);
  assert.equal((await run('allowed.lab', 50000)).later, 2);
  assert.equal((await run('blocked.lab', 400)).later, 2, 'sport < dport is not inspected');
  assert.equal((await run('blocked.lab', 50000, true)).later, 2, 'a datagram first: not inspected');
});

test('TLS-in-TLS rules A (Trojan-killer) and B: an inner handshake after the outer CCS is flagged, in the first or (B) the second exchange; a browser-like exchange is not (§14)', () => {
  assert.ok(trojanKiller(700, 175));
  assert.ok(trojanKiller(650, 5000));
  assert.ok(!trojanKiller(400, 5000));
  assert.ok(!trojanKiller(700, 20000));
  assert.ok(ruleB([64, 500, 700, 4000]), 'the inner handshake behind the outer tickets');
  assert.ok(!ruleB([64, 500, 200, 30000]));
  /** Runs a flow: ClientHello, server flight, the CCS packet (59 bytes), then `steps`. */
  const flow = (steps: [boolean, number][]) => {
    const t = new TlsInTlsTracker();
    t.push(true, Buffer.concat([Buffer.of(0x16, 0x03, 0x01), randomBytes(500)]));
    t.push(false, randomBytes(2000));
    t.push(true, Buffer.concat([Buffer.from('140303000101', 'hex'), randomBytes(53)]));
    for (const [c2s, n] of steps) t.push(c2s, randomBytes(n));
    return t;
  };
  // the CCS packet counts from the CCS on (59 bytes), as Trojan-killer and OpenGFW count it
  const inner = flow([
    [true, 658],
    [false, 4200],
    [true, 80],
  ]);
  assert.deepEqual(inner.runs, [717, 4200, 80]);
  assert.equal(inner.ruleA(), true, 'inner ClientHello + flight');
  assert.equal(inner.ruleB(), undefined, 'B waits for r3');
  const page = flow([
    [true, 351],
    [false, 30000],
    [true, 80],
    [false, 100],
    [true, 1],
  ]);
  assert.equal(page.ruleA(), false, 'an HTTP request and a page');
  assert.equal(page.ruleB(), false);
  const late = flow([
    [false, 478],
    [true, 700],
    [false, 3500],
    [true, 80],
  ]);
  assert.deepEqual(late.counted, [59, 478, 700, 3500]);
  assert.equal(late.ruleA(), false, 'tickets first: rule A misses it');
  assert.equal(late.ruleB(), true, 'rule B sees the second exchange');
  assert.equal(flow([[true, 717]]).ruleA(), undefined, 'not finished yet');
  const split = new TlsInTlsTracker();
  split.push(true, Buffer.of(0x16, 0x03, 0x01, 0, 0));
  split.push(
    true,
    Buffer.concat([randomBytes(10), Buffer.from('140303000101', 'hex'), randomBytes(4)]),
  );
  assert.deepEqual(split.runs, [10], 'from the CCS to the end of its packet');
});

test('JA3 of a ClientHello (§13): stable for one client across connections, GREASE left out', async () => {
  const a = parseClientHello(await clientHelloRecord('a.lab'))!;
  const b = parseClientHello(await clientHelloRecord('b.lab'))!;
  assert.match(ja3String(a), /^771,[\d-]+,[\d-]+,[\d-]+,[\d-]*$/);
  assert.equal(ja3Hash(a), ja3Hash(b), 'the SNI is not part of JA3');
  assert.ok(a.groups!.length > 0 && a.pointFormats!.length > 0);
  const grease = {
    ...a,
    cipherSuites: [0x0a0a, ...a.cipherSuites],
    extensions: [0xfafa, ...a.extensions],
  };
  assert.equal(ja3String(grease), ja3String(a));
});

async function clientHelloRecord(servername: string): Promise<Buffer> {
  const hs = await clientHelloHandshake(servername);
  return Buffer.concat([Buffer.of(0x16, 0x03, 0x01, hs.length >> 8, hs.length & 0xff), hs]);
}

test('profiles bundle the modules: gfw-2022 (FET + prober, Tor), gfw-2025 (QUIC, TLS-in-TLS and multiplexing scores, VPNs, Tor, prober), sensitive-period', () => {
  const plan = planLab('ldrx-');
  const names = (p: string) => buildModules(profilePolicy(p, plan)).map((m) => m.name);
  assert.deepEqual(names('gfw-2022'), ['dns', 'sni', 'tor', 'http', 'fet', 'probe']);
  assert.deepEqual(names('gfw-2025'), [
    'dns',
    'sni',
    'tor',
    'quic',
    'http',
    'openvpn',
    'wireguard',
    'tls-in-tls',
    'mux',
    'probe',
  ]);
  const sp = profilePolicy('sensitive-period', plan).modules;
  assert.equal(sp['tls-in-tls']?.action, 'reset');
  assert.ok(sp['udp-drop'] && sp.allowlist && sp.quic);
  assert.equal(profilePolicy('gfw-2025', plan).modules.probe?.trigger, 'entropy');
  assert.doesNotThrow(() =>
    checkPolicy({ modules: { quic: {}, 'tls-in-tls': {}, 'tls-fingerprint': {} } }),
  );
});

test('fet dropTrigger: by default the trigger is dropped too; with false it is delivered and the later client packets are dropped', () => {
  for (const dropTrigger of [true, false]) {
    const out: Buffer[] = [];
    const engine = new CensorEngine({
      modules: buildModules({ modules: { fet: { p: 1, dropTrigger } } }),
      send: (p) => out.push(p),
      inside: ['198.18.0.0/16'],
    });
    const seg = (c2s: boolean, seq: number, ack: number, flags: number, payload?: Buffer) =>
      buildTcpPacket({
        ip: { src: c2s ? C : S, dst: c2s ? S : C, protocol: 6, ttl: 64 },
        srcPort: c2s ? 40000 : 8388,
        dstPort: c2s ? 8388 : 40000,
        seq,
        ack,
        flags,
        payload,
      });
    engine.handle(seg(true, 1000, 0, TCP_FLAG.SYN));
    engine.handle(seg(false, 5000, 1001, TCP_FLAG.SYN | TCP_FLAG.ACK));
    engine.handle(seg(true, 1001, 5001, TCP_FLAG.ACK));
    const n0 = out.length;
    engine.handle(seg(true, 1001, 5001, TCP_FLAG.ACK | TCP_FLAG.PSH, randomBytes(200)));
    assert.equal(out.length - n0, dropTrigger ? 0 : 1, `trigger, dropTrigger ${dropTrigger}`);
    engine.handle(seg(true, 1201, 5001, TCP_FLAG.ACK | TCP_FLAG.PSH, randomBytes(200)));
    assert.equal(out.length - n0, dropTrigger ? 0 : 1, `later packet, dropTrigger ${dropTrigger}`);
  }
});
