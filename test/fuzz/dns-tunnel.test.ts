/**
 * The DNS tunnel's decoders and its server under hostile datagrams: random bytes, and bit flips and
 * truncations of well-formed queries and answers. Allowed outcomes: a value or a LadderError from
 * the decoders; from the server, an answer within the asker's limit or silence, never an exception,
 * and never more sessions than its cap. Bounded runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LadderError } from '../../src/errors.js';
import {
  decodeTunnelAnswer,
  decodeTunnelPacket,
  decodeTunnelQuery,
  EDNS_PAYLOAD_BYTES,
  encodeTunnelAnswer,
  encodeTunnelQuery,
  maxUpstreamData,
  type TunnelPacket,
} from '../../src/codec/dns-tunnel.js';
import { DnsTunnelServer } from '../../src/transport/dns-tunnel-server.js';
import type { TunnelTimers } from '../../src/transport/dns-tunnel-link.js';

const DOMAIN = 't.example.com';
const RUNS = { numRuns: 400 };

function allowed(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof LadderError)) throw e;
  }
}

const packet = fc.record({
  session: fc.integer({ min: 0, max: 3 }),
  flags: fc.constantFrom(0, 1, 4, 5),
  seq: fc.nat(),
  ack: fc.nat(),
  data: fc.uint8Array({ maxLength: maxUpstreamData(DOMAIN) }),
}) as fc.Arbitrary<TunnelPacket>;

const query = fc
  .tuple(packet, fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ minLength: 4, maxLength: 4 }))
  .map(([p, id, nonce]) => encodeTunnelQuery(DOMAIN, p, id, nonce));

function mangled(base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.tuple(base, fc.nat(), fc.nat(), fc.boolean()).map(([b, cut, flip, doCut]) => {
    const out = Buffer.from(b);
    out[flip % out.length]! ^= 1 << (flip % 8);
    return doCut ? out.subarray(0, cut % (out.length + 1)) : out;
  });
}

test('fuzz: the decoders on random bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 700 }), (b) => {
      allowed(() => decodeTunnelQuery(b, DOMAIN));
      allowed(() => decodeTunnelAnswer(b));
      allowed(() => decodeTunnelPacket(b, 0));
    }),
    RUNS,
  );
});

test('fuzz: queries and answers cut and bit-flipped', () => {
  const answer = query.map((q) => {
    const d = decodeTunnelQuery(q, DOMAIN);
    return encodeTunnelAnswer(d.message, d.kind === 'tunnel' ? d.packet : null);
  });
  fc.assert(
    fc.property(mangled(query), mangled(answer), (q, a) => {
      allowed(() => decodeTunnelQuery(q, DOMAIN));
      allowed(() => decodeTunnelAnswer(a));
    }),
    RUNS,
  );
});

test('fuzz: the server answers within limits, never throws, never exceeds its caps', () => {
  const timers: TunnelTimers = { setTimeout: () => 0, clearTimeout: () => {} };
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(query, mangled(query), fc.uint8Array({ maxLength: 300 }).map(Buffer.from)),
        {
          maxLength: 30,
        },
      ),
      (datagrams) => {
        const server = new DnsTunnelServer({
          domain: DOMAIN,
          timers,
          maxSessions: 2,
          onSession: (s) => s.on('error', () => {}),
        });
        for (const d of datagrams)
          server.handle(d, '198.18.0.1', (out) => assert.ok(out.length <= EDNS_PAYLOAD_BYTES));
        assert.ok(server.sessions <= 2);
        server.close();
      },
    ),
    { numRuns: 150 },
  );
});
