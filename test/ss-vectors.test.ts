/**
 * Shadowsocks vectors (test/vectors/ss-aead-2017.json, ss2022.json; provenance in their `source` and
 * test/vectors/README.md):
 *  (a) Ladder reproduces every case byte for byte;
 *  (b) the independent oracle (test/helpers/ss-oracle.ts: the specs on @noble/ciphers + @noble/hashes)
 *      produces the same bytes from the same inputs, and reads them back;
 *  (c) Ladder's decoders read the oracle's bytes and the oracle reads Ladder's, also for fresh inputs
 *      (multi-chunk payloads, IPv6 and 255-byte names, SIP023 users) that no vector fixes;
 *  (d) every negative case fails with its exact error code, and the oracle refuses it too;
 * plus replay (salts, UDP packet ids) and split invariance: a stream gives the same output however
 * it is cut, down to one byte at a time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { makeCipherKey, type SsCipherKey } from '../src/crypto/ss-key.js';
import { RotatingSaltFilter, SaltPool, SlidingWindow } from '../src/crypto/replay.js';
import {
  SsKeyTable,
  SsTcpAcceptor,
  SsTcpClientSession,
  type ReplayGuard,
} from '../src/codec/ss-tcp.js';
import {
  decodeUdp2017,
  decodeUdp2022Response,
  encodeUdp2017,
  encodeUdp2022,
  openUdpRequest,
} from '../src/codec/ss-udp.js';
import { decodeSocksAddr, encodeSocksAddr, socksAddrLength } from '../src/codec/socks-addr.js';
import { hasCode } from '../src/errors.js';
import type { Target } from '../src/transport/types.js';
import {
  generate,
  TIMESTAMP_S,
  vectorsDir,
  type NegativeCase,
  type VectorCase,
} from './vectors/gen-ss-vectors.js';
import * as oracle from './helpers/ss-oracle.js';
import { seeded, scripted } from './helpers/seeded-random.js';
import { checkCodec, splits } from './helpers/codec-battery.js';
import { configureNativeAead } from '../src/crypto/native-aead.js';

// The other AEAD path (crypto.test.ts runs this file again with LADDER_NO_NATIVE=1).
configureNativeAead({ enabled: process.env.LADDER_NO_NATIVE !== '1' });

const files = ['ss-aead-2017.json', 'ss2022.json'].map(
  (f) =>
    JSON.parse(readFileSync(vectorsDir() + f, 'utf8')) as {
      source: string;
      crossCheckedWith: string;
      cases: VectorCase[];
      negative: NegativeCase[];
    },
);
const cases = files.flatMap((f) => f.cases);
const negative = files.flatMap((f) => f.negative);
const NOW = TIMESTAMP_S * 1000;
const b = (h: string | undefined): Buffer => Buffer.from(h ?? '', 'hex');
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');
/** Accepts every salt: for tests that look at one message. */
const openGuard = (): ReplayGuard => ({ addSalt2017: () => true, addSalt2022: () => true });
/** The server's real filters. */
function realGuard(): ReplayGuard {
  const f = new RotatingSaltFilter(randomBytes(16));
  const p = new SaltPool();
  return { addSalt2017: (s) => f.add(s, 0), addSalt2022: (s, now) => p.add(s, now, now) };
}
const tableFor = (key: SsCipherKey): SsKeyTable => new SsKeyTable([{ id: 'k', key }]);
const om = (m: string): oracle.OracleMethod => m as oracle.OracleMethod;
const addrHex = (t: Target): string => {
  const out = new Uint8Array(socksAddrLength(t));
  encodeSocksAddr(t, out, 0);
  return hex(out);
};
/** The first bytes a client sends for a request vector, re-made with the same random source, then `more`. */
function requestSession(c: VectorCase, more: Uint8Array): { first: Buffer; rest: Buffer } {
  const client = new SsTcpClientSession(
    makeCipherKey(c.method, c.password),
    scripted(c.randomHex.map(b)),
  );
  const first = client.encodeRequest({ host: c.host, port: c.port }, b(c.payloadHex), NOW);
  return { first: Buffer.from(first), rest: Buffer.from(client.encode(more)) };
}

test('vector files carry provenance and cover all six methods, both directions, both protocols', () => {
  for (const f of files) {
    assert.match(f.source, /oracle|noble/);
    assert.match(f.crossCheckedWith, /@noble\/ciphers/);
  }
  for (const m of oracle.ORACLE_METHODS)
    for (const kind of ['tcp-request', 'tcp-response', 'udp-request', 'udp-response'])
      assert.ok(
        cases.some((c) => c.method === m && c.kind === kind),
        `${m} has a ${kind} vector`,
      );
  assert.ok(
    cases.some((c) => c.password.includes(':')),
    'SIP023 multi-user vectors',
  );
  assert.ok(negative.length >= 50);
});

test('(a) Ladder regenerates exactly the committed vectors', () => {
  const { v2017, v2022, negative: neg } = generate();
  assert.deepEqual([...v2017, ...v2022], cases);
  assert.deepEqual(neg, negative);
});

for (const c of cases) {
  test(`${c.name}: the oracle makes the same bytes and reads them back; so does Ladder`, () => {
    const m = om(c.method);
    const ts = c.timestamp === undefined ? undefined : BigInt(c.timestamp);
    const wire = b(c.expectedHex);
    const addr = hex(oracle.socksAddr(c.host, c.port));
    if (c.kind === 'tcp-request') {
      const mine = oracle.tcpRequest({
        method: m,
        password: c.password,
        salt: b(c.saltHex),
        host: c.host,
        port: c.port,
        payload: b(c.payloadHex),
        ...(c.paddingHex ? { padding: b(c.paddingHex) } : {}),
        ...(ts !== undefined ? { timestamp: ts } : {}),
      });
      assert.equal(hex(mine), c.expectedHex, 'the independent implementation makes the same bytes');
      const o = oracle.openTcpRequest(m, c.password, wire);
      assert.equal(hex(o.addr), addr);
      assert.equal(hex(o.payload), c.payloadHex);
      if (ts !== undefined) {
        assert.equal(o.type, 0);
        assert.equal(o.timestamp, ts);
        assert.equal(hex(o.padding!), c.paddingHex ?? '');
      }
      const got = new SsTcpAcceptor(
        tableFor(makeCipherKey(c.method, c.password)),
        openGuard(),
        randomBytes,
      ).push(Buffer.from(wire), NOW);
      assert.ok(got);
      assert.deepEqual(got.target, { host: c.host, port: c.port });
      assert.equal(got.initialPayload.toString('hex'), c.payloadHex);
    } else if (c.kind === 'tcp-response') {
      const mine = oracle.tcpResponse({
        method: m,
        password: c.password,
        salt: b(c.saltHex),
        requestSalt: b(c.requestSaltHex),
        payload: b(c.payloadHex),
        ...(ts !== undefined ? { timestamp: ts } : {}),
      });
      assert.equal(hex(mine), c.expectedHex, 'the independent implementation makes the same bytes');
      const o = oracle.openTcpResponse(m, c.password, wire);
      assert.equal(hex(o.payload), c.payloadHex);
      if (ts !== undefined) {
        assert.equal(o.type, 1);
        assert.equal(o.timestamp, ts);
        assert.equal(hex(o.requestSalt!), c.requestSaltHex);
      }
      // a client that sent the request with this salt
      const client = new SsTcpClientSession(
        makeCipherKey(c.method, c.password),
        scripted([b(c.requestSaltHex)]),
      );
      client.encodeRequest({ host: 'example.com', port: 443 }, Buffer.from('x'), NOW);
      assert.equal(
        Buffer.concat(client.decode(Buffer.from(wire), NOW)).toString('hex'),
        c.payloadHex,
      );
    } else {
      const toServer = c.kind === 'udp-request';
      const mine = oracle.udpPacket({
        method: m,
        password: c.password,
        host: c.host,
        port: c.port,
        payload: b(c.payloadHex),
        ...(c.saltHex ? { salt: b(c.saltHex) } : {}),
        ...(c.nonceHex ? { nonce: b(c.nonceHex) } : {}),
        ...(c.sessionIdHex ? { sessionId: b(c.sessionIdHex) } : {}),
        ...(c.packetId ? { packetId: BigInt(c.packetId) } : {}),
        ...(c.clientSessionIdHex ? { clientSessionId: b(c.clientSessionIdHex) } : {}),
        ...(ts !== undefined ? { timestamp: ts } : {}),
      });
      assert.equal(hex(mine), c.expectedHex, 'the independent implementation makes the same bytes');
      const o = oracle.openUdpPacket(m, c.password, wire, toServer);
      assert.equal(hex(o.addr), addr);
      assert.equal(hex(o.payload), c.payloadHex);
      if (ts !== undefined) {
        assert.equal(o.type, toServer ? 0 : 1);
        assert.equal(o.timestamp, ts);
        assert.equal(hex(o.sessionId!), c.sessionIdHex);
        assert.equal(o.packetId, BigInt(c.packetId!));
        if (!toServer) assert.equal(hex(o.clientSessionId!), c.clientSessionIdHex);
      }
      const key = makeCipherKey(c.method, c.password);
      const got = toServer
        ? openUdpRequest(tableFor(key), Buffer.from(wire), NOW)?.datagram
        : key.edition === 2017
          ? decodeUdp2017(key, Buffer.from(wire))
          : decodeUdp2022Response(key, Buffer.from(wire), NOW);
      assert.ok(got);
      assert.deepEqual(got.target, { host: c.host, port: c.port });
      assert.equal(got.payload.toString('hex'), c.payloadHex);
    }
  });
}

/** What Ladder does with a negative case's input. */
function feed(n: NegativeCase): unknown {
  const input = b(n.inputHex);
  const key = makeCipherKey(n.method, n.serverPassword ?? n.password);
  switch (n.kind) {
    case 'tcp-request':
      return new SsTcpAcceptor(tableFor(key), openGuard(), randomBytes).push(input, NOW);
    case 'udp-request':
      return openUdpRequest(tableFor(key), input, NOW);
    case 'udp-response':
      return decodeUdp2022Response(key, input, NOW);
    case 'tcp-response': {
      const client = new SsTcpClientSession(key, scripted([b(n.requestSaltHex)]));
      client.encodeRequest({ host: 'example.com', port: 443 }, Buffer.from('x'), NOW);
      return client.decode(input, NOW);
    }
  }
}

/** True if the oracle refuses the input too (or reads a header field the receiver must refuse). */
function oracleRefuses(n: NegativeCase): boolean {
  const m = om(n.method);
  const pw = n.serverPassword ?? n.password;
  const input = b(n.inputHex);
  const off = (t: bigint | undefined): boolean =>
    t !== undefined && (t > BigInt(TIMESTAMP_S + 30) || t < BigInt(TIMESTAMP_S - 30));
  try {
    if (n.kind === 'tcp-request') {
      const o = oracle.openTcpRequest(m, pw, input);
      return oracle.is2022(m) && (o.type !== 0 || off(o.timestamp));
    }
    if (n.kind === 'tcp-response') {
      const o = oracle.openTcpResponse(m, pw, input);
      return (
        oracle.is2022(m) &&
        (o.type !== 1 || off(o.timestamp) || hex(o.requestSalt!) !== n.requestSaltHex)
      );
    }
    const toServer = n.kind === 'udp-request';
    const o = oracle.openUdpPacket(m, pw, input, toServer);
    return o.type !== (toServer ? 0 : 1) || off(o.timestamp);
  } catch (e) {
    if (e instanceof oracle.OracleError) return true;
    throw e;
  }
}

for (const n of negative) {
  test(`(d) negative: ${n.name} → ${n.expectedCode}`, () => {
    assert.throws(
      () => feed(n),
      (e) => hasCode(e, n.expectedCode as never),
      `expected ${n.expectedCode}`,
    );
    assert.ok(oracleRefuses(n), 'the independent implementation refuses it too');
  });
}

test('(d) replay: a request vector sent twice is refused the second time (ERR_REPLAY_CLIENT)', () => {
  for (const c of cases.filter((v) => v.kind === 'tcp-request')) {
    const table = tableFor(makeCipherKey(c.method, c.password));
    const guard = realGuard();
    assert.ok(new SsTcpAcceptor(table, guard, randomBytes).push(b(c.expectedHex), NOW), c.name);
    assert.throws(
      () => new SsTcpAcceptor(table, guard, randomBytes).push(b(c.expectedHex), NOW + 1000),
      (e) => hasCode(e, 'ERR_REPLAY_CLIENT'),
      c.name,
    );
    // the refusal was the guard's, not the bytes': a server that never saw them accepts them
    assert.ok(new SsTcpAcceptor(table, realGuard(), randomBytes).push(b(c.expectedHex), NOW));
  }
});

test('(d) 2022 timestamps: exactly 30 s off either way is accepted, 31 s is not', () => {
  for (const c of cases.filter((v) => v.kind === 'tcp-request' && v.timestamp !== undefined)) {
    const table = tableFor(makeCipherKey(c.method, c.password));
    for (const skew of [-31, -30, 0, 30, 31]) {
      const accept = (): unknown =>
        new SsTcpAcceptor(table, openGuard(), randomBytes).push(
          b(c.expectedHex),
          NOW + skew * 1000,
        );
      if (Math.abs(skew) <= 30) assert.ok(accept(), `${c.name} at ${skew} s`);
      else assert.throws(accept, (e) => hasCode(e, 'ERR_SS2022_BAD_TIMESTAMP'));
    }
  }
});

test('(d) UDP: any flipped bit makes a request packet unopenable (null, never a throw)', () => {
  for (const c of cases.filter((v) => v.kind === 'udp-request')) {
    const table = tableFor(makeCipherKey(c.method, c.password));
    const wire = b(c.expectedHex);
    for (let i = 0; i < wire.length; i++) {
      const bad = Buffer.from(wire);
      bad[i]! ^= 1 << (i % 8);
      assert.equal(openUdpRequest(table, bad, NOW), null, `${c.name}: bit ${i % 8} of byte ${i}`);
    }
  }
});

test('(d) UDP replay: the sliding window refuses a packet id it has seen', () => {
  for (const c of cases.filter((v) => v.kind === 'udp-request' && v.packetId !== undefined)) {
    const table = tableFor(makeCipherKey(c.method, c.password));
    const window = new SlidingWindow();
    // the codec is stateless: the same packet opens twice, and the window is what tells them apart
    const first = openUdpRequest(table, b(c.expectedHex), NOW);
    const again = openUdpRequest(table, b(c.expectedHex), NOW);
    assert.ok(first?.header && again?.header);
    assert.equal(window.accept(first.header.packetId), true, c.name);
    assert.equal(window.check(again.header.packetId), false, c.name);
    assert.equal(window.accept(again.header.packetId), false, c.name);
  }
});

test('split invariance: a request and the chunk after it, cut anywhere, give the same output', () => {
  const more = Buffer.from('and then some more bytes from the client');
  for (const c of cases.filter((v) => v.kind === 'tcp-request')) {
    const { first, rest } = requestSession(c, more);
    assert.equal(first.toString('hex'), c.expectedHex);
    const stream = Buffer.concat([first, rest]);
    const expected = Buffer.concat([b(c.payloadHex), more]).toString('hex');
    const table = tableFor(makeCipherKey(c.method, c.password));
    for (const pieces of splits(stream)) {
      const acc = new SsTcpAcceptor(table, openGuard(), randomBytes);
      const out: Buffer[] = [];
      let fed = 0;
      let accepted: ReturnType<SsTcpAcceptor['push']> = null;
      for (const piece of pieces) {
        const copy = Buffer.from(piece); // ownership passes: it may be decrypted in place
        fed += piece.length;
        if (accepted) {
          out.push(...accepted.stream.decode(copy));
          continue;
        }
        accepted = acc.push(copy, NOW);
        if (accepted) {
          // it decides exactly when the first message is complete, not before, not later
          assert.ok(fed >= first.length, `${c.name}: accepted after ${fed} bytes`);
          if (pieces.length > 2) assert.equal(fed, first.length);
          out.push(accepted.initialPayload);
        } else assert.ok(fed < first.length, `${c.name}: still waiting after ${fed} bytes`);
      }
      assert.ok(accepted, `${c.name}: accepted (${pieces.length} pieces)`);
      assert.deepEqual(accepted.target, { host: c.host, port: c.port });
      assert.equal(Buffer.concat(out).toString('hex'), expected, `${pieces.length} pieces`);
    }
  }
});

test('split invariance: a response and the chunk after it, cut anywhere, give the same output', () => {
  const more = Buffer.from('and the rest of the body');
  for (const c of cases.filter((v) => v.kind === 'tcp-response')) {
    const key = makeCipherKey(c.method, c.password);
    // re-make the server side of the vector: the request it answers, then the response and more
    const request = new SsTcpClientSession(key, scripted([b(c.requestSaltHex)])).encodeRequest(
      { host: 'example.com', port: 443 },
      Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'),
      NOW,
    );
    const accepted = new SsTcpAcceptor(tableFor(key), openGuard(), scripted([b(c.saltHex)])).push(
      request,
      NOW,
    )!;
    const first = Buffer.from(accepted.stream.encode(b(c.payloadHex), NOW));
    assert.equal(first.toString('hex'), c.expectedHex);
    const stream = Buffer.concat([first, accepted.stream.encode(more, NOW)]);
    const expected = Buffer.concat([b(c.payloadHex), more]).toString('hex');
    for (const pieces of splits(stream)) {
      const client = new SsTcpClientSession(key, scripted([b(c.requestSaltHex)]));
      client.encodeRequest({ host: 'example.com', port: 443 }, Buffer.from('x'), NOW);
      const out = pieces.flatMap((p) => client.decode(Buffer.from(p), NOW));
      assert.equal(
        Buffer.concat(out).toString('hex'),
        expected,
        `${c.name}, ${pieces.length} pieces`,
      );
    }
  }
});

test('codec battery: SOCKS addresses as the oracle encodes them', () => {
  const codec = { encode: encodeSocksAddr, length: socksAddrLength, decode: decodeSocksAddr };
  for (const t of [
    { host: '198.18.0.53', port: 53 },
    { host: '2001:2::53', port: 65535 },
    { host: 'x'.repeat(255), port: 0 },
  ])
    checkCodec(codec, t, oracle.socksAddr(t.host, t.port));
});

// ---------------------------------------------------------------------------------------------
// (c) fresh inputs, both ways, every method

interface Scenario {
  name: string;
  target: Target;
  payload: Buffer;
  more: Buffer;
}
const scenarios: Scenario[] = [
  {
    name: 'small',
    target: { host: 'example.com', port: 443 },
    payload: seeded('c/small', 100),
    more: seeded('c/small-more', 7),
  },
  {
    name: 'IPv6 target, two 2017 chunks',
    target: { host: '2001:2::1', port: 8443 },
    payload: seeded('c/2017-two', 0x3fff + 1),
    more: seeded('c/2017-two-more', 0x3fff * 2 + 5),
  },
  {
    name: '255-byte name, payload past the 2022 header chunk',
    target: { host: 'n'.repeat(255), port: 1 },
    payload: seeded('c/big', 0xffff + 300),
    more: Buffer.alloc(0),
  },
  {
    name: 'no payload (2022 pads)',
    target: { host: '198.18.0.9', port: 80 },
    payload: Buffer.alloc(0),
    more: seeded('c/empty-more', 3),
  },
];

function passwordsFor(m: oracle.OracleMethod): string[] {
  if (!oracle.is2022(m)) return [`cross-check ${m}`];
  const psk = (l: string): string => seeded(`${m}/${l}`, oracle.keySize(m)).toString('base64');
  return oracle.isChacha(m) ? [psk('u')] : [psk('u'), `${psk('i')}:${psk('u2')}`];
}

for (const m of oracle.ORACLE_METHODS) {
  for (const password of passwordsFor(m)) {
    const label = `${m}${password.includes(':') ? ' (SIP023 user)' : ''}`;
    const key = makeCipherKey(m, password);
    const ks = oracle.keySize(m);
    const ts = BigInt(TIMESTAMP_S);

    test(`(c) ${label}: TCP both ways between Ladder and the oracle`, () => {
      for (const s of scenarios) {
        const tag = `${label}, ${s.name}`;
        const salt = seeded(`${tag}/salt`, ks);
        const padding = s.payload.length === 0 ? seeded(`${tag}/pad`, 17) : undefined;
        // oracle client → Ladder server
        const req = oracle.tcpRequest({
          method: m,
          password,
          salt,
          host: s.target.host,
          port: s.target.port,
          payload: s.payload,
          timestamp: ts,
          more: s.more,
          ...(padding && oracle.is2022(m) ? { padding } : {}),
        });
        const acc = new SsTcpAcceptor(tableFor(key), openGuard(), randomBytes).push(
          Buffer.from(req),
          NOW,
        );
        assert.ok(acc, tag);
        assert.deepEqual(acc.target, s.target);
        assert.ok(
          Buffer.concat([acc.initialPayload, ...acc.stream.decode(Buffer.alloc(0))]).equals(
            Buffer.concat([s.payload, s.more]),
          ),
          `${tag}: Ladder reads the oracle's request`,
        );
        // Ladder client → oracle server
        const rnd = (n: number): Buffer => seeded(`${tag}/ladder-random/${n}`, n);
        const client = new SsTcpClientSession(key, rnd);
        const mine = Buffer.concat([
          client.encodeRequest(s.target, s.payload, NOW),
          client.encode(s.more),
        ]);
        const o = oracle.openTcpRequest(m, password, mine);
        assert.equal(hex(o.addr), addrHex(s.target), tag);
        assert.ok(Buffer.from(o.payload).equals(Buffer.concat([s.payload, s.more])), tag);
        if (oracle.is2022(m)) {
          assert.equal(o.type, 0);
          assert.equal(o.timestamp, ts);
          assert.ok(s.payload.length > 0 || o.padding!.length > 0, 'padding when no payload');
        }
        // Ladder server → oracle client: the response bound to the request it answers
        const server = new SsTcpAcceptor(tableFor(key), openGuard(), randomBytes).push(
          Buffer.from(mine),
          NOW,
        )!;
        const body = Buffer.concat([s.payload, s.more, Buffer.from('!')]);
        const resp = Buffer.concat([
          server.stream.encode(body.subarray(0, 1), NOW),
          server.stream.encode(body.subarray(1), NOW),
        ]);
        const r = oracle.openTcpResponse(m, password, resp);
        assert.ok(Buffer.from(r.payload).equals(body), tag);
        if (oracle.is2022(m)) {
          assert.equal(hex(r.requestSalt!), hex(o.salt));
          assert.equal(r.type, 1);
          assert.equal(r.timestamp, ts);
        }
        // oracle server → Ladder client
        const back = oracle.tcpResponse({
          method: m,
          password,
          salt: seeded(`${tag}/server-salt`, ks),
          requestSalt: o.salt,
          payload: body,
          timestamp: ts,
        });
        assert.ok(
          Buffer.concat(client.decode(Buffer.from(back), NOW)).equals(body),
          `${tag}: Ladder reads the oracle's response`,
        );
      }
    });

    test(`(c) ${label}: UDP both ways between Ladder and the oracle`, () => {
      for (const s of scenarios.slice(0, 2)) {
        const tag = `${label}, ${s.name}`;
        const sessionId = seeded(`${tag}/sid`, 8);
        const nonce = seeded(`${tag}/nonce`, 24);
        const salt = seeded(`${tag}/salt`, ks);
        const d = { target: s.target, payload: s.payload };
        // Ladder → oracle, client to server
        const up = oracle.is2022(m)
          ? encodeUdp2022(key, { sessionId, packetId: 9n }, d, Buffer.alloc(0), NOW, () => nonce)
          : encodeUdp2017(key, salt, d);
        const o = oracle.openUdpPacket(m, password, up, true);
        assert.equal(hex(o.addr), addrHex(s.target), tag);
        assert.ok(Buffer.from(o.payload).equals(s.payload), tag);
        if (oracle.is2022(m)) assert.equal(o.packetId, 9n);
        // oracle → Ladder, client to server (with padding, which Ladder's encoder never adds)
        const padding = seeded(`${tag}/padding`, 5);
        const mine = oracle.udpPacket({
          method: m,
          password,
          host: s.target.host,
          port: s.target.port,
          payload: s.payload,
          salt,
          nonce,
          sessionId,
          packetId: 10n,
          timestamp: ts,
          padding,
        });
        const got = openUdpRequest(tableFor(key), Buffer.from(mine), NOW);
        assert.ok(got, tag);
        assert.deepEqual(got.datagram.target, s.target);
        assert.ok(got.datagram.payload.equals(s.payload));
        if (oracle.is2022(m)) assert.equal(got.header?.packetId, 10n);
        // server to client, both ways
        const clientSessionId = seeded(`${tag}/csid`, 8);
        const down = oracle.is2022(m)
          ? encodeUdp2022(
              key,
              { sessionId, packetId: 11n, clientSessionId },
              d,
              Buffer.alloc(0),
              NOW,
              () => nonce,
            )
          : encodeUdp2017(key, salt, d);
        const od = oracle.openUdpPacket(m, password, down, false);
        assert.ok(Buffer.from(od.payload).equals(s.payload), tag);
        if (oracle.is2022(m)) assert.equal(hex(od.clientSessionId!), hex(clientSessionId));
        const theirs = oracle.udpPacket({
          method: m,
          password,
          host: s.target.host,
          port: s.target.port,
          payload: s.payload,
          salt,
          nonce,
          sessionId,
          packetId: 12n,
          timestamp: ts,
          clientSessionId,
          padding,
        });
        const gd = oracle.is2022(m)
          ? decodeUdp2022Response(key, Buffer.from(theirs), NOW)
          : decodeUdp2017(key, Buffer.from(theirs));
        assert.ok(gd, tag);
        assert.deepEqual(gd.target, s.target);
        assert.ok(gd.payload.equals(s.payload));
      }
    });
  }
}
