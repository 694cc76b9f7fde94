// Pure tests (no root, no tor binary) of the Tor module (docs/censorship-techniques.md §12) on recorded bytes
// (test/vectors/tor.json): the Tor ClientHello classifier, the VERSIONS cell codec and the prober's
// test, and the module in the engine with a scripted prober (flag, probe, null-route, re-probe,
// unblock; not Tor: cleared, nothing dropped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { CodecError } from '../../src/errors.js';
import { parseClientHello } from '../../src/lab/packet/tls-client-hello.js';
import { ja3Hash, ja3String } from '../../src/lab/modules/tls-fingerprint.js';
import {
  decodeVersionsCell,
  encodeVersionsCell,
  versionsCell,
  versionsCellLength,
  versionsReply,
} from '../../src/lab/packet/tor-cell.js';
import {
  isTorClientHello,
  speaksTor,
  TorModule,
  TOR_JA3_HASHES,
} from '../../src/lab/modules/tor.js';
import { EgressModule, inAddressSpace } from '../../src/lab/modules/egress.js';
import type { ProbeSender } from '../../src/lab/modules/prober.js';
import { CensorEngine } from '../../src/lab/censor/engine.js';
import { buildTcpPacket, TCP_FLAG } from '../../src/lab/packet/l4.js';
import { checkCodec } from '../helpers/codec-battery.js';

interface TorVectors {
  clientHello: string;
  ja3: string;
  ja3Hash: string;
  versionsProbe: string;
  versionsReply: string;
  versionsReplyVersions: number[];
  decoyReply: string;
  notTor: { name: string; clientHello: string }[];
  negativeCells: { name: string; hex: string }[];
}

const vectors = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../../test/vectors/tor.json', import.meta.url)), 'utf8'),
) as TorVectors;
const hex = (h: string) => Buffer.from(h, 'hex');
const torHello = hex(vectors.clientHello);

test("Tor's recorded ClientHello: its JA3 is the module's default fingerprint (§12)", () => {
  const ch = parseClientHello(torHello);
  assert.ok(ch);
  assert.equal(ja3String(ch), vectors.ja3);
  assert.equal(ja3Hash(ch), vectors.ja3Hash);
  assert.deepEqual([...TOR_JA3_HASHES], [vectors.ja3Hash]);
  assert.match(ch.sni ?? '', /^www\.[a-z2-7]+\.(com|net)$/, "Tor's random www.<base32>.com name");
  assert.ok(isTorClientHello(torHello));
});

test('curl and Node ClientHellos are not Tor; neither is an incomplete or non-TLS stream', () => {
  for (const v of vectors.notTor) assert.equal(isTorClientHello(hex(v.clientHello)), false, v.name);
  for (let n = 0; n < torHello.length; n += 37)
    assert.equal(isTorClientHello(torHello.subarray(0, n)), false, `prefix of ${n} bytes`);
  assert.equal(isTorClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')), false);
  assert.equal(isTorClientHello(torHello, []), false, 'an empty fingerprint set flags nothing');
});

test('VERSIONS cell codec (tor-spec §4): the probe bytes, the codec battery, negative cells', () => {
  checkCodec(
    {
      encode: encodeVersionsCell,
      length: versionsCellLength,
      decode: decodeVersionsCell,
    },
    { versions: [3, 4, 5] },
    hex(vectors.versionsProbe),
  );
  assert.equal(versionsCell().toString('hex'), vectors.versionsProbe);
  for (const c of vectors.negativeCells)
    assert.throws(() => decodeVersionsCell(hex(c.hex), 0), CodecError, c.name);
  assert.throws(() => encodeVersionsCell({ versions: [] }, Buffer.alloc(8), 0), CodecError);
  assert.throws(() => encodeVersionsCell({ versions: [0] }, Buffer.alloc(8), 0), CodecError);
});

test("the prober's test: a Tor bridge's recorded reply is a VERSIONS cell, the decoy site's is not", () => {
  const reply = hex(vectors.versionsReply);
  assert.deepEqual(versionsReply(reply), vectors.versionsReplyVersions);
  assert.ok(speaksTor(reply));
  // what follows it is a CERTS cell (command 129) with a 4-byte circuit id (link protocol ≥ 4)
  const next = reply.subarray(versionsCellLength({ versions: vectors.versionsReplyVersions }));
  assert.equal(next.readUInt32BE(0), 0);
  assert.equal(next[4], 129);
  assert.equal(speaksTor(hex(vectors.decoyReply)), false);
  assert.equal(speaksTor(Buffer.alloc(0)), false, 'silence');
  assert.equal(speaksTor(reply.subarray(0, 4)), false, 'too short to tell');
  for (const c of vectors.negativeCells) assert.equal(speaksTor(hex(c.hex)), false, c.name);
});

test('fuzz: decodeVersionsCell returns or throws a CodecError on any bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(8), (bytes, at) => {
      try {
        const r = decodeVersionsCell(bytes, Math.min(at, bytes.length));
        if (r) assert.ok(r.bytesRead >= 7 && r.value.versions.length > 0);
      } catch (err) {
        assert.ok(err instanceof CodecError, String(err));
      }
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 0xffff }), { minLength: 1, maxLength: 20 }),
      (vs) => assert.deepEqual(versionsReply(versionsCell(vs)), vs),
    ),
  );
});

const C = '198.18.1.2';
const S = '198.19.2.40';

/** A TCP flow through the engine: SYN, SYN+ACK, ACK, the ClientHello, then a server packet. */
function flow(engine: CensorEngine, out: Buffer[], sport: number, hello: Buffer) {
  const seg = (c2s: boolean, seq: number, ack: number, flags: number, payload?: Buffer) =>
    buildTcpPacket({
      ip: { src: c2s ? C : S, dst: c2s ? S : C, protocol: 6, ttl: 64 },
      srcPort: c2s ? sport : 9001,
      dstPort: c2s ? 9001 : sport,
      seq,
      ack,
      flags,
      payload,
    });
  engine.handle(seg(true, 1000, 0, TCP_FLAG.SYN));
  const n0 = out.length;
  engine.handle(seg(false, 5000, 1001, TCP_FLAG.SYN | TCP_FLAG.ACK));
  const synAckForwarded = out.length > n0;
  engine.handle(seg(true, 1001, 5001, TCP_FLAG.ACK));
  engine.handle(seg(true, 1001, 5001, TCP_FLAG.ACK | TCP_FLAG.PSH, hello));
  const n1 = out.length;
  engine.handle(
    seg(false, 5001, 1001 + hello.length, TCP_FLAG.ACK | TCP_FLAG.PSH, Buffer.alloc(100)),
  );
  return { synAckForwarded, replyForwarded: out.length > n1 };
}

const tick = () => new Promise((r) => setTimeout(r, 30));
async function until(cond: () => boolean) {
  for (let i = 0; i < 200 && !cond(); i++) await tick();
}

test('engine + tor: a Tor ClientHello draws a VERSIONS probe; a Tor server is null-routed S→C, re-probed, unblocked when Tor is gone; others are cleared', async () => {
  let answer = hex(vectors.versionsReply);
  const probes: { payload: string; layer: string; source: string | undefined }[] = [];
  const send: ProbeSender = (_t, payload, _ms, source, layer) => {
    probes.push({ payload: Buffer.from(payload).toString('hex'), layer, source });
    return Promise.resolve({ reaction: 'DATA', reply: answer });
  };
  const out: Buffer[] = [];
  const events: string[] = [];
  const tor = new TorModule(
    { proberAddresses: ['198.18.250.1'], probeDelayS: 0, reprobeHours: 0.1 / 3600 },
    send,
  );
  const engine = new CensorEngine({
    modules: [tor],
    send: (p) => out.push(p),
    inside: ['198.18.0.0/16'],
    onEvent: (e) => events.push(`${e.module}/${e.action}`),
  });
  // not Tor: curl's hello draws nothing
  assert.deepEqual(flow(engine, out, 40001, hex(vectors.notTor[0]!.clientHello)), {
    synAckForwarded: true,
    replyForwarded: true,
  });
  assert.equal(events.length, 0);
  // Tor: flagged and probed inside TLS with a VERSIONS cell from the prober address
  flow(engine, out, 40002, torHello);
  await until(() => events.includes('tor/confirm'));
  assert.deepEqual(events.slice(0, 4), ['tor/flag', 'tor/schedule', 'tor/probe', 'tor/confirm']);
  assert.deepEqual(probes[0], {
    payload: vectors.versionsProbe,
    layer: 'tls',
    source: '198.18.250.1',
  });
  assert.deepEqual(flow(engine, out, 40003, hex(vectors.notTor[0]!.clientHello)), {
    synAckForwarded: false,
    replyForwarded: false,
  });
  assert.ok(events.includes('tor/drop'));
  // Tor gone: the re-probe meets the decoy's answer, and the server is unblocked
  answer = hex(vectors.decoyReply);
  await until(() => events.includes('tor/unblock'));
  assert.ok(events.includes('tor/unblock'));
  assert.deepEqual(flow(engine, out, 40004, hex(vectors.notTor[0]!.clientHello)), {
    synAckForwarded: true,
    replyForwarded: true,
  });
  // a Tor ClientHello to a server that does not speak Tor: cleared, never blocked
  const from = events.length;
  flow(engine, out, 40005, torHello);
  await until(() => events.slice(from).includes('tor/clear'));
  assert.deepEqual(events.slice(from), ['tor/flag', 'tor/schedule', 'tor/probe', 'tor/clear']);
  assert.deepEqual(flow(engine, out, 40006, torHello).replyForwarded, true);
  tor.close();
});

test('egress: flows with an end outside 198.18.0.0/15 and 2001:2::/48 are reported and dropped', () => {
  assert.ok(inAddressSpace('198.19.2.40'));
  assert.ok(inAddressSpace('2001:2:0:1::2'));
  assert.ok(!inAddressSpace('198.20.0.1'));
  assert.ok(!inAddressSpace('185.112.249.156'));
  assert.ok(!inAddressSpace('2001:db8::1'));
  const out: Buffer[] = [];
  const events: string[] = [];
  const engine = new CensorEngine({
    modules: [new EgressModule()],
    send: (p) => out.push(p),
    inside: ['198.18.0.0/16'],
    onEvent: (e) => events.push(`${e.module}/${e.action}`),
  });
  const syn = (dst: string) =>
    buildTcpPacket({
      ip: { src: C, dst, protocol: 6, ttl: 64 },
      srcPort: 40000,
      dstPort: 443,
      seq: 1,
      ack: 0,
      flags: TCP_FLAG.SYN,
    });
  engine.handle(syn('198.19.2.40'));
  assert.equal(out.length, 1);
  assert.equal(events.length, 0);
  engine.handle(syn('185.112.249.156'));
  assert.equal(out.length, 1, 'dropped');
  assert.deepEqual(events, ['egress/outside']);
});
