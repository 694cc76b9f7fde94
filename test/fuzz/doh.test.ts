/**
 * The DoH response decoder under hostile input: random bytes, random heads around real DNS
 * messages, bit flips and truncations of well-formed responses, with the connection open or ended.
 * Allowed outcomes: a value, null, or a LadderError; never another exception, never a body over
 * 65535 bytes. Bounded runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LadderError } from '../../src/errors.js';
import { decodeChunkedBody, decodeDohResponse, MAX_DOH_BODY_BYTES } from '../../src/codec/doh.js';
import { dnsMessageBytes, dnsQuery, DNS_TYPE } from '../../src/codec/dns.js';

function allowed(f: () => { value: { body?: Uint8Array } | Uint8Array } | null): void {
  try {
    const r = f();
    const body = r && (r.value instanceof Uint8Array ? r.value : r.value.body);
    if (body) assert.ok(body.length <= MAX_DOH_BODY_BYTES);
  } catch (e) {
    if (!(e instanceof LadderError)) throw e;
  }
}

const RUNS = { numRuns: 400 };
const MESSAGE = dnsMessageBytes(dnsQuery(0, 'fuzz.lab', DNS_TYPE.AAAA));

const head = fc
  .tuple(
    fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTP/1.1 '),
    fc.integer({ min: 0, max: 999 }),
    fc.array(
      fc.constantFrom(
        'Content-Type: application/dns-message',
        `Content-Length: ${MESSAGE.length}`,
        'Content-Length: 70000',
        'Content-Length: 3, 4',
        'Transfer-Encoding: chunked',
        'Transfer-Encoding: gzip',
        'Connection: close',
        'Connection: keep-alive',
        ' folded',
        'Bad Name: x',
      ),
      { maxLength: 5 },
    ),
  )
  .map(
    ([v, s, fields]) =>
      `${v} ${String(s).padStart(3, '0')} X\r\n${fields.map((f) => `${f}\r\n`).join('')}\r\n`,
  );

const chunkedBody = fc
  .array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.constantFrom('', ';a=b', ' ', ';\x01')), {
    maxLength: 6,
  })
  .map((chunks) => {
    const parts: string[] = [];
    for (const [n, ext] of chunks) parts.push(`${n.toString(16)}${ext}\r\n${'x'.repeat(n)}\r\n`);
    return Buffer.from(`${parts.join('')}0\r\n\r\n`, 'latin1');
  });

test('fuzz: DoH responses from random bytes, open or ended', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (b, ended) => {
      allowed(() => decodeDohResponse(b, 0, ended));
      allowed(() => decodeChunkedBody(b, 0, 100));
    }),
    RUNS,
  );
});

test('fuzz: random heads and bodies, cut and bit-flipped', () => {
  fc.assert(
    fc.property(
      head,
      fc.oneof(fc.constant(MESSAGE), chunkedBody, fc.uint8Array({ maxLength: 200 })),
      fc.nat(),
      fc.nat(),
      fc.boolean(),
      (h, body, cut, flip, ended) => {
        const whole = Buffer.concat([Buffer.from(h, 'latin1'), body]);
        allowed(() => decodeDohResponse(whole, 0, ended));
        allowed(() => decodeDohResponse(whole.subarray(0, cut % (whole.length + 1)), 0, ended));
        const flipped = Buffer.from(whole);
        flipped[flip % flipped.length]! ^= 1 << (flip % 8);
        allowed(() => decodeDohResponse(flipped, 0, ended));
      },
    ),
    RUNS,
  );
});

test('fuzz: a well-formed response decodes the same wherever it is cut first', () => {
  const whole = Buffer.concat([
    Buffer.from(
      `HTTP/1.1 200 OK\r\nContent-Type: application/dns-message\r\nContent-Length: ${MESSAGE.length}\r\n\r\n`,
    ),
    MESSAGE,
  ]);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: whole.length - 1 }), (cut) => {
      assert.equal(decodeDohResponse(whole.subarray(0, cut), 0, false), null);
      assert.deepEqual(Buffer.from(decodeDohResponse(whole, 0, false)!.value.body), MESSAGE);
    }),
    RUNS,
  );
});
