/**
 * Property tests for the Shadowsocks codecs and replay filters, with fast-check (bounded runs).
 *
 * The only outcomes a decoder may have are a normal return (a value, or null for "need more" / "not
 * for this key") or a thrown LadderError (CodecError, AuthError). Anything else — a RangeError from a
 * buffer read, a TypeError — is a bug. Random bytes rarely get past the AEAD tag, so most properties
 * here feed *authentic* garbage: messages sealed correctly by the independent oracle
 * (test/helpers/ss-oracle.ts) around hostile plaintext (wrong types, timestamps, lengths, paddings,
 * addresses), which is what reaches the parsers behind the tag.
 *
 * Also: truncations of valid messages always mean "need more"; bit flips never decode; chunk streams
 * decode the same however they are cut; and the replay filters match simple models.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { LadderError } from '../../src/errors.js';
import { makeCipherKey, type SsCipherKey } from '../../src/crypto/ss-key.js';
import { CounterAead } from '../../src/crypto/aead.js';
import {
  SALT_POOL_TTL_MS,
  SLIDING_WINDOW_SIZE,
  RotatingSaltFilter,
  SaltPool,
  SlidingWindow,
} from '../../src/crypto/replay.js';
import {
  maxAcceptBytes,
  SsKeyTable,
  SsTcpAcceptor,
  SsTcpClientSession,
  type ReplayGuard,
} from '../../src/codec/ss-tcp.js';
import { ChunkReader } from '../../src/codec/ss-stream.js';
import { READ_HEADROOM } from '../../src/stream/recycled-reads.js';
import { decodeUdp2017, decodeUdp2022Response, openUdpRequest } from '../../src/codec/ss-udp.js';
import {
  bytesToIPv6,
  decodeSocksAddr,
  encodeSocksAddr,
  socksAddrLength,
} from '../../src/codec/socks-addr.js';
import type { Target } from '../../src/transport/types.js';
import * as oracle from '../helpers/ss-oracle.js';
import { seeded } from '../helpers/seeded-random.js';

const NOW = 1_700_000_000_000;
const TS = BigInt(NOW / 1000);
const RUNS = { numRuns: 200 };

/** Runs `f`; a LadderError counts as a normal outcome, anything else is rethrown (a bug). */
function allowed<T>(f: () => T): T | 'refused' {
  try {
    return f();
  } catch (e) {
    if (e instanceof LadderError) return 'refused';
    throw e;
  }
}

interface Config {
  label: string;
  method: oracle.OracleMethod;
  password: string;
  key: SsCipherKey;
}
const configs: Config[] = oracle.ORACLE_METHODS.flatMap((method) => {
  const size = oracle.keySize(method);
  const psk = (l: string): string => seeded(`fuzz/${method}/${l}`, size).toString('base64');
  const passwords = !oracle.is2022(method)
    ? [`fuzz ${method}`]
    : oracle.isChacha(method)
      ? [psk('u')]
      : [psk('u'), `${psk('i')}:${psk('u2')}`];
  return passwords.map((password) => ({
    label: `${method}${password.includes(':') ? ' (SIP023)' : ''}`,
    method,
    password,
    key: makeCipherKey(method, password),
  }));
});
const mixedTable = new SsKeyTable(configs.map((c) => ({ id: c.label, key: c.key })));
const tableOf = (c: Config): SsKeyTable => new SsKeyTable([{ id: c.label, key: c.key }]);
const openGuard = (): ReplayGuard => ({ addSalt2017: () => true, addSalt2022: () => true });

/** Cuts `buf` at the given points (any order, duplicates and out-of-range ones ignored); pieces are copies. */
function cut(buf: Uint8Array, points: number[]): Buffer[] {
  const at = [...new Set(points.filter((p) => p > 0 && p < buf.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...at, buf.length]) {
    out.push(Buffer.from(buf.subarray(from, p)));
    from = p;
  }
  return out;
}

/** Feeds pieces to a fresh acceptor; checks that while it waits it holds at most maxAcceptBytes(). */
function feedAcceptor(table: SsKeyTable, pieces: Buffer[]): unknown {
  return allowed(() => {
    const acc = new SsTcpAcceptor(table, openGuard(), randomBytes);
    for (const p of pieces) {
      const got = acc.push(p, NOW);
      if (got) return got;
      assert.ok(acc.buffered <= maxAcceptBytes(), `acceptor holds ${acc.buffered} bytes`);
    }
    return null;
  });
}

function clientAfterRequest(c: Config, requestSalt: Uint8Array): SsTcpClientSession {
  const client = new SsTcpClientSession(c.key, (n) =>
    n === requestSalt.length ? Buffer.from(requestSalt) : randomBytes(n),
  );
  client.encodeRequest({ host: 'example.com', port: 443 }, Buffer.from('x'), NOW);
  return client;
}

function feedClient(c: Config, requestSalt: Uint8Array, pieces: Buffer[]): unknown {
  return allowed(() => {
    const client = clientAfterRequest(c, requestSalt);
    return pieces.flatMap((p) => client.decode(p, NOW));
  });
}

/** Every UDP decoder that could see this packet. */
function feedUdp(c: Config, packet: Uint8Array): void {
  allowed(() => openUdpRequest(tableOf(c), Buffer.from(packet), NOW));
  allowed(() => openUdpRequest(mixedTable, Buffer.from(packet), NOW));
  if (c.key.edition === 2017) allowed(() => decodeUdp2017(c.key, Buffer.from(packet)));
  else allowed(() => decodeUdp2022Response(c.key, Buffer.from(packet), NOW));
}

// ---------------------------------------------------------------------------------- arbitraries

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((q) => q.join('.'));
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => bytesToIPv6(b));
const domain = fc
  .array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.-'), {
    minLength: 1,
    maxLength: 255,
  })
  .map((a) => a.join(''))
  .filter((s) => !/^[\d.]+$/.test(s)); // all digits and dots may read as an IPv4 literal
const target: fc.Arbitrary<Target> = fc.record({
  host: fc.oneof(ipv4, ipv6, domain),
  port: fc.nat(65535),
});
const cuts = fc.array(fc.nat(2000), { maxLength: 6 });
const configArb = fc.constantFrom(...configs);
/** Timestamps mostly near now, sometimes anywhere in 64 bits. */
const timestamp = fc.oneof(
  fc.integer({ min: -40, max: 40 }).map((d) => TS + BigInt(d)),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const u64 = (n: bigint): number[] =>
  Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(56 - 8 * i)) & 0xffn));
/** Plaintext that starts like a header and goes wrong somewhere: a type byte, then random bytes. */
const hostile = fc.tuple(fc.constantFrom(0, 1, 2, 3, 4, 5, 255), fc.uint8Array({ maxLength: 400 }));

// ---------------------------------------------------------------------------------- random bytes

test('random bytes, cut anywhere: every decoder returns or throws a LadderError', () => {
  fc.assert(
    fc.property(
      configArb,
      fc.uint8Array({ maxLength: 3000 }),
      cuts,
      fc.nat(10),
      (c, b, at, off) => {
        feedAcceptor(tableOf(c), cut(b, at));
        feedAcceptor(mixedTable, cut(b, at));
        feedClient(c, seeded('req', c.key.keySize), cut(b, at));
        feedUdp(c, b);
        allowed(() => decodeSocksAddr(b, off));
        allowed(() => {
          const reader = new ChunkReader(
            new CounterAead(c.key.cipher, randomBytes(c.key.keySize)),
            c.key.edition === 2017 ? 0x3fff : 0xffff,
          );
          return cut(b, at).flatMap((p) => reader.push(p));
        });
      },
    ),
    RUNS,
  );
});

// ---------------------------------------------------------------------------------- truncation

test('every strict prefix of a valid request, response or packet means "need more" (never a throw)', () => {
  // payloads that fit the first chunk, so the first message is the whole request
  const small = fc.uint8Array({ maxLength: 300 });
  fc.assert(
    fc.property(
      configArb,
      target,
      small,
      fc.double({ min: 0, max: 0.999, noNaN: true }),
      cuts,
      (c, t, p, frac, at) => {
        const salt = randomBytes(c.key.keySize);
        const req = oracle.tcpRequest({
          method: c.method,
          password: c.password,
          salt,
          host: t.host,
          port: t.port,
          payload: p,
          timestamp: TS,
          ...(p.length === 0 ? { padding: randomBytes(3) } : {}),
        });
        const n = Math.floor(frac * req.length); // < req.length
        const acc = new SsTcpAcceptor(tableOf(c), openGuard(), randomBytes);
        for (const piece of cut(req.subarray(0, n), at)) assert.equal(acc.push(piece, NOW), null);
        // and the rest completes it
        const got = acc.push(Buffer.from(req.subarray(n)), NOW);
        assert.ok(got, 'the whole request is accepted');
        assert.deepEqual(got.target, { host: t.host, port: t.port });

        const resp = oracle.tcpResponse({
          method: c.method,
          password: c.password,
          salt: randomBytes(c.key.keySize),
          requestSalt: salt,
          payload: p.length > 0 ? p : new Uint8Array([1]),
          timestamp: TS,
        });
        const m = Math.floor(frac * resp.length);
        const client = clientAfterRequest(c, salt);
        const early = cut(resp.subarray(0, m), at).flatMap((piece) => client.decode(piece, NOW));
        const late = client.decode(Buffer.from(resp.subarray(m)), NOW);
        assert.ok(Buffer.concat([...early, ...late]).equals(Buffer.from(p.length > 0 ? p : [1])));

        const udp = oracle.udpPacket({
          method: c.method,
          password: c.password,
          host: t.host,
          port: t.port,
          payload: p.subarray(0, 200),
          salt,
          nonce: randomBytes(24),
          sessionId: randomBytes(8),
          packetId: 1n,
          timestamp: TS,
        });
        const short = Buffer.from(udp.subarray(0, Math.floor(frac * udp.length)));
        assert.equal(openUdpRequest(tableOf(c), short, NOW), null);
        if (c.key.edition === 2017) assert.equal(decodeUdp2017(c.key, short), null);
        else assert.equal(decodeUdp2022Response(c.key, short, NOW), null);
      },
    ),
    { numRuns: 150 },
  );
});

// ---------------------------------------------------------------------------------- bit flips

test('valid messages with bits flipped never decode, and fail only with LadderErrors', () => {
  fc.assert(
    fc.property(
      configArb,
      target,
      fc.uint8Array({ maxLength: 200 }),
      fc.array(fc.tuple(fc.nat(), fc.nat(7)), { minLength: 1, maxLength: 4 }),
      (c, t, p, flips) => {
        const flip = (b: Uint8Array): Buffer => {
          const out = Buffer.from(b);
          for (const [i, bit] of flips) out[i % out.length]! ^= 1 << bit;
          return out;
        };
        const salt = randomBytes(c.key.keySize);
        const common = { method: c.method, password: c.password, host: t.host, port: t.port };
        const req = oracle.tcpRequest({
          ...common,
          salt,
          payload: p,
          timestamp: TS,
          padding: randomBytes(5),
        });
        const badReq = flip(req);
        if (!badReq.equals(req)) {
          const r = feedAcceptor(tableOf(c), [badReq]);
          assert.ok(r === 'refused' || r === null, 'a flipped request is never accepted');
        }
        const resp = oracle.tcpResponse({
          method: c.method,
          password: c.password,
          salt: randomBytes(c.key.keySize),
          requestSalt: salt,
          payload: new Uint8Array([...p, 1]),
          timestamp: TS,
        });
        const badResp = flip(resp);
        if (!badResp.equals(resp)) {
          const r = feedClient(c, salt, [badResp]);
          assert.ok(
            r === 'refused' || (Array.isArray(r) && r.length === 0),
            'a flipped response yields nothing',
          );
        }
        const udp = oracle.udpPacket({
          ...common,
          payload: p,
          salt,
          nonce: randomBytes(24),
          sessionId: randomBytes(8),
          packetId: 5n,
          timestamp: TS,
        });
        const badUdp = flip(udp);
        if (!badUdp.equals(udp)) {
          assert.equal(openUdpRequest(tableOf(c), badUdp, NOW), null);
          assert.equal(
            allowed(() => openUdpRequest(mixedTable, badUdp, NOW)),
            null,
          );
        }
      },
    ),
    RUNS,
  );
});

// ---------------------------------------------------------------------------------- authentic garbage

test('2017 TCP: authentic chunks of hostile plaintext and lengths', () => {
  const c2017 = configs.filter((c) => c.key.edition === 2017);
  fc.assert(
    fc.property(
      fc.constantFrom(...c2017),
      hostile,
      fc.nat(0xffff),
      fc.uint8Array({ maxLength: 300 }),
      cuts,
      (c, [atyp, rest], len, body, at) => {
        const salt = randomBytes(c.key.keySize);
        const sub = oracle.tcpSubkey(c.method, c.password, salt);
        // well-framed chunks of garbage
        const framed = oracle.cat(
          salt,
          oracle.sealChunks(c.method, sub, 0, Uint8Array.from([atyp, ...rest]), 0x3fff),
        );
        feedAcceptor(tableOf(c), cut(framed, at));
        // a length chunk saying anything, then a payload chunk of any size
        const raw = oracle.cat(
          salt,
          oracle.sealAt(c.method, sub, 0, Uint8Array.from(u16(len))),
          oracle.sealAt(c.method, sub, 1, body),
        );
        const r = feedAcceptor(tableOf(c), cut(raw, at));
        if (len > 0x3fff) assert.equal(r, 'refused', 'a length over 0x3FFF is refused');
        // the same as a response
        feedClient(c, randomBytes(c.key.keySize), cut(raw, at));
      },
    ),
    RUNS,
  );
});

test('2022 TCP: authentic headers with hostile types, timestamps, lengths, padding, addresses', () => {
  const c2022 = configs.filter((c) => c.key.edition === 2022);
  fc.assert(
    fc.property(
      fc.constantFrom(...c2022),
      fc.constantFrom(0, 0, 0, 1, 7),
      timestamp,
      fc.oneof(fc.nat(400), fc.nat(0xffff)),
      hostile,
      fc.boolean(),
      cuts,
      (c, type, ts, declared, [atyp, rest], honest, at) => {
        const salt = randomBytes(c.key.keySize);
        const sub = oracle.tcpSubkey(c.method, c.password, salt);
        const variable = Uint8Array.from([atyp, ...rest]);
        // the fixed header's length either matches the variable chunk or says anything
        const varLen = honest ? variable.length : declared;
        const fixed = Uint8Array.from([type, ...u64(ts), ...u16(varLen)]);
        const req = oracle.cat(
          salt,
          oracle.tcpIdentityHeaders(c.password, salt),
          oracle.sealAt(c.method, sub, 0, fixed),
          oracle.sealAt(c.method, sub, 1, variable),
        );
        const r = feedAcceptor(tableOf(c), cut(req, at));
        if (type !== 0 || ts > TS + 30n || ts < TS - 30n)
          assert.ok(r === 'refused' || r === null, 'wrong type or timestamp is never accepted');

        // a response header: right or wrong request salt, any type/timestamp/length
        const reqSalt = honest ? salt : randomBytes(c.key.keySize);
        const rfixed = Uint8Array.from([type, ...u64(ts), ...reqSalt, ...u16(declared)]);
        const rsalt = randomBytes(c.key.keySize);
        const rsub = oracle.tcpSubkey(c.method, c.password, rsalt);
        const resp = oracle.cat(
          rsalt,
          oracle.sealAt(c.method, rsub, 0, rfixed),
          oracle.sealAt(c.method, rsub, 1, variable),
        );
        const out = feedClient(c, salt, cut(resp, at));
        if (!honest || type !== 1) assert.equal(out, 'refused');
      },
    ),
    RUNS,
  );
});

test('UDP: authentic packets around hostile bodies, both directions, every method', () => {
  fc.assert(
    fc.property(
      configArb,
      fc.constantFrom(0, 1, 2),
      timestamp,
      fc.oneof(fc.nat(20), fc.nat(0xffff)),
      hostile,
      (c, type, ts, padLen, [atyp, rest]) => {
        if (c.key.edition === 2017) {
          const salt = randomBytes(c.key.keySize);
          const sub = oracle.subkey2017(oracle.evpBytesToKey(c.password, c.key.keySize), salt);
          const packet = oracle.cat(
            salt,
            oracle.sealAt(c.method, sub, 0, Uint8Array.from([atyp, ...rest])),
          );
          feedUdp(c, packet);
          return;
        }
        const sep = randomBytes(16);
        for (const toServer of [true, false]) {
          const body = Uint8Array.from([
            type,
            ...u64(ts),
            ...(toServer ? [] : [...randomBytes(8)]),
            ...u16(padLen),
            atyp,
            ...rest,
          ]);
          for (const b of [body, body.subarray(0, rest.length % 20)]) {
            const packet = oracle.udp2022Raw(
              c.method,
              c.password,
              sep,
              b,
              toServer,
              randomBytes(24),
            );
            feedUdp(c, packet);
          }
        }
      },
    ),
    RUNS,
  );
});

// ---------------------------------------------------------------------------------- big inputs

test('oversized: megabytes of random bytes and a UDP jumbo packet are refused or ignored, not buffered', () => {
  for (const c of configs) {
    const junk = randomBytes(1 << 20);
    const r = feedAcceptor(tableOf(c), [junk]);
    assert.equal(r, 'refused', `${c.label}: 1 MiB of noise`);
    feedUdp(c, randomBytes(70_000));
    const client = clientAfterRequest(c, randomBytes(c.key.keySize));
    assert.equal(
      allowed(() => client.decode(Buffer.from(junk), NOW)),
      'refused',
    );
  }
});

test('ChunkReader: streams of valid chunks (empty and maximal ones too) give the same bytes however cut', () => {
  fc.assert(
    fc.property(
      configArb,
      fc.array(
        fc.oneof(
          { weight: 6, arbitrary: fc.nat(300) },
          { weight: 1, arbitrary: fc.constant(0) },
          { weight: 1, arbitrary: fc.constant(-1) }, // the edition's maximum
        ),
        { minLength: 1, maxLength: 12 },
      ),
      fc.array(fc.nat(200_000), { maxLength: 20 }),
      (c, sizes, at) => {
        const max = c.key.edition === 2017 ? 0x3fff : 0xffff;
        const key = randomBytes(c.key.keySize);
        const payloads = sizes.map((n) => randomBytes(n < 0 ? max : n));
        // sealed one chunk per payload, counters running on; an empty payload is an empty chunk
        let counter = 0;
        const wire = oracle.cat(
          ...payloads.flatMap((p) => [
            oracle.sealAt(c.method, key, counter++, Uint8Array.from(u16(p.length))),
            oracle.sealAt(c.method, key, counter++, p),
          ]),
        );
        const reader = new ChunkReader(new CounterAead(c.key.cipher, key), max);
        const out = cut(wire, at).flatMap((piece) => reader.push(piece));
        assert.ok(Buffer.concat(out).equals(Buffer.concat(payloads)));
        assert.equal(reader.buffered, 0);
        assert.ok(
          out.every((b) => b.length > 0),
          'no empty payloads handed out',
        );
      },
    ),
    { numRuns: 100 },
  );
});

test('ChunkReader, borrowed reads: nothing of a read is kept past push (its memory is poisoned after)', () => {
  fc.assert(
    fc.property(
      configArb,
      fc.array(fc.oneof(fc.nat(300), fc.nat(70_000)), { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat(200_000), { maxLength: 20 }),
      fc.boolean(),
      (c, sizes, at, headroom) => {
        const max = c.key.edition === 2017 ? 0x3fff : 0xffff;
        const key = randomBytes(c.key.keySize);
        const payloads = sizes.map((n) => randomBytes(Math.min(n, max)));
        let counter = 0;
        const wire = oracle.cat(
          ...payloads.flatMap((p) => [
            oracle.sealAt(c.method, key, counter++, Uint8Array.from(u16(p.length))),
            oracle.sealAt(c.method, key, counter++, p),
          ]),
        );
        const reader = new ChunkReader(new CounterAead(c.key.cipher, key), max);
        // one read buffer, lent again and again, with headroom in front of each read (or none)
        const room = headroom ? READ_HEADROOM : 0;
        const lent = Buffer.alloc(room + wire.length);
        const out: Buffer[] = [];
        for (const piece of cut(wire, at)) {
          piece.copy(lent, room);
          // payloads may be views of the read: the caller copies (or holds) before returning
          for (const p of reader.push(lent.subarray(room, room + piece.length), true))
            out.push(Buffer.from(p));
          lent.fill(0xee); // the next read overwrites it
        }
        assert.ok(Buffer.concat(out).equals(Buffer.concat(payloads)));
        assert.equal(reader.buffered, 0);
      },
    ),
    { numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------------- SOCKS addresses

test('SOCKS address: decode(encode(target)) is the target', () => {
  fc.assert(
    fc.property(target, fc.nat(8), (t, off) => {
      const out = new Uint8Array(off + socksAddrLength(t));
      assert.equal(encodeSocksAddr(t, out, off), out.length - off);
      const d = decodeSocksAddr(out, off);
      assert.deepEqual(d, { value: { host: t.host, port: t.port }, bytesRead: out.length - off });
    }),
    { numRuns: 300 },
  );
});

test('SOCKS address: a name re-encodes to the bytes it was decoded from (a proxy must relay it unchanged)', () => {
  // A SOCKS5 front end decodes the name an application sent; the Shadowsocks request re-encodes it.
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 255 }), fc.nat(65535), (name, port) => {
      const wire = Uint8Array.from([3, name.length, ...name, ...u16(port)]);
      const d = allowed(() => decodeSocksAddr(wire, 0));
      if (d === 'refused' || d === null) return;
      const again = new Uint8Array(socksAddrLength(d.value));
      encodeSocksAddr(d.value, again, 0);
      // a name that reads as an IP literal may come back in the shorter form; the bytes of any other must not change
      if (again[0] === 3)
        assert.equal(Buffer.from(again).toString('hex'), Buffer.from(wire).toString('hex'));
    }),
    { numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------------- replay filters

test('SlidingWindow matches a model: fresh ids in the window pass once, old or repeated ones never', () => {
  const W = BigInt(SLIDING_WINDOW_SIZE);
  const step = fc.oneof(
    fc.integer({ min: -3000, max: 5 }), // mostly nearby, some out of the window behind
    fc.integer({ min: 2000, max: 5000 }), // jumps near and past the window width
    fc.constant(0),
  );
  fc.assert(
    fc.property(
      fc.bigInt({ min: 0n, max: 2n ** 64n - 2_000_000n }),
      fc.array(step, { maxLength: 300 }),
      (start, steps) => {
        const w = new SlidingWindow();
        const seen = new Set<bigint>();
        let top = -1n;
        let id = start;
        for (const s of steps) {
          id += BigInt(s);
          if (id < 0n) id = 0n;
          const expected = !seen.has(id) && (id > top || top - id < W);
          assert.equal(w.check(id), expected, `check(${id}) with top ${top}`);
          assert.equal(w.check(id), expected, 'check does not change state');
          assert.equal(w.accept(id), expected, `accept(${id}) with top ${top}`);
          if (expected) {
            seen.add(id);
            if (id > top) top = id;
          }
          assert.equal(w.accept(id), false, 'an id is accepted once');
        }
      },
    ),
    { numRuns: 300 },
  );
  // the edges, explicitly
  const w = new SlidingWindow();
  assert.ok(w.accept(10_000n));
  assert.ok(w.accept(10_000n - W + 1n), 'the oldest id inside the window');
  assert.equal(w.accept(10_000n - W), false, 'one older is outside');
  assert.ok(w.accept(0n) === false);
});

test('SaltPool: with a clock that does not go back, a salt is refused exactly for 60 s after it was accepted', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.nat(15),
          fc.oneof(fc.integer({ min: 0, max: 5_000 }), fc.integer({ min: 50_000, max: 70_000 })),
        ),
        {
          maxLength: 300,
        },
      ),
      (events) => {
        const pool = new SaltPool();
        const expiry = new Map<number, number>();
        let now = NOW;
        for (const [salt, dt] of events) {
          now += dt;
          const s = seeded(`salt/${salt}`, 16);
          const exp = expiry.get(salt);
          const replay = exp !== undefined && exp > now;
          assert.equal(pool.has(s, now, now), replay);
          assert.equal(pool.add(s, now, now), !replay, `salt ${salt} at +${now - NOW} ms`);
          if (!replay) expiry.set(salt, now + SALT_POOL_TTL_MS);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('SaltPool: whatever the wall clock does, a salt is held until both clocks have said 60 s passed', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.nat(15),
          fc.integer({ min: 0, max: 70_000 }),
          fc.integer({ min: -200_000, max: 200_000 }),
        ),
        { maxLength: 300 },
      ),
      (events) => {
        const pool = new SaltPool();
        const seen = new Map<number, { wall: number; mono: number; wallHigh: number }>();
        let mono = 0;
        let wall = NOW;
        for (const [salt, dMono, dWall] of events) {
          mono += dMono;
          wall += dWall;
          for (const e of seen.values()) e.wallHigh = Math.max(e.wallHigh, wall);
          const s = seeded(`salt/${salt}`, 16);
          const e = seen.get(salt);
          const r = pool.add(s, wall, mono);
          // Never a false positive: refused only while one clock says under 60 s.
          const mayRefuse =
            e !== undefined &&
            (mono - e.mono < SALT_POOL_TTL_MS || wall - e.wall < SALT_POOL_TTL_MS);
          if (!mayRefuse) assert.equal(r, true, `salt ${salt}: no false positive`);
          // Always refused while the monotonic clock says under 60 s, or while the wall clock
          // does and has never said otherwise since (a salt goes only when both agree).
          const mustRefuse =
            e !== undefined &&
            (mono - e.mono < SALT_POOL_TTL_MS ||
              (wall - e.wall < SALT_POOL_TTL_MS && e.wallHigh - e.wall < SALT_POOL_TTL_MS));
          if (mustRefuse) assert.equal(r, false, `salt ${salt}: replay refused`);
          if (r) seen.set(salt, { wall, mono, wallHigh: wall });
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('RotatingSaltFilter: a salt among the last `capacity` within the window is caught; fresh ones pass', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 20 }),
      fc.array(fc.tuple(fc.nat(60), fc.nat(400)), { maxLength: 400 }),
      (capacity, events) => {
        // Roomy bits for the count: a false positive has probability below 1e-12 per query here.
        const f = new RotatingSaltFilter(seeded('secret', 16), {
          capacity,
          windowMs: 1_000,
          bits: 2 ** 16,
          hashes: 16,
        });
        const everSeen = new Set<number>();
        const accepted: { n: number; at: number }[] = [];
        let now = 0;
        for (const [n, dt] of events) {
          now += dt;
          const s = seeded(`filter/${n}`, 32);
          const r = f.add(s, now);
          if (!everSeen.has(n)) assert.equal(r, true, 'a new salt is never called a replay');
          const recent = accepted.slice(-capacity).some((a) => a.n === n && now - a.at < 1_000);
          if (recent) assert.equal(r, false, 'a recent salt is caught');
          if (r) accepted.push({ n, at: now });
          everSeen.add(n);
          assert.ok(f.allocatedBytes <= f.maxBytes, 'bounded memory');
        }
      },
    ),
    { numRuns: 300 },
  );
});
