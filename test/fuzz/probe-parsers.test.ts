/**
 * The probe's parsers under hostile input: DNS answers from the network (random, truncated,
 * bit-flipped), test lists from files, resolv.conf. Allowed outcomes: a value, null, or a
 * LadderError; never another exception, never a hang. Bounded runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { LadderError } from '../../src/errors.js';
import {
  decodeDnsMessage,
  decodeDnsTcpFrame,
  dnsMessageBytes,
  DNS_TYPE,
  type DnsMessage,
  type DnsRecord,
} from '../../src/codec/dns.js';
import { parseCsv, parseTestList } from '../../src/probe/test-list.js';
import { resolvConfNameserver } from '../../src/probe/dns-client.js';

function allowed(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof LadderError)) throw e;
  }
}

const RUNS = { numRuns: 500 };
const vectors = (
  JSON.parse(
    readFileSync(fileURLToPath(new URL('../../../test/vectors/dns.json', import.meta.url)), 'utf8'),
  ) as { cases: { hex: string }[] }
).cases.map((c) => Buffer.from(c.hex, 'hex'));

test('fuzz: DNS decoders on random bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 700 }), (b) => {
      allowed(() => decodeDnsMessage(b, 0));
      allowed(() => decodeDnsTcpFrame(b, 0));
    }),
    RUNS,
  );
});

test('fuzz: DNS decoder on bit-flipped and cut vectors (compression pointers included)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...vectors),
      fc.array(fc.nat(), { maxLength: 4 }),
      fc.nat(),
      (v, flips, cut) => {
        const b = Buffer.from(v);
        for (const f of flips) b[f % b.length] = b[f % b.length]! ^ (1 << (f % 8));
        allowed(() => decodeDnsMessage(b.subarray(0, cut % (b.length + 1)), 0));
      },
    ),
    RUNS,
  );
});

test('fuzz: a message made only of pointers ends (no loop)', () => {
  // header with QDCOUNT 1, then a QNAME that is a chain of pointers to each other
  const b = Buffer.alloc(12 + 64);
  b.writeUInt16BE(1, 4);
  for (let o = 12; o < b.length; o += 2) b.writeUInt16BE(0xc000 | (o - 2), o);
  allowed(() => decodeDnsMessage(b, 0));
});

const label = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
const name = fc.array(label, { minLength: 0, maxLength: 4 }).map((l) => l.join('.'));
const record: fc.Arbitrary<DnsRecord> = fc.oneof(
  fc.record({
    name,
    type: fc.constant(DNS_TYPE.A),
    class: fc.constant(1),
    ttl: fc.nat(),
    data: fc.ipV4(),
  }),
  fc.record({
    name,
    type: fc.constant(DNS_TYPE.CNAME),
    class: fc.constant(1),
    ttl: fc.nat(),
    data: name,
  }),
  fc.record({
    name,
    type: fc.constant(DNS_TYPE.TXT),
    class: fc.constant(1),
    ttl: fc.nat(),
    data: fc.uint8Array({ maxLength: 40 }).map((u) => new Uint8Array(u)),
  }),
);

test('fuzz: encode then decode gives the message back', () => {
  fc.assert(
    fc.property(
      fc.record({
        id: fc.nat(0xffff),
        flags: fc.nat(0xffff),
        questions: fc.array(fc.record({ name, type: fc.nat(0xffff), class: fc.constant(1) }), {
          maxLength: 2,
        }),
        answers: fc.array(record, { maxLength: 4 }),
        authorities: fc.array(record, { maxLength: 2 }),
        additionals: fc.array(record, { maxLength: 2 }),
      }),
      (raw) => {
        // fast-check builds null-prototype records; the decoder makes plain objects
        const plain = <T extends object>(o: T): T => ({ ...o });
        const m: DnsMessage = {
          ...plain(raw),
          questions: raw.questions.map(plain),
          answers: raw.answers.map(plain),
          authorities: raw.authorities.map(plain),
          additionals: raw.additionals.map(plain),
        };
        const d = decodeDnsMessage(dnsMessageBytes(m), 0);
        assert.ok(d);
        assert.deepEqual(d.value, m);
      },
    ),
    { numRuns: 300 },
  );
});

test('fuzz: test lists and resolv.conf from arbitrary text', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 400 }), (s) => {
      allowed(() => parseCsv(s));
      allowed(() => parseTestList(s));
      allowed(() => parseTestList(`url,category_code\n${s}`));
      resolvConfNameserver(s);
    }),
    RUNS,
  );
});
