import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  IP_PROTO,
  decodeIpv4Flow,
  decodeIpv6Flow,
  encodeIpv4Udp,
  encodeIpv4Unreachable,
  encodeIpv6Udp,
  encodeIpv6Unreachable,
  ipv4Fragmented,
  ipv4IcmpType,
  ipv6Fragmented,
  ipv6IcmpType,
  ipv4ChecksumsValid,
  ipv6ChecksumsValid,
  rewriteIpv6Flow,
  ipv4ToU32,
  rewriteIpv4Flow,
  u32ToIpv4,
  udpPayload,
} from './ip-packet.js';
import { CodecError } from '../errors.js';

// The IPv4 header of the worked example in Wikipedia's "Internet Protocol version 4" article
// (Header checksum section): 192.168.0.1 → 192.168.0.199, UDP, checksum b861. Padded here with a
// UDP header whose checksum is 0 (none) to the 0x73 bytes its total length says.
const WIKI_HEADER_HEX = '450000730000400040 11b861c0a80001c0a800c7'.replace(/ /g, '');

function tcpPacket(src: number, sp: number, dst: number, dp: number, payload = 0): Uint8Array {
  const p = new Uint8Array(40 + payload);
  p[0] = 0x45;
  p[2] = (40 + payload) >> 8;
  p[3] = (40 + payload) & 0xff;
  p[6] = 0x40; // DF
  p[8] = 64;
  p[9] = IP_PROTO.TCP;
  const dv = new DataView(p.buffer);
  dv.setUint32(12, src);
  dv.setUint32(16, dst);
  dv.setUint16(20, sp);
  dv.setUint16(22, dp);
  dv.setUint32(24, 0xa4a7e1f6);
  p[32] = 0x50;
  p[33] = 0x02;
  dv.setUint16(34, 64240);
  for (let i = 0; i < payload; i++) p[40 + i] = (i * 7) & 0xff;
  // full checksums, the slow way
  const sum = (from: number, to: number, init: number): number => {
    let s = init;
    for (let i = from; i < to; i += 2) s += (p[i]! << 8) | (i + 1 < to ? p[i + 1]! : 0);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    return s;
  };
  dv.setUint16(10, ~sum(0, 20, 0) & 0xffff);
  const pseudo = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 6 + 20 + payload;
  dv.setUint16(36, ~sum(20, 40 + payload, pseudo) & 0xffff);
  return p;
}

test('a published IPv4 header: fields read, header checksum verifies', () => {
  const p = Buffer.alloc(0x73);
  Buffer.from(WIKI_HEADER_HEX, 'hex').copy(p);
  p.writeUInt16BE(1234, 20);
  p.writeUInt16BE(53, 22);
  p.writeUInt16BE(0x73 - 20, 24);
  const f = decodeIpv4Flow(p);
  assert.ok(f);
  assert.equal(u32ToIpv4(f.src), '192.168.0.1');
  assert.equal(u32ToIpv4(f.dst), '192.168.0.199');
  assert.equal(f.protocol, IP_PROTO.UDP);
  assert.equal(f.srcPort, 1234);
  assert.equal(f.dstPort, 53);
  assert.ok(ipv4ChecksumsValid(p));
  p[15] = p[15]! ^ 1; // a flipped bit in the source address
  assert.ok(!ipv4ChecksumsValid(p));
});

test('rewrite keeps both checksums valid (TCP, odd payload lengths, any addresses and ports)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 4, maxLength: 4 }),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 4, maxLength: 4 }),
      fc.integer({ min: 0, max: 41 }),
      ([a, b, c, d], [p1, p2, p3, p4], n) => {
        const pkt = tcpPacket(a!, p1!, b!, p2!, n);
        assert.ok(ipv4ChecksumsValid(pkt));
        const f = decodeIpv4Flow(pkt)!;
        rewriteIpv4Flow(pkt, f, c!, p3!, d!, p4!);
        const g = decodeIpv4Flow(pkt)!;
        assert.deepEqual([g.src, g.srcPort, g.dst, g.dstPort], [c, p3, d, p4]);
        assert.ok(ipv4ChecksumsValid(pkt));
        // and back: the original bytes
        rewriteIpv4Flow(pkt, g, a!, p1!, b!, p2!);
        assert.deepEqual(pkt, tcpPacket(a!, p1!, b!, p2!, n));
      },
    ),
  );
});

test('UDP: encode, read back, rewrite; checksum 0 (none) stays 0', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.uint8Array({ maxLength: 300 }),
      (src, dst, payload) => {
        const p = encodeIpv4Udp(src, 5353, dst, 53, payload);
        assert.ok(ipv4ChecksumsValid(p));
        const f = decodeIpv4Flow(p)!;
        assert.equal(f.protocol, IP_PROTO.UDP);
        assert.deepEqual(Buffer.from(udpPayload(p, f)), Buffer.from(payload));
        rewriteIpv4Flow(p, f, dst, 1, src, 2);
        assert.ok(ipv4ChecksumsValid(p));
        p[26] = 0;
        p[27] = 0;
        rewriteIpv4Flow(p, decodeIpv4Flow(p)!, src, 3, dst, 4);
        assert.equal(p.readUInt16BE(26), 0);
      },
    ),
  );
});

test('what a NAT passes over is null; what cannot be right is a CodecError', () => {
  const p = tcpPacket(1, 2, 3, 4);
  const frag = Uint8Array.from(p);
  frag[6] = 0x20; // MF
  assert.equal(decodeIpv4Flow(frag), null);
  const icmp = Uint8Array.from(p);
  icmp[9] = IP_PROTO.ICMP;
  assert.equal(decodeIpv4Flow(icmp), null);
  assert.throws(() => decodeIpv4Flow(p.subarray(0, 19)), CodecError);
  const badIhl = Uint8Array.from(p);
  badIhl[0] = 0x44;
  assert.throws(() => decodeIpv4Flow(badIhl), CodecError);
  const long = Uint8Array.from(p);
  long[3] = 41;
  assert.throws(() => decodeIpv4Flow(long), CodecError);
  assert.equal(decodeIpv4Flow(p.subarray(0, 30).map((x, i) => (i === 3 ? 30 : x))), null);
});

test('fuzz: any bytes give a flow, null or a CodecError, never another exception', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), fc.boolean(), (bytes, v4) => {
      if (v4 && bytes.length > 0) bytes[0] = 0x40 | (bytes[0]! & 0x0f);
      try {
        const f = decodeIpv4Flow(bytes);
        if (f) {
          assert.ok(f.l4 + 8 <= f.length && f.length <= bytes.length);
          rewriteIpv4Flow(bytes, f, 1, 2, 3, 4);
          udpPayload(bytes, f);
        }
      } catch (err) {
        if (!(err instanceof CodecError)) throw err;
      }
    }),
    { numRuns: 5000 },
  );
});

test('IPv4 text and u32', () => {
  assert.equal(ipv4ToU32('100.96.0.1'), 0x64600001);
  assert.equal(u32ToIpv4(0xffffffff), '255.255.255.255');
  assert.throws(() => ipv4ToU32('256.0.0.1'), CodecError);
  assert.throws(() => ipv4ToU32('::1'), CodecError);
});

/** An IPv6/TCP SYN with a full checksum computed the slow way. */
function tcp6Packet(
  src: Uint8Array,
  sp: number,
  dst: Uint8Array,
  dp: number,
  payload = 0,
): Uint8Array {
  const p = new Uint8Array(60 + payload);
  const dv = new DataView(p.buffer);
  p[0] = 0x60;
  dv.setUint16(4, 20 + payload);
  p[6] = IP_PROTO.TCP;
  p[7] = 64;
  p.set(src, 8);
  p.set(dst, 24);
  dv.setUint16(40, sp);
  dv.setUint16(42, dp);
  dv.setUint32(44, 0x01020304);
  p[52] = 0x50;
  p[53] = 0x02;
  dv.setUint16(54, 64800);
  for (let i = 0; i < payload; i++) p[60 + i] = (i * 13) & 0xff;
  let s = 20 + payload + IP_PROTO.TCP;
  for (let i = 8; i < 40; i += 2) s += (p[i]! << 8) | p[i + 1]!;
  for (let i = 40; i < 60 + payload; i += 2) s += (p[i]! << 8) | (i + 1 < p.length ? p[i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  dv.setUint16(56, ~s & 0xffff);
  return p;
}

const addr16 = fc.uint8Array({ minLength: 16, maxLength: 16 });

test('IPv6: rewrite keeps the TCP checksum valid, and back gives the original bytes', () => {
  fc.assert(
    fc.property(
      addr16,
      addr16,
      addr16,
      addr16,
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 4, maxLength: 4 }),
      fc.integer({ min: 0, max: 41 }),
      (a, b, c, d, [p1, p2, p3, p4], n) => {
        const pkt = tcp6Packet(a, p1!, b, p2!, n);
        assert.ok(ipv6ChecksumsValid(pkt));
        const f = decodeIpv6Flow(pkt)!;
        assert.deepEqual(
          [Buffer.from(f.src), f.srcPort, Buffer.from(f.dst), f.dstPort],
          [Buffer.from(a), p1, Buffer.from(b), p2],
        );
        rewriteIpv6Flow(pkt, f, c, p3!, d, p4!);
        const g = decodeIpv6Flow(pkt)!;
        assert.deepEqual(
          [Buffer.from(g.src), g.srcPort, Buffer.from(g.dst), g.dstPort],
          [Buffer.from(c), p3, Buffer.from(d), p4],
        );
        assert.ok(ipv6ChecksumsValid(pkt));
        rewriteIpv6Flow(pkt, g, a, p1!, b, p2!);
        assert.deepEqual(pkt, tcp6Packet(a, p1!, b, p2!, n));
      },
    ),
  );
});

test('IPv6 UDP: encode, read back, rewrite', () => {
  fc.assert(
    fc.property(addr16, addr16, fc.uint8Array({ maxLength: 300 }), (src, dst, payload) => {
      const p = encodeIpv6Udp(src, 5353, dst, 53, payload);
      assert.ok(ipv6ChecksumsValid(p));
      const f = decodeIpv6Flow(p)!;
      assert.equal(f.protocol, IP_PROTO.UDP);
      assert.deepEqual(Buffer.from(udpPayload(p, f)), Buffer.from(payload));
      rewriteIpv6Flow(p, f, Uint8Array.from(dst), 1, Uint8Array.from(src), 2);
      assert.ok(ipv6ChecksumsValid(p));
    }),
  );
});

test('IPv6: extension headers and ICMPv6 are null; a short or overlong packet is a CodecError', () => {
  const p = tcp6Packet(new Uint8Array(16), 1, new Uint8Array(16), 2);
  for (const next of [0, 44, IP_PROTO.ICMPV6]) {
    const q = Uint8Array.from(p);
    q[6] = next;
    assert.equal(decodeIpv6Flow(q), null, `next header ${next}`);
  }
  const jumbo = Uint8Array.from(p);
  jumbo[4] = jumbo[5] = 0;
  assert.equal(decodeIpv6Flow(jumbo), null);
  assert.throws(() => decodeIpv6Flow(p.subarray(0, 39)), CodecError);
  assert.throws(() => decodeIpv6Flow(p.subarray(0, 59)), CodecError);
  const v4 = Uint8Array.from(p);
  v4[0] = 0x45;
  assert.throws(() => decodeIpv6Flow(v4), CodecError);
});

test('fuzz IPv6: any bytes give a flow, null or a CodecError, never another exception', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), fc.boolean(), (bytes, v6) => {
      if (v6 && bytes.length > 0) bytes[0] = 0x60 | (bytes[0]! & 0x0f);
      try {
        const f = decodeIpv6Flow(bytes);
        if (f) {
          assert.ok(f.l4 + 8 <= f.length && f.length <= bytes.length);
          rewriteIpv6Flow(bytes, f, new Uint8Array(16), 2, new Uint8Array(16).fill(1), 4);
          udpPayload(bytes, f);
        }
      } catch (err) {
        if (!(err instanceof CodecError)) throw err;
      }
    }),
    { numRuns: 5000 },
  );
});

/** One's-complement sum folded, the slow way, for checking checksums. */
function folded(b: Uint8Array, from: number, to: number, init = 0): number {
  let s = init;
  for (let i = from; i < to; i += 2) s += (b[i]! << 8) | (i + 1 < to ? b[i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

test('ICMP: a ping is recognised; the unreachable answer quotes it, swapped, checksums right', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 56 }),
      (src, dst, n) => {
        const ping = tcpPacket(src, 0, dst, 0, n); // then made an ICMP echo request
        ping[9] = IP_PROTO.ICMP;
        ping[20] = 8;
        assert.equal(ipv4IcmpType(ping), 8);
        const r = encodeIpv4Unreachable(ping, 13);
        assert.equal(folded(r, 0, 20), 0xffff, 'IPv4 header checksum');
        assert.equal(folded(r, 20, r.length), 0xffff, 'ICMP checksum');
        assert.deepEqual([r.readUInt32BE(12), r.readUInt32BE(16), r[20], r[21]], [dst, src, 3, 13]);
        assert.deepEqual(r.subarray(28), Buffer.from(ping.subarray(0, 28)));
      },
    ),
  );
  const frag = tcpPacket(1, 2, 3, 4);
  frag[6] = 0x20;
  assert.ok(ipv4Fragmented(frag));
  frag[9] = IP_PROTO.ICMP;
  assert.equal(ipv4IcmpType(frag), -1, 'a fragment is not read as a ping');
  assert.equal(ipv4IcmpType(tcpPacket(1, 2, 3, 4)), -1);
  assert.equal(ipv4IcmpType(new Uint8Array(3)), -1);
});

test('ICMPv6: the unreachable answer quotes the ping, at most 1280 bytes, checksum right', () => {
  fc.assert(
    fc.property(addr16, addr16, fc.integer({ min: 0, max: 1500 }), (src, dst, n) => {
      const ping = tcp6Packet(src, 0, dst, 0, n);
      ping[6] = IP_PROTO.ICMPV6;
      ping[40] = 128;
      assert.equal(ipv6IcmpType(ping), 128);
      assert.ok(!ipv6Fragmented(ping));
      const r = encodeIpv6Unreachable(ping, 1);
      assert.ok(r.length <= 1280);
      const len = r.length - 40;
      assert.equal(folded(r, 40, r.length, folded(r, 8, 40) + len + IP_PROTO.ICMPV6), 0xffff);
      assert.deepEqual(
        [Buffer.from(r.subarray(8, 24)), Buffer.from(r.subarray(24, 40))],
        [Buffer.from(dst), Buffer.from(src)],
      );
      assert.deepEqual([r[40], r[41]], [1, 1]);
    }),
    { numRuns: 200 },
  );
  const frag = tcp6Packet(new Uint8Array(16), 1, new Uint8Array(16), 2);
  frag[6] = 44;
  assert.ok(ipv6Fragmented(frag));
  assert.equal(ipv6IcmpType(frag), -1);
});
