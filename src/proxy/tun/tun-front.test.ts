import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { TunFront } from './tun-front.js';
import { DEFAULT_FAKE_RANGE6, FakeDns, parseIpv6Prefix64 } from './fake-dns.js';
import {
  IP_PROTO,
  decodeIpv4Flow,
  decodeIpv6Flow,
  encodeIpv4Udp,
  encodeIpv6Udp,
  ipv4ChecksumsValid,
  ipv6ChecksumsValid,
  ipv4ToU32,
  u32ToIpv4,
  udpPayload,
} from '../../codec/ip-packet.js';
import {
  DNS_TYPE,
  answerAddresses,
  decodeDnsMessage,
  dnsMessageBytes,
  dnsQuery,
  dnsRcode,
} from '../../codec/dns.js';
import { DialError } from '../../errors.js';
import { bytesToIPv6, ipv6ToBytes } from '../../codec/socks-addr.js';
import type { PacketDialer, StreamDialer, Target } from '../../transport/types.js';
import { duplexPair } from '../../../test/helpers/duplex-pair.js';

const APP = ipv4ToU32('100.95.255.253');
const PEER = ipv4ToU32('100.95.255.254');
const APP6 = ipv6ToBytes('fd4c:6164:6472::1');
const PEER6 = ipv6ToBytes('fd4c:6164:6472::2');

/** An IPv6 TCP segment with its checksum. */
function syn6(src: Uint8Array, sp: number, dst: Uint8Array, dp: number, flags = 0x02): Uint8Array {
  const p = Buffer.alloc(60);
  p[0] = 0x60;
  p.writeUInt16BE(20, 4);
  p[6] = IP_PROTO.TCP;
  p[7] = 64;
  p.set(src, 8);
  p.set(dst, 24);
  p.writeUInt16BE(sp, 40);
  p.writeUInt16BE(dp, 42);
  p[52] = 0x50;
  p[53] = flags;
  let s = 20 + 6;
  for (let i = 8; i < 60; i += 2) s += p.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  p.writeUInt16BE(~s & 0xffff, 56);
  return p;
}

function syn(src: number, sp: number, dst: number, dp: number, flags = 0x02): Uint8Array {
  const p = Buffer.alloc(40);
  p[0] = 0x45;
  p.writeUInt16BE(40, 2);
  p[8] = 64;
  p[9] = IP_PROTO.TCP;
  p.writeUInt32BE(src, 12);
  p.writeUInt32BE(dst, 16);
  p.writeUInt16BE(sp, 20);
  p.writeUInt16BE(dp, 22);
  p[32] = 0x50;
  p[33] = flags;
  let h = 0;
  for (let i = 0; i < 20; i += 2) h += p.readUInt16BE(i);
  while (h > 0xffff) h = (h & 0xffff) + (h >>> 16);
  p.writeUInt16BE(~h & 0xffff, 10);
  let s = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 6 + 20;
  for (let i = 20; i < 40; i += 2) s += p.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  p.writeUInt16BE(~s & 0xffff, 36);
  return p;
}

interface Rig {
  front: TunFront;
  written: Buffer[];
  dns: FakeDns;
  sent: { payload: Buffer; target: Target }[];
  replyTo: ((payload: Buffer, from: Target) => void)[];
  closed: number;
  clock: { now: number };
}

/** What the device does: a packet the front hands back is written back into the stack. */
function feed(r: Rig, p: Uint8Array): void {
  if (r.front.handlePacket(p)) r.written.push(Buffer.from(p));
}

function rig(
  o: {
    maxConnections?: number;
    dialer?: StreamDialer;
    maxUdpFlows?: number;
    tunAddress?: number;
    natPeer?: number;
    /** Carry IPv6 (the device's IPv6 addresses and an IPv6 fake range). */
    v6?: boolean;
  } = {},
): Rig {
  const written: Buffer[] = [];
  const sent: Rig['sent'] = [];
  const replyTo: Rig['replyTo'] = [];
  const clock = { now: 1_000 };
  const r = { written, sent, replyTo, closed: 0, clock } as Partial<Rig> as Rig;
  const packetDialer: PacketDialer = {
    open(onPacket) {
      replyTo.push(onPacket);
      return {
        send: (payload, target) => sent.push({ payload: Buffer.from(payload), target }),
        close: () => r.closed++,
      };
    },
  };
  r.dns = new FakeDns({
    pinned: new Map([['server.test', ['198.18.0.9', '2001:2:0:60::1']]]),
    ...(o.v6 ? { range6: DEFAULT_FAKE_RANGE6 } : {}),
  });
  r.front = new TunFront({
    device: { write: (p) => (written.push(Buffer.from(p)), true) },
    dialer: o.dialer ?? { dial: () => Promise.reject(new DialError('ERR_DIAL_REFUSED', 'no')) },
    packetDialer,
    fakeDns: r.dns,
    tunAddress: o.tunAddress ?? APP,
    natPeer: o.natPeer ?? PEER,
    excluded: (ip) => ip === ipv4ToU32('198.18.0.9'),
    ...(o.v6
      ? {
          tunAddress6: APP6,
          natPeer6: PEER6,
          excluded6: (ip: Uint8Array) => bytesToIPv6(ip) === '2001:2:0:60::1',
        }
      : {}),
    maxUdpFlows: o.maxUdpFlows ?? 8,
    ...(o.maxConnections !== undefined ? { maxConnections: o.maxConnections } : {}),
    udpIdleMs: 60_000,
    now: () => clock.now,
  });
  r.front.setListenPort(4242);
  return r;
}

test('fake DNS: one address per name in the range, pinned names real, AAAA empty, junk ignored', () => {
  const dns = new FakeDns({ pinned: new Map([['server.test', ['198.18.0.9']]]) });
  const ask = (name: string, type: number = DNS_TYPE.A) => {
    const a = dns.answer(dnsMessageBytes(dnsQuery(7, name, type)));
    assert.ok(a);
    return decodeDnsMessage(a, 0)!.value;
  };
  const a1 = answerAddresses(ask('Blocked.Example'));
  const a2 = answerAddresses(ask('blocked.example.'));
  assert.deepEqual(a1, a2);
  assert.match(a1[0]!, /^100\.(9[6-9]|10[0-9]|11[01])\./);
  assert.equal(dns.nameOf(ipv4ToU32(a1[0]!)), 'blocked.example');
  assert.deepEqual(answerAddresses(ask('server.test')), ['198.18.0.9']);
  const aaaa = ask('blocked.example', DNS_TYPE.AAAA);
  assert.equal(dnsRcode(aaaa.flags), 0);
  assert.equal(aaaa.answers.length, 0);
  assert.equal(dns.answer(Buffer.from('not dns')), null);
});

test('fake DNS: the table is bounded; the least recently used name gives up its address', () => {
  const dns = new FakeDns({ maxNames: 2 });
  const a = dns.addressOf('a.test');
  const b = dns.addressOf('b.test');
  dns.addressOf('a.test'); // a is now the most recent
  const c = dns.addressOf('c.test');
  assert.equal(c, b);
  assert.equal(dns.nameOf(b), 'c.test');
  assert.equal(dns.nameOf(a), 'a.test');
});

test('fuzz: fake DNS answers any bytes with an answer or null, never an exception', () => {
  const dns = new FakeDns({ maxNames: 16 });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (b) => void dns.answer(b)),
    {
      numRuns: 3000,
    },
  );
});

test('TCP: a SYN is turned toward the listener, its replies back toward the app; checksums hold', () => {
  const r = rig();
  const fake = r.dns.addressOf('blocked.example');
  feed(r, syn(APP, 40000, fake, 443));
  const out = r.written.shift()!;
  assert.ok(ipv4ChecksumsValid(out));
  const f = decodeIpv4Flow(out)!;
  assert.deepEqual([f.src, f.dst, f.dstPort], [PEER, APP, 4242]);
  const natPort = f.srcPort;
  feed(r, syn(APP, 4242, PEER, natPort, 0x12)); // SYN-ACK from the listener
  const back = decodeIpv4Flow(r.written.shift()!)!;
  assert.deepEqual([back.src, back.srcPort, back.dst, back.dstPort], [fake, 443, APP, 40000]);
  // the next segment of the same flow takes the same NAT port
  feed(r, syn(APP, 40000, fake, 443, 0x10));
  assert.equal(decodeIpv4Flow(r.written.shift()!)!.srcPort, natPort);
  assert.equal(r.front.stats().tcpSessions, 1);
});

test("TCP: no session without a SYN; the client's own server is never looped; sessions expire", () => {
  const r = rig();
  feed(r, syn(APP, 40001, ipv4ToU32('198.18.1.1'), 80, 0x10));
  feed(r, syn(APP, 40002, ipv4ToU32('198.18.0.9'), 8388));
  assert.equal(r.written.length, 0);
  feed(r, syn(APP, 40003, ipv4ToU32('198.18.1.1'), 80));
  assert.equal(r.front.stats().tcpSessions, 1);
  r.clock.now += 61_000;
  r.front.sweep();
  assert.equal(r.front.stats().tcpSessions, 0);
});

test("UDP: DNS to any address is answered here; other flows go by name, replies from the flow's peer", () => {
  const r = rig({ maxUdpFlows: 2 });
  const q = dnsMessageBytes(dnsQuery(9, 'chat.example', DNS_TYPE.A));
  feed(r, encodeIpv4Udp(APP, 5000, ipv4ToU32('198.18.0.9'), 53, q));
  const dnsReply = r.written.shift()!;
  const f = decodeIpv4Flow(dnsReply)!;
  assert.deepEqual([u32ToIpv4(f.src), f.srcPort, f.dst, f.dstPort], ['198.18.0.9', 53, APP, 5000]);
  const addr = answerAddresses(decodeDnsMessage(udpPayload(dnsReply, f), 0)!.value)[0]!;
  assert.equal(r.sent.length, 0, 'the query never left');

  feed(r, encodeIpv4Udp(APP, 5001, ipv4ToU32(addr), 3478, Buffer.from('hi')));
  assert.deepEqual(r.sent[0]!.target, { host: 'chat.example', port: 3478 });
  r.replyTo[0]!(Buffer.from('yo'), { host: '198.18.0.7', port: 3478 });
  const g = decodeIpv4Flow(r.written.shift()!)!;
  assert.deepEqual([u32ToIpv4(g.src), g.srcPort, g.dstPort], [addr, 3478, 5001]);

  // bounded: a third flow closes the least recently used one
  feed(r, encodeIpv4Udp(APP, 5002, ipv4ToU32('198.18.1.1'), 9, Buffer.from('a')));
  feed(r, encodeIpv4Udp(APP, 5003, ipv4ToU32('198.18.1.1'), 9, Buffer.from('b')));
  assert.equal(r.front.stats().udpFlows, 2);
  assert.equal(r.closed, 1);
  r.clock.now += 61_000;
  r.front.sweep();
  assert.equal(r.front.stats().udpFlows, 0);
  assert.equal(r.closed, 3);
});

test('IPv6 TCP: a SYN to a fake address is turned toward the IPv6 listener, and back', () => {
  const r = rig({ v6: true });
  const aaaa = r.dns.answer(dnsMessageBytes(dnsQuery(3, 'blocked.example', DNS_TYPE.AAAA)))!;
  const fakeText = answerAddresses(decodeDnsMessage(aaaa, 0)!.value)[0]!;
  assert.match(fakeText, /^fd4c:6164:6472:1::/);
  const fake = ipv6ToBytes(fakeText);
  assert.equal(r.dns.nameOf6(fake), 'blocked.example');
  feed(r, syn6(APP6, 40000, fake, 443));
  const out = r.written.shift()!;
  assert.ok(ipv6ChecksumsValid(out));
  const f = decodeIpv6Flow(out)!;
  assert.deepEqual(
    [bytesToIPv6(f.src), bytesToIPv6(f.dst), f.dstPort],
    ['fd4c:6164:6472::2', 'fd4c:6164:6472::1', 4242],
  );
  feed(r, syn6(APP6, 4242, PEER6, f.srcPort, 0x12));
  const backBytes = r.written.shift()!;
  assert.ok(ipv6ChecksumsValid(backBytes));
  const back = decodeIpv6Flow(backBytes)!;
  assert.deepEqual([bytesToIPv6(back.src), back.srcPort, back.dstPort], [fakeText, 443, 40000]);
  // an IPv4 session on the same app port stays apart
  feed(r, syn(APP, 40000, r.dns.addressOf('blocked.example'), 443));
  assert.equal(r.front.stats().tcpSessions, 2);
  // the client's own server over IPv6 is never looped
  feed(r, syn6(APP6, 40001, ipv6ToBytes('2001:2:0:60::1'), 8388));
  assert.equal(r.front.stats().tcpSessions, 2);
});

test('IPv6 UDP: AAAA answered with fake addresses; flows go by name; not carried means dropped', () => {
  const r = rig({ v6: true });
  const q = dnsMessageBytes(dnsQuery(9, 'chat.example', DNS_TYPE.AAAA));
  const resolver = ipv6ToBytes('2001:2:0:62::53');
  feed(r, encodeIpv6Udp(APP6, 5000, resolver, 53, q));
  const dnsReply = r.written.shift()!;
  assert.ok(ipv6ChecksumsValid(dnsReply));
  const f = decodeIpv6Flow(dnsReply)!;
  const addr = answerAddresses(decodeDnsMessage(udpPayload(dnsReply, f), 0)!.value)[0]!;
  assert.match(addr, /^fd4c:6164:6472:1::/);
  assert.deepEqual(
    answerAddresses(
      decodeDnsMessage(
        r.dns.answer(dnsMessageBytes(dnsQuery(1, 'server.test', DNS_TYPE.AAAA)))!,
        0,
      )!.value,
    ),
    ['2001:2:0:60::1'],
  );
  feed(r, encodeIpv6Udp(APP6, 5001, ipv6ToBytes(addr), 3478, Buffer.from('hi')));
  assert.deepEqual(r.sent[0]!.target, { host: 'chat.example', port: 3478 });
  r.replyTo[0]!(Buffer.from('yo'), { host: '198.18.0.7', port: 3478 });
  const reply = r.written.shift()!;
  assert.ok(ipv6ChecksumsValid(reply));
  const g = decodeIpv6Flow(reply)!;
  assert.deepEqual(
    [bytesToIPv6(g.src), g.srcPort, bytesToIPv6(g.dst), g.dstPort],
    [addr, 3478, 'fd4c:6164:6472::1', 5001],
  );
  // a literal IPv6 destination goes as its address
  feed(r, encodeIpv6Udp(APP6, 5002, ipv6ToBytes('2001:2:0:61::1'), 9, Buffer.from('a')));
  assert.deepEqual(r.sent[1]!.target, { host: '2001:2:0:61::1', port: 9 });

  const off = rig();
  feed(off, encodeIpv6Udp(APP6, 5000, resolver, 53, q));
  feed(off, syn6(APP6, 40000, ipv6ToBytes('2001:2:0:61::1'), 80));
  assert.equal(off.written.length, 0);
  assert.equal(off.front.stats().dropped, 2);
});

test('fuzz: any packet from the device is handled or dropped, never an exception', () => {
  const r = rig({ v6: true });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.integer({ min: 0, max: 2 }), (b, v) => {
      if (v === 1 && b.length > 0) b[0] = 0x45;
      if (v === 2 && b.length > 0) b[0] = 0x60;
      feed(r, b);
    }),
    { numRuns: 5000 },
  );
});

// The accept path over loopback: 127.0.0.1 plays the device's address, 127.0.0.2 the NAT peer.
async function acceptRig(
  dialer: StreamDialer,
  maxConnections?: number,
): Promise<{ r: Rig; app: Socket }> {
  const r = rig({
    dialer,
    tunAddress: ipv4ToU32('127.0.0.1'),
    natPeer: ipv4ToU32('127.0.0.2'),
    ...(maxConnections !== undefined ? { maxConnections } : {}),
  });
  const port = await r.front.listen();
  const fake = r.dns.addressOf('blocked.example');
  feed(r, syn(ipv4ToU32('127.0.0.1'), 40000, fake, 443));
  const natPort = decodeIpv4Flow(r.written.shift()!)!.srcPort;
  const app = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2', localPort: natPort });
  return { r, app };
}

test('accept: the dial goes to the name behind the fake address; bytes flow both ways', async () => {
  let target: Target | undefined;
  const { r, app } = await acceptRig({
    dial: async (t) => {
      target = t;
      const [a, b] = duplexPair();
      b.on('data', (d: Buffer) => b.write(Buffer.concat([Buffer.from('echo:'), d])));
      return a;
    },
  });
  try {
    app.write('ping');
    const got = await new Promise<string>((res) => app.once('data', (d) => res(String(d))));
    assert.equal(got, 'echo:ping');
    assert.deepEqual(target, { host: 'blocked.example', port: 443 });
  } finally {
    app.destroy();
    await r.front.close();
  }
});

test("accept: a failed dial resets the app's connection", async () => {
  const { r, app } = await acceptRig({
    dial: () => Promise.reject(new DialError('ERR_DIAL_REFUSED', 'refused')),
  });
  try {
    const err = await new Promise<NodeJS.ErrnoException>((res) => app.once('error', res));
    assert.equal(err.code, 'ECONNRESET');
  } finally {
    app.destroy();
    await r.front.close();
  }
});

test('accept: over the connection limit (an app flooding), a connection is reset, never dialled', async () => {
  let dials = 0;
  const { r, app } = await acceptRig(
    {
      dial: () => {
        dials++;
        return Promise.reject(new DialError('ERR_DIAL', 'unused'));
      },
    },
    0,
  );
  try {
    const err = await new Promise<NodeJS.ErrnoException>((res) => app.once('error', res));
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(dials, 0);
  } finally {
    app.destroy();
    await r.front.close();
  }
});

test('the IPv6 fake range: a /64 or a message saying what is wanted', () => {
  assert.deepEqual(
    [...parseIpv6Prefix64('fd4c:6164:6472:1::/64')],
    [0xfd, 0x4c, 0x61, 0x64, 0x64, 0x72, 0, 1],
  );
  for (const bad of [
    'fd4c::/48',
    'fd4c::1/64',
    '10.0.0.0/64',
    'zz::/64',
    '12345::/64',
    '1:2:3:4:5::/64',
    '/64',
    '',
  ])
    assert.throws(() => parseIpv6Prefix64(bad), /x:x:x:x::\/64/, bad);
});

test('ping: answered "administratively prohibited" at once, within a rate; fragments counted', () => {
  const r = rig({ v6: true });
  const fake = r.dns.addressOf('blocked.example');
  const ping = Buffer.from(syn(APP, 0, fake, 0));
  ping[9] = IP_PROTO.ICMP;
  ping[20] = 8; // echo request
  feed(r, ping);
  const err = r.written.shift()!;
  assert.deepEqual(
    [err[9], err.readUInt32BE(12), err.readUInt32BE(16), err[20], err[21]],
    [IP_PROTO.ICMP, fake, APP, 3, 13],
  );
  const ping6 = Buffer.from(syn6(APP6, 0, r.dns.addressOf6('blocked.example'), 0));
  ping6[6] = IP_PROTO.ICMPV6;
  ping6[40] = 128;
  feed(r, ping6);
  const err6 = r.written.shift()!;
  assert.deepEqual([err6[6], err6[40], err6[41]], [IP_PROTO.ICMPV6, 1, 1]);
  // an error is never answered: only echo requests are
  const reply = Buffer.from(ping);
  reply[20] = 0;
  feed(r, reply);
  assert.equal(r.written.length, 0);
  for (let i = 0; i < 150; i++) feed(r, ping);
  assert.equal(r.written.length, 98, 'at most 100 a second');
  r.written.length = 0;
  r.clock.now += 1_000;
  feed(r, ping);
  assert.equal(r.written.length, 1);
  assert.equal(r.front.stats().pingsRefused, 101);
  const frag = Buffer.from(syn(APP, 40000, fake, 443));
  frag[6] = 0x20; // more fragments
  feed(r, frag);
  const frag6 = Buffer.from(syn6(APP6, 40000, APP6, 443));
  frag6[6] = 44;
  feed(r, frag6);
  assert.equal(r.front.stats().fragments, 2);
});
