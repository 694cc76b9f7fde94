/**
 * SOCKS5 codec against test/vectors/socks5.json (RFC 1928/1929 tables and bytes captured from curl):
 * every case through the codec battery (exact bytes, length, offsets, every prefix needs more),
 * every negative case fails with its code, and decoding gives the same result however the bytes
 * are split.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkCodec, splits, type CodecUnderTest } from '../../test/helpers/codec-battery.js';
import { hasCode } from '../errors.js';
import {
  METHOD_SELECTION_LENGTH,
  SOCKS_REPLY,
  USER_PASS_REPLY_LENGTH,
  decodeGreeting,
  decodeMethodSelection,
  decodeReply,
  decodeRequest,
  decodeUdpDatagram,
  decodeUdpHeader,
  decodeUserPass,
  decodeUserPassReply,
  encodeGreeting,
  encodeMethodSelection,
  encodeReply,
  encodeRequest,
  encodeUdpDatagram,
  encodeUdpHeader,
  encodeUserPass,
  encodeUserPassReply,
  greetingLength,
  methodSelection,
  replyBytes,
  replyLength,
  requestLength,
  udpHeaderLength,
  userPassLength,
  userPassReply,
} from './socks5.js';

interface Vectors {
  source: string;
  cases: { name: string; message: string; source: string; value: unknown; hex: string }[];
  negative: { name: string; message: string; source: string; hex: string; error: string }[];
}

/** The repository's test/vectors/<name>: from the working directory (npm test), else from here. */
function vectorFile(name: string): string {
  const fromCwd = join(process.cwd(), 'test/vectors', name);
  if (existsSync(fromCwd)) return fromCwd;
  return fileURLToPath(new URL(`../../../test/vectors/${name}`, import.meta.url));
}

const vectors = JSON.parse(readFileSync(vectorFile('socks5.json'), 'utf8')) as Vectors;

/** Values come from JSON, so each triple is used with loose types. */
const loose = <T>(c: CodecUnderTest<T>): CodecUnderTest<unknown> =>
  c as unknown as CodecUnderTest<unknown>;

const codecs: Record<string, CodecUnderTest<unknown>> = {
  greeting: loose({ encode: encodeGreeting, length: greetingLength, decode: decodeGreeting }),
  methodSelection: loose({
    encode: encodeMethodSelection,
    length: () => METHOD_SELECTION_LENGTH,
    decode: decodeMethodSelection,
  }),
  userPass: loose({ encode: encodeUserPass, length: userPassLength, decode: decodeUserPass }),
  userPassReply: loose({
    encode: encodeUserPassReply,
    length: () => USER_PASS_REPLY_LENGTH,
    decode: decodeUserPassReply,
  }),
  request: loose({ encode: encodeRequest, length: requestLength, decode: decodeRequest }),
  reply: loose({ encode: encodeReply, length: replyLength, decode: decodeReply }),
  udpHeader: loose({ encode: encodeUdpHeader, length: udpHeaderLength, decode: decodeUdpHeader }),
  udpDatagram: loose({
    encode: () => 0,
    length: () => 0,
    decode: (b: Uint8Array) => ({ value: decodeUdpDatagram(b), bytesRead: b.length }),
  }),
};

test('vectors file names its provenance and has negative cases', () => {
  assert.match(vectors.source, /RFC 1928/);
  assert.ok(vectors.cases.length >= 20);
  assert.ok(vectors.negative.length >= 10);
  for (const c of [...vectors.cases, ...vectors.negative]) assert.ok(c.source, c.name);
});

for (const c of vectors.cases) {
  test(`vector: ${c.message}: ${c.name}`, () => {
    const codec = codecs[c.message];
    assert.ok(codec, c.message);
    checkCodec(codec, c.value, Buffer.from(c.hex, 'hex'));
  });
}

for (const c of vectors.negative) {
  test(`negative: ${c.message}: ${c.name} → ${c.error}`, () => {
    const codec = codecs[c.message];
    assert.ok(codec, c.message);
    assert.throws(
      () => codec.decode(Buffer.from(c.hex, 'hex'), 0),
      (e: unknown) => hasCode(e, c.error as never),
    );
  });
}

test('a handshake decodes the same however the bytes are split (curl with credentials)', () => {
  // greeting, user/pass, request: one client flight, decoded message by message
  const flight = Buffer.from(
    '0503000102' + '0105616c69636506733363726574' + '0501000420010db80000000000000000000000010050',
    'hex',
  );
  const decoders = [decodeGreeting, decodeUserPass, decodeRequest] as const;
  const expected = [
    [0, 1, 2],
    { username: 'alice', password: 's3cret' },
    { command: 1, target: { host: '2001:db8::1', port: 80 } },
  ];
  for (const pieces of splits(flight)) {
    let buf = Buffer.alloc(0);
    const got: unknown[] = [];
    for (const p of pieces) {
      buf = Buffer.concat([buf, p]);
      for (;;) {
        const d = decoders[got.length]?.(buf, 0);
        if (!d) break;
        got.push(d.value);
        buf = buf.subarray(d.bytesRead);
      }
    }
    assert.deepEqual(got, expected);
    assert.equal(buf.length, 0);
  }
});

test('UDP datagram: header and data round trip, data is a view', () => {
  const data = Buffer.from('query');
  const dgram = encodeUdpDatagram({ host: 'example.org', port: 53 }, data);
  const d = decodeUdpDatagram(dgram);
  assert.deepEqual(d.target, { host: 'example.org', port: 53 });
  assert.equal(d.frag, 0);
  assert.equal(Buffer.from(d.data).toString(), 'query');
  assert.equal(d.data.buffer, dgram.buffer, 'no copy');
  // an empty payload is a valid datagram
  assert.equal(
    decodeUdpDatagram(encodeUdpDatagram({ host: '::1', port: 9 }, Buffer.alloc(0))).data.length,
    0,
  );
});

test('convenience builders give the same bytes as the triples', () => {
  assert.equal(methodSelection(2).toString('hex'), '0502');
  assert.equal(userPassReply(true).toString('hex'), '0100');
  assert.equal(userPassReply(false).toString('hex'), '0101');
  assert.equal(replyBytes(SOCKS_REPLY.CONNECTION_REFUSED).toString('hex'), '05050001000000000000');
  assert.equal(
    replyBytes(0, { host: '127.0.0.1', port: 40000 }).toString('hex'),
    '050000017f0000019c40',
  );
});

test('encoders refuse what cannot be encoded', () => {
  const out = Buffer.alloc(1024);
  assert.throws(
    () => encodeGreeting([], out, 0),
    (e) => hasCode(e, 'ERR_SOCKS_VERSION'),
  );
  assert.throws(
    () => encodeUserPass({ username: 'u'.repeat(256), password: '' }, out, 0),
    (e) => hasCode(e, 'ERR_SOCKS_AUTH'),
  );
  assert.throws(
    () => encodeRequest({ command: 1, target: { host: 'h', port: 70000 } }, out, 0),
    (e) => hasCode(e, 'ERR_SOCKS_ADDR'),
  );
});
