import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CARRIER_FRAME,
  carrierAckOffset,
  carrierFrame,
  carrierFrameLength,
  carrierOpenLength,
  decodeCarrierFrame,
  decodeCarrierOpen,
  encodeCarrierFrame,
  encodeCarrierOpen,
  type CarrierFrame,
  type CarrierOpen,
} from './trojan-carrier.js';
import { checkCodec, splits } from '../../test/helpers/codec-battery.js';
import { CodecError } from '../errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const sid = new Uint8Array(hex('00112233445566778899aabbccddeeff'));
const openCodec = {
  encode: encodeCarrierOpen,
  length: carrierOpenLength,
  decode: decodeCarrierOpen,
};

// Written by hand from the diagram in trojan-carrier.ts: VER, FLAGS, SESSION ID, CARRIER BYTES
// (u32), DOWN OFFSET (u48), UP OFFSET (u48), then a SOCKS5 address when NEW.
test('vectors: a new session and a resumption encode to their bytes and back', () => {
  const fresh: CarrierOpen = {
    sessionId: sid,
    carrierBytes: 8192,
    downOffset: 0,
    upOffset: 0,
    target: { host: 'example.com', port: 443 },
  };
  checkCodec(
    openCodec,
    fresh,
    hex(`01 01 00112233445566778899aabbccddeeff 00002000 000000000000 000000000000
         03 0b 6578616d706c652e636f6d 01bb`),
  );
  const resume: CarrierOpen = {
    sessionId: sid,
    carrierBytes: 16 * 1024 * 1024,
    downOffset: 2 ** 40 + 5,
    upOffset: 70_000,
  };
  checkCodec(
    openCodec,
    resume,
    hex('01 00 00112233445566778899aabbccddeeff 01000000 010000000005 000000011170'),
  );
});

test('vectors: frames of every type', () => {
  const cases: [CarrierFrame['type'], Uint8Array | null, number, string][] = [
    [CARRIER_FRAME.DATA, hex('616263'), 0, '00 0003 616263'],
    [CARRIER_FRAME.NEXT, null, 0, '01 0000'],
    [CARRIER_FRAME.FIN, null, 0, '02 0000'],
    [CARRIER_FRAME.RESET, null, 0, '03 0000'],
    [CARRIER_FRAME.ACK, null, 0x123456789a, '04 0006 00123456789a'],
  ];
  for (const [type, payload, ack, want] of cases) {
    const bytes = carrierFrame(type, payload, ack);
    assert.equal(bytes.toString('hex'), hex(want).toString('hex'));
    const big = Buffer.alloc(bytes.length + 9, 0xaa);
    assert.equal(encodeCarrierFrame(type, payload, big, 4, ack), bytes.length);
    assert.equal(big[3], 0xaa);
    assert.equal(big[4 + bytes.length], 0xaa);
    const d = decodeCarrierFrame(big.subarray(2), 2);
    assert.ok(d);
    assert.equal(d.bytesRead, bytes.length);
    assert.equal(d.value.type, type);
    if (type === CARRIER_FRAME.ACK) assert.equal(carrierAckOffset(d.value), ack);
    if (payload) assert.deepEqual(Buffer.from(d.value.payload), Buffer.from(payload));
    for (let i = 0; i < bytes.length; i++)
      assert.equal(decodeCarrierFrame(bytes.subarray(0, i), 0), null, `prefix ${i}`);
  }
  assert.equal(carrierFrameLength(3), 6);
});

test('negative: malformed headers and frames are CodecErrors naming the problem', () => {
  const bad: [string, () => unknown, RegExp][] = [
    ['version 2', () => decodeCarrierOpen(hex('0201'), 0), /version 2/],
    ['unknown flag', () => decodeCarrierOpen(hex('0102'), 0), /flags/],
    [
      'carrier bytes under the minimum',
      () => decodeCarrierOpen(hex(`0100 ${'00'.repeat(16)} 000003ff ${'00'.repeat(12)}`), 0),
      /carrier bytes 1023/,
    ],
    [
      'a new session at a non-zero offset',
      () =>
        decodeCarrierOpen(
          hex(`0101 ${'00'.repeat(16)} 00002000 000000000001 000000000000 01 7f000001 0050`),
          0,
        ),
      /offset 0/,
    ],
    ['unknown frame type', () => decodeCarrierFrame(hex('05'), 0), /unknown frame type 5/],
    ['empty DATA', () => decodeCarrierFrame(hex('000000'), 0), /empty DATA/],
    ['ACK of 5 bytes', () => decodeCarrierFrame(hex('040005'), 0), /ACK of 5/],
    ['NEXT with payload', () => decodeCarrierFrame(hex('010001'), 0), /payload/],
    [
      'encode 16-byte id',
      () =>
        encodeCarrierOpen(
          { ...{ sessionId: new Uint8Array(3), carrierBytes: 8192, downOffset: 0, upOffset: 0 } },
          Buffer.alloc(64),
          0,
        ),
      /16 bytes/,
    ],
    [
      'encode DATA over 65535',
      () => carrierFrame(CARRIER_FRAME.DATA, new Uint8Array(65536)),
      /DATA of 65536/,
    ],
  ];
  for (const [name, f, msg] of bad)
    assert.throws(
      f,
      (e: unknown) => e instanceof CodecError && e.code === 'ERR_CARRIER' && msg.test(e.message),
      name,
    );
});

test('a frame stream decodes the same whatever the chunking', () => {
  const stream = Buffer.concat([
    carrierFrame(CARRIER_FRAME.ACK, null, 77),
    carrierFrame(CARRIER_FRAME.DATA, hex('0102030405')),
    carrierFrame(CARRIER_FRAME.DATA, hex('ff')),
    carrierFrame(CARRIER_FRAME.NEXT),
  ]);
  const want = ['4:77', '0:0102030405', '0:ff', '1:'];
  for (const parts of splits(stream)) {
    let pending = Buffer.alloc(0);
    const got: string[] = [];
    for (const p of parts) {
      pending = Buffer.concat([pending, p]);
      for (;;) {
        const d = decodeCarrierFrame(pending, 0);
        if (!d) break;
        got.push(
          `${d.value.type}:${d.value.type === CARRIER_FRAME.ACK ? carrierAckOffset(d.value) : Buffer.from(d.value.payload).toString('hex')}`,
        );
        pending = pending.subarray(d.bytesRead);
      }
    }
    assert.deepEqual(got, want);
  }
});

test('random open headers round-trip', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.integer({ min: 1024, max: 16 * 1024 * 1024 }),
      fc.integer({ min: 0, max: 2 ** 48 - 1 }),
      fc.integer({ min: 0, max: 2 ** 48 - 1 }),
      (id, n, down, up) => {
        const o: CarrierOpen = { sessionId: id, carrierBytes: n, downOffset: down, upOffset: up };
        const out = Buffer.alloc(carrierOpenLength(o));
        encodeCarrierOpen(o, out, 0);
        assert.deepEqual(decodeCarrierOpen(out, 0)?.value, o);
      },
    ),
    { numRuns: 300, seed: 17 },
  );
});
