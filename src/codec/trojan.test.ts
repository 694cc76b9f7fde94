import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkCodec } from '../../test/helpers/codec-battery.js';
import {
  TROJAN_CMD,
  decodeTrojanRequest,
  decodeTrojanUdpPacket,
  takeTrojanUdpPacket,
  encodeTrojanRequest,
  encodeTrojanUdpPacket,
  trojanPasswordHash,
  trojanRequestLength,
  trojanUdpPacketLength,
  type TrojanRequest,
} from './trojan.js';
import { CodecError } from '../errors.js';
import { ByteQueue } from './ss-stream.js';

// SHA-224("abc") from FIPS 180-2 Appendix B (SHA-224 example): 23097d22 3405d822 8642a477 bda255b3 2aadbce4 bda0b3f7 e36c9da7
test('password hash is hex(SHA-224): FIPS 180-2 "abc" example', () => {
  assert.equal(
    trojanPasswordHash('abc').toString(),
    '23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7',
  );
});

const req: TrojanRequest = {
  hash: trojanPasswordHash('abc'),
  command: TROJAN_CMD.CONNECT,
  target: { host: 'example.com', port: 443 },
};
const reqHex =
  Buffer.from('23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7').toString('hex') +
  '0d0a' +
  '01' +
  '030b6578616d706c652e636f6d01bb' +
  '0d0a';

test('request codec battery (trojan-gfw protocol document layout)', () => {
  checkCodec(
    {
      encode: encodeTrojanRequest,
      length: (r: TrojanRequest) => trojanRequestLength(r.target),
      decode: decodeTrojanRequest,
    },
    req,
    Buffer.from(reqHex, 'hex'),
  );
});

test('UDP packet codec battery', () => {
  const p = { target: { host: '127.0.0.1', port: 53 }, payload: new Uint8Array([1, 2, 3]) };
  const hex = '017f00000100350003' + '0d0a' + '010203';
  checkCodec(
    {
      encode: encodeTrojanUdpPacket,
      length: trojanUdpPacketLength,
      decode: (b, o) => {
        const d = decodeTrojanUdpPacket(b, o);
        return (
          d && {
            value: { target: d.value.target, payload: new Uint8Array(d.value.payload) },
            bytesRead: d.bytesRead,
          }
        );
      },
    },
    p,
    Buffer.from(hex, 'hex'),
  );
});

test('negative: HTTP and TLS first bytes are rejected at once, so they go to the fallback', () => {
  for (const first of ['GET / HTTP/1.1\r\n', '\x16\x03\x01\x02\x00', 'PRI * HTTP/2.0']) {
    assert.throws(() => decodeTrojanRequest(Buffer.from(first, 'latin1'), 0), CodecError);
  }
  const bad = Buffer.from(reqHex, 'hex');
  bad[58] = 0x02; // BIND is not a Trojan command
  assert.throws(() => decodeTrojanRequest(bad, 0), CodecError);
  const noCrlf = Buffer.from(reqHex, 'hex');
  noCrlf[56] = 0x20;
  assert.throws(() => decodeTrojanRequest(noCrlf, 0), CodecError);
});

test('fuzz: random bytes decode to a value, null, or a CodecError, nothing else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      for (const decode of [decodeTrojanRequest, decodeTrojanUdpPacket]) {
        try {
          decode(bytes, 0);
        } catch (e) {
          if (!(e instanceof CodecError)) throw e;
        }
      }
    }),
    { numRuns: 2000 },
  );
});

test('takeTrojanUdpPacket: whole packets off a queue fed a byte at a time; bad CRLF throws', () => {
  const packets = [
    { target: { host: '198.18.0.1', port: 53 }, payload: Buffer.from('first') },
    { target: { host: 'example.com', port: 443 }, payload: Buffer.alloc(0) },
  ];
  const wire = Buffer.concat(
    packets.map((p) => {
      const b = Buffer.alloc(trojanUdpPacketLength(p));
      encodeTrojanUdpPacket(p, b, 0);
      return b;
    }),
  );
  const q = new ByteQueue();
  const got: { host: string; port: number; payload: string }[] = [];
  for (let i = 0; i < wire.length; i++) {
    q.push(wire.subarray(i, i + 1));
    for (let p = takeTrojanUdpPacket(q); p !== null; p = takeTrojanUdpPacket(q))
      got.push({ ...p.target, payload: Buffer.from(p.payload).toString() });
  }
  assert.deepEqual(got, [
    { host: '198.18.0.1', port: 53, payload: 'first' },
    { host: 'example.com', port: 443, payload: '' },
  ]);
  assert.equal(q.length, 0);
  const bad = Buffer.from(wire.subarray(0, wire.length));
  bad[1 + 4 + 2 + 2] = 0; // the CR after the first packet's length
  const q2 = new ByteQueue();
  q2.push(bad);
  assert.throws(() => takeTrojanUdpPacket(q2), CodecError);
});
