import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CodecError } from '../errors.js';
import { decodeDnsMessage, dnsMessageBytes, dnsQuery, DNS_RCODE, DNS_TYPE } from './dns.js';
import {
  base32Decode,
  base32Encode,
  checkTunnelDomain,
  decodeTunnelAnswer,
  decodeTunnelPacket,
  decodeTunnelQuery,
  EDNS_PAYLOAD_BYTES,
  encodeTunnelAnswer,
  encodeTunnelPacket,
  encodeTunnelQuery,
  maxDownstreamData,
  maxUpstreamData,
  TUNNEL_FLAG,
  TUNNEL_HEADER_BYTES,
  tunnelPacketLength,
  type TunnelPacket,
} from './dns-tunnel.js';

const DOMAIN = 't.example.com';
const NONCE = Uint8Array.of(1, 2, 3, 4);

function packet(data: Uint8Array, flags = 0): TunnelPacket {
  return { session: 0xdeadbeef, flags, seq: 0xfffffff0, ack: 7, data };
}

test('base32: the RFC 4648 §10 vectors, lower case, unpadded; either case decodes', () => {
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'my'],
    ['fo', 'mzxq'],
    ['foo', 'mzxw6'],
    ['foob', 'mzxw6yq'],
    ['fooba', 'mzxw6ytb'],
    ['foobar', 'mzxw6ytboi'],
  ];
  for (const [plain, b32] of vectors) {
    assert.equal(base32Encode(Buffer.from(plain)), b32);
    assert.equal(Buffer.from(base32Decode(b32)).toString(), plain);
    assert.equal(Buffer.from(base32Decode(b32.toUpperCase())).toString(), plain);
  }
  for (const bad of ['m', 'mzx', 'mzxw6y', 'mz1q', 'mz=q', 'mzé'])
    assert.throws(() => base32Decode(bad), CodecError, bad);
});

test('packet: header layout, round trip at an offset, unknown flags refused', () => {
  const p = packet(Uint8Array.of(9, 8, 7), TUNNEL_FLAG.FIN);
  assert.equal(tunnelPacketLength(p), TUNNEL_HEADER_BYTES + 3);
  const out = new Uint8Array(5 + tunnelPacketLength(p)).fill(0xaa);
  assert.equal(encodeTunnelPacket(p, out, 5), 16);
  assert.equal(Buffer.from(out.subarray(5)).toString('hex'), 'deadbeef01fffffff000000007090807');
  assert.deepEqual(decodeTunnelPacket(out, 5), { ...p, data: Uint8Array.of(9, 8, 7) });
  out[9] = 0x80;
  assert.throws(() => decodeTunnelPacket(out, 5), /unknown flags/);
  assert.throws(() => decodeTunnelPacket(out.subarray(0, 17), 5), /shorter than its header/);
  assert.throws(() => encodeTunnelPacket({ ...p, flags: 8 }, out, 0), /unknown flags/);
});

test('query: a full one fits RFC 1035 limits, survives case mixing, decodes to the packet', () => {
  const max = maxUpstreamData(DOMAIN);
  assert.ok(max > 100, `room for ${max} bytes`);
  const data = Uint8Array.from({ length: max }, (_, i) => i);
  const msg = encodeTunnelQuery(DOMAIN, packet(data), 0x1234, NONCE);
  const m = decodeDnsMessage(msg, 0)!.value;
  const name = m.questions[0]!.name;
  assert.ok(name.length <= 253, `name of ${name.length}`);
  assert.ok(name.split('.').every((l) => l.length >= 1 && l.length <= 63));
  assert.equal(m.questions[0]!.type, DNS_TYPE.TXT);
  assert.equal(m.additionals[0]!.type, DNS_TYPE.OPT);
  assert.equal(m.additionals[0]!.class, EDNS_PAYLOAD_BYTES);
  // A resolver that mixes case (0x20) still delivers the same packet.
  const mixed = Buffer.from(msg);
  for (let i = 13; i < 13 + 200; i += 3) if (mixed[i]! >= 0x61) mixed[i]! -= 0x20;
  for (const buf of [msg, mixed]) {
    const q = decodeTunnelQuery(buf, DOMAIN);
    assert.equal(q.kind, 'tunnel');
    if (q.kind !== 'tunnel') return;
    assert.deepEqual(Buffer.from(q.packet.data), Buffer.from(data));
    assert.equal(q.packet.session, 0xdeadbeef);
    assert.equal(q.answerLimit, EDNS_PAYLOAD_BYTES);
  }
  assert.throws(
    () => encodeTunnelQuery(DOMAIN, packet(new Uint8Array(max + 1)), 1, NONCE),
    /too much data/,
  );
});

test('query: other names under the domain, foreign names and non-queries', () => {
  const other = decodeTunnelQuery(dnsMessageBytes(dnsQuery(1, `xyz.${DOMAIN}`, 1)), DOMAIN);
  assert.equal(other.kind, 'other');
  const notB32 = decodeTunnelQuery(
    dnsMessageBytes(dnsQuery(1, `a1.${DOMAIN}`, DNS_TYPE.TXT)),
    DOMAIN,
  );
  assert.equal(notB32.kind, 'other');
  assert.equal(notB32.answerLimit, 512);
  const apex = decodeTunnelQuery(dnsMessageBytes(dnsQuery(1, DOMAIN, DNS_TYPE.TXT)), DOMAIN);
  assert.equal(apex.kind, 'other');
  const foreign = decodeTunnelQuery(
    dnsMessageBytes(dnsQuery(1, 'x.example.com', DNS_TYPE.TXT)),
    DOMAIN,
  );
  assert.equal(foreign.kind, 'foreign');
  // Looks like the domain only as a suffix of a label: not under it.
  const lookalike = decodeTunnelQuery(
    dnsMessageBytes(dnsQuery(1, 'xt.example.com', DNS_TYPE.TXT)),
    DOMAIN,
  );
  assert.equal(lookalike.kind, 'foreign');
  const answer = Buffer.from(encodeTunnelQuery(DOMAIN, packet(new Uint8Array(1)), 1, NONCE));
  answer[2]! |= 0x80;
  assert.throws(() => decodeTunnelQuery(answer, DOMAIN), /not a standard query/);
  assert.throws(() => decodeTunnelQuery(answer.subarray(0, 20), DOMAIN), /truncated/);
});

test('answer: the largest one fits the asker’s limit and carries the packet back', () => {
  for (const size of [0, 1, 254, 255, 256, 600]) {
    const q = decodeTunnelQuery(
      encodeTunnelQuery(DOMAIN, packet(new Uint8Array(0)), 77, NONCE),
      DOMAIN,
    );
    if (q.kind !== 'tunnel') throw new Error('not a tunnel query');
    const max = maxDownstreamData(q);
    assert.ok(max >= 600, `room for ${max}`);
    for (const n of [size, max]) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 7) & 0xff);
      const msg = encodeTunnelAnswer(q.message, packet(data, TUNNEL_FLAG.FIN));
      assert.ok(msg.length <= EDNS_PAYLOAD_BYTES, `answer of ${msg.length}`);
      const back = decodeTunnelAnswer(msg);
      assert.equal(back.id, 77);
      assert.deepEqual(Buffer.from(back.packet!.data), Buffer.from(data));
      assert.equal(back.packet!.flags, TUNNEL_FLAG.FIN);
      // The generic decoder reads the same message (the pointer, the TXT strings, the OPT).
      const m = decodeDnsMessage(msg, 0)!.value;
      assert.equal(m.answers[0]!.name, m.questions[0]!.name);
      assert.equal(m.additionals[0]!.type, DNS_TYPE.OPT);
    }
    assert.equal(
      encodeTunnelAnswer(q.message, packet(new Uint8Array(max + 1))).length > EDNS_PAYLOAD_BYTES,
      true,
    );
  }
  // Without EDNS the limit is 512 bytes.
  const noOpt = Buffer.from(encodeTunnelQuery(DOMAIN, packet(new Uint8Array(0)), 1, NONCE));
  noOpt[11] = 0;
  const plain = decodeTunnelQuery(noOpt.subarray(0, -11), DOMAIN);
  assert.ok(plain.kind === 'tunnel');
  if (plain.kind !== 'tunnel') return;
  const fit = encodeTunnelAnswer(plain.message, packet(new Uint8Array(maxDownstreamData(plain))));
  assert.ok(fit.length <= 512, `answer of ${fit.length}`);
});

test('answer: empty answers and error codes carry no packet; a bad TXT string is refused', () => {
  const q = decodeTunnelQuery(
    encodeTunnelQuery(DOMAIN, packet(new Uint8Array(0)), 5, NONCE),
    DOMAIN,
  );
  const refused = encodeTunnelAnswer(q.message, null, DNS_RCODE.REFUSED);
  assert.deepEqual(decodeTunnelAnswer(refused), { id: 5, packet: null });
  assert.equal(decodeDnsMessage(refused, 0)!.value.flags & 0xf, DNS_RCODE.REFUSED);
  const msg = Buffer.from(encodeTunnelAnswer(q.message, packet(Uint8Array.of(1, 2, 3))));
  // The first TXT string's length byte, made to run past the record.
  const txtAt = msg.length - 11 - (TUNNEL_HEADER_BYTES + 3) - 1;
  assert.equal(msg[txtAt], TUNNEL_HEADER_BYTES + 3);
  msg[txtAt] = 200;
  assert.throws(() => decodeTunnelAnswer(msg), CodecError);
  assert.throws(
    () => decodeTunnelAnswer(encodeTunnelQuery(DOMAIN, packet(new Uint8Array(0)), 1, NONCE)),
    /not an answer/,
  );
});

test('domain: canonical form, and clear refusals', () => {
  assert.equal(checkTunnelDomain('T.Example.COM.'), 't.example.com');
  for (const bad of ['', 'a..b', '-a.b', 'a_b.c', 'x'.repeat(64) + '.com', 'é.com'])
    assert.throws(() => checkTunnelDomain(bad), /not a host name/, bad);
  assert.throws(() => checkTunnelDomain(Array(4).fill('a'.repeat(50)).join('.')), /too long/);
});
