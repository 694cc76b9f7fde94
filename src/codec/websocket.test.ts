import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  applyWsMask,
  decodeWsHeader,
  encodeWsHeader,
  websocketAccept,
  wsHeaderLength,
  type WsFrameHeader,
} from './websocket.js';
import { checkCodec } from '../../test/helpers/codec-battery.js';
import { CodecError } from '../errors.js';

const codec = {
  encode: encodeWsHeader,
  length: (h: WsFrameHeader) => wsHeaderLength(h.payloadLength, h.mask !== undefined),
  decode: decodeWsHeader,
};

test('RFC 6455 §1.3 handshake example: accept key', () => {
  assert.equal(websocketAccept('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
});

test('RFC 6455 §5.7 examples: unmasked and masked "Hello", 256 and 64 KiB binary headers', () => {
  checkCodec(codec, { fin: true, opcode: 1, payloadLength: 5 }, Buffer.from('8105', 'hex'));
  checkCodec(
    codec,
    { fin: true, opcode: 1, mask: new Uint8Array([0x37, 0xfa, 0x21, 0x3d]), payloadLength: 5 },
    Buffer.from('818537fa213d', 'hex'),
  );
  checkCodec(codec, { fin: true, opcode: 2, payloadLength: 256 }, Buffer.from('827e0100', 'hex'));
  checkCodec(
    codec,
    { fin: true, opcode: 2, payloadLength: 65536 },
    Buffer.from('827f0000000000010000', 'hex'),
  );
  const masked = Buffer.from('7f9f4d5158', 'hex');
  applyWsMask(masked, new Uint8Array([0x37, 0xfa, 0x21, 0x3d]));
  assert.equal(masked.toString(), 'Hello');
});

test('negative: RSV bits, reserved opcodes, long or fragmented control frames', () => {
  for (const hex of ['c105', '8305', '0905', '897e0080', '8b00'])
    assert.throws(() => decodeWsHeader(Buffer.from(hex, 'hex'), 0), CodecError, hex);
  assert.throws(() => decodeWsHeader(Buffer.from('827f0000000100000000', 'hex'), 0), CodecError);
});

test('masking at any phase equals masking the whole', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      fc.nat(199),
      (data, mask, cutRaw) => {
        const whole = Uint8Array.from(data);
        applyWsMask(whole, mask);
        const cut = Math.min(cutRaw, data.length);
        const a = Uint8Array.from(data.subarray(0, cut));
        const b = Uint8Array.from(data.subarray(cut));
        applyWsMask(a, mask, 0);
        applyWsMask(b, mask, cut);
        assert.deepEqual(Buffer.concat([a, b]), Buffer.from(whole));
      },
    ),
    { numRuns: 500 },
  );
});

test('fuzz: random headers give a value, null or a CodecError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 16 }), (b) => {
      try {
        decodeWsHeader(b, 0);
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
      }
    }),
    { numRuns: 3000 },
  );
});
