/**
 * Every parser, fed random, truncated, bit-flipped and oversized input: the only allowed outcomes
 * are a value, null ("need more"), or a LadderError (CodecError, AuthError, ConfigError). Any other
 * exception (RangeError from a buffer read, TypeError) is a bug. Bounded runs, a few seconds in all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { LadderError } from '../../src/errors.js';
import { decodeSocksAddr } from '../../src/codec/socks-addr.js';
import {
  decodeGreeting,
  decodeReply,
  decodeRequest,
  decodeUdpDatagram,
  decodeUserPass,
} from '../../src/codec/socks5.js';
import {
  forwardableHeaders,
  parseAbsoluteForm,
  parseAuthority,
  parseBasicAuth,
} from '../../src/codec/http-proxy.js';
import { parseSsUri } from '../../src/codec/access-key-uri.js';
import {
  decodeTrojanRequest,
  decodeTrojanUdpPacket,
  takeTrojanUdpPacket,
} from '../../src/codec/trojan.js';
import { decodeWsHeader } from '../../src/codec/websocket.js';
import { ByteQueue } from '../../src/codec/ss-stream.js';
import { decodeCarrierFrame, decodeCarrierOpen } from '../../src/codec/trojan-carrier.js';
import {
  SsKeyTable,
  SsTcpAcceptor,
  maxAcceptBytes,
  SsTcpClientSession,
  type ReplayGuard,
} from '../../src/codec/ss-tcp.js';
import { decodeUdp2017, decodeUdp2022Response, openUdpRequest } from '../../src/codec/ss-udp.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SS_METHOD_NAMES, SS_METHODS } from '../../src/crypto/methods.js';
import { RotatingSaltFilter, SaltPool } from '../../src/crypto/replay.js';
import { acceptsGzip } from '../../src/server/decoy/nginx-gzip.js';
import { PlainHttpHandover } from '../../src/server/plain-http-handover.js';
import { decodeCertificateParts } from '../../src/codec/x509.js';
import { mldsaCert } from '../helpers/mldsa-cert.js';

function allowed(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof LadderError)) throw e;
  }
}

const bytes = fc.uint8Array({ maxLength: 600 });
const RUNS = { numRuns: 400 };

test('fuzz: SOCKS5 and SOCKS address decoders', () => {
  fc.assert(
    fc.property(bytes, (b) => {
      allowed(() => decodeSocksAddr(b, 0));
      allowed(() => decodeGreeting(b, 0));
      allowed(() => decodeUserPass(b, 0));
      allowed(() => decodeRequest(b, 0));
      allowed(() => decodeReply(b, 0));
      allowed(() => decodeUdpDatagram(b));
    }),
    RUNS,
  );
});

test('fuzz: HTTP proxy target and header parsing', () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 300 }),
      fc.array(fc.string({ maxLength: 40 }), { maxLength: 20 }),
      (s, raw) => {
        allowed(() => parseAuthority(s));
        allowed(() => parseAbsoluteForm(s));
        allowed(() => parseAbsoluteForm(`http://${s}`));
        allowed(() => parseBasicAuth(s));
        allowed(() => forwardableHeaders(raw));
      },
    ),
    RUNS,
  );
});

test("fuzz: nginx's Accept-Encoding reading and the plain-HTTP shadow", () => {
  const ae = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc
      .array(fc.constantFrom('gzip', 'GZIP', ';', ',', ' ', 'q', '=', '0', '1', '.', '5', 'x'), {
        maxLength: 20,
      })
      .map((a) => a.join('')),
  );
  fc.assert(
    fc.property(ae, fc.array(bytes, { maxLength: 5 }), (s, pieces) => {
      assert.equal(typeof acceptsGzip(s), 'boolean');
      const h = new PlainHttpHandover(() => {});
      for (const p of pieces) h.feed(Buffer.from(p));
      assert.equal(typeof h.reacted, 'boolean');
    }),
    RUNS,
  );
});

test('fuzz: ss:// key URIs', () => {
  fc.assert(
    fc.property(
      fc.string({ maxLength: 200 }),
      fc.constantFrom('', 'ss://', 'ss://YWVzLTI1Ni1nY206cHc@', 'ss://2022-blake3-aes-128-gcm:'),
      (s, pre) => {
        allowed(() => parseSsUri(pre + s));
      },
    ),
    { numRuns: 1000 },
  );
});

test('fuzz: carrier open headers and frames', () => {
  fc.assert(
    fc.property(bytes, fc.nat(8), (b, off) => {
      const o = Math.min(off, b.length);
      allowed(() => decodeCarrierOpen(b, o));
      allowed(() => decodeCarrierFrame(b, o));
      // a plausible header: version 1, flags 0..1, then random
      const h = Buffer.concat([Buffer.from([1, b[0] === undefined ? 1 : b[0] & 1]), b]);
      allowed(() => decodeCarrierOpen(h, 0));
      // a frame stream: decode until null or error, never past the input
      let p = 0;
      for (let i = 0; i < 1000 && p < b.length; i++) {
        let d;
        try {
          d = decodeCarrierFrame(b, p);
        } catch (e) {
          if (!(e instanceof LadderError)) throw e;
          break;
        }
        if (d === null) break;
        assert.ok(d.bytesRead >= 3 && p + d.bytesRead <= b.length);
        p += d.bytesRead;
      }
    }),
    { numRuns: 3000, seed: 23 },
  );
});

test('fuzz: Trojan and WebSocket decoders', () => {
  fc.assert(
    fc.property(bytes, (b) => {
      allowed(() => decodeTrojanRequest(b, 0));
      allowed(() => decodeTrojanUdpPacket(b, 0));
      allowed(() => {
        const q = new ByteQueue();
        q.push(Buffer.from(b));
        while (takeTrojanUdpPacket(q) !== null);
      });
      allowed(() => decodeWsHeader(b, 0));
    }),
    RUNS,
  );
});

function guard(): ReplayGuard {
  const f = new RotatingSaltFilter(randomBytes(16));
  const p = new SaltPool();
  return { addSalt2017: (s) => f.add(s, 0), addSalt2022: (s, n) => p.add(s, n, n) };
}

for (const method of SS_METHOD_NAMES) {
  const spec = SS_METHODS[method];
  const key = makeCipherKey(
    method,
    spec.edition === 2017 ? 'fuzz-password' : randomBytes(spec.keySize).toString('base64'),
  );
  const table = new SsKeyTable([{ id: 'k', key }]);
  const now = Date.now();
  const valid = new SsTcpClientSession(key, randomBytes).encodeRequest(
    { host: 'a.test', port: 80 },
    Buffer.from('payload'),
    now,
  );

  test(`fuzz ${method}: acceptor, client decoder and UDP decoders`, () => {
    fc.assert(
      fc.property(
        fc.oneof(
          bytes,
          fc.nat(valid.length - 1).map((n) => Uint8Array.from(valid.subarray(0, n))),
          fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
            const b = Uint8Array.from(valid);
            b[i]! ^= x;
            return b;
          }),
        ),
        fc.nat(40),
        (b, cut) => {
          const buf = Buffer.from(b);
          const acc = new SsTcpAcceptor(table, guard(), randomBytes);
          allowed(() => {
            acc.push(Buffer.from(buf.subarray(0, cut)), now);
            acc.push(Buffer.from(buf.subarray(cut)), now);
          });
          const client = new SsTcpClientSession(key, randomBytes);
          client.encodeRequest({ host: 'a.test', port: 80 }, Buffer.alloc(0), now);
          allowed(() => client.decode(Buffer.from(buf), now));
          allowed(() => openUdpRequest(table, Buffer.from(buf), now));
          allowed(() => decodeUdp2017(key, Buffer.from(buf)));
          allowed(() => decodeUdp2022Response(key, Buffer.from(buf), now));
        },
      ),
      { numRuns: 300 },
    );
  });
}

test('fuzz: certificate DER split for ML-DSA checks (random, truncated, bit-flipped)', () => {
  const der = mldsaCert({ level: 44, subject: 'localhost' }).der;
  assert.ok(decodeCertificateParts(der).publicKey.length === 1312);
  // Every strict prefix is refused with a CodecError (a DER length then runs past the end).
  for (let n = 0; n < der.length; n += 7)
    assert.throws(() => decodeCertificateParts(der.subarray(0, n)), LadderError);
  fc.assert(
    fc.property(
      bytes,
      fc.array(fc.nat({ max: der.length * 8 - 1 }), { minLength: 1, maxLength: 8 }),
      (junk, flips) => {
        allowed(() => decodeCertificateParts(Buffer.from(junk)));
        allowed(() => decodeCertificateParts(Buffer.concat([Buffer.from([0x30, 0x82]), junk])));
        const b = Buffer.from(der);
        for (const f of flips) b[f >> 3]! ^= 1 << (f & 7);
        allowed(() => decodeCertificateParts(b));
        allowed(() => decodeCertificateParts(b.subarray(0, flips[0]! >> 3)));
      },
    ),
    RUNS,
  );
});

test('oversized: a 1 MiB random request is refused without buffering it all', () => {
  const keys = [
    { id: 'a', key: makeCipherKey('aes-256-gcm', 'x') },
    { id: 'b', key: makeCipherKey('2022-blake3-aes-256-gcm', randomBytes(32).toString('base64')) },
  ];
  const acc = new SsTcpAcceptor(new SsKeyTable(keys), guard(), randomBytes);
  const limit = maxAcceptBytes();
  const piece = 4096;
  let pushed = 0;
  let refused: unknown = null;
  while (pushed < 1 << 20 && refused === null) {
    try {
      assert.equal(acc.push(randomBytes(piece), Date.now()), null, 'random bytes never accepted');
    } catch (err) {
      refused = err;
    }
    pushed += piece;
    if (refused === null)
      assert.ok(acc.buffered <= limit, `holds ${acc.buffered} > ${limit} bytes`);
  }
  assert.ok(refused instanceof LadderError, `refused with a LadderError, not ${String(refused)}`);
  assert.ok(pushed <= limit + piece, `refused only after ${pushed} bytes (limit ${limit})`);
});
