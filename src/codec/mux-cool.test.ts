import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  MUX_PAD_OVERHEAD,
  MUX_STATUS,
  classifyMuxStart,
  decodeMuxHeader,
  encodeMuxHeader,
  muxHeaderLength,
  muxPaddingHeader,
  muxPaddingLength,
  type MuxFrameHeader,
} from './mux-cool.js';
import { checkCodec } from '../../test/helpers/codec-battery.js';
import { CodecError } from '../errors.js';

interface Vectors {
  cases: { name: string; frame: MuxFrameHeader; hex: string; data?: string }[];
  negative: { name: string; hex: string }[];
}
const vectors = JSON.parse(
  readFileSync(new URL('../../../test/vectors/mux-cool.json', import.meta.url), 'utf8'),
) as Vectors;
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const codec = { encode: encodeMuxHeader, length: muxHeaderLength, decode: decodeMuxHeader };

test('vectors: every header encodes to its bytes and back (codec battery)', () => {
  assert.ok(vectors.cases.length >= 8);
  for (const c of vectors.cases) {
    checkCodec(codec, c.frame, hex(c.hex));
    if (c.data !== undefined) assert.equal(hex(c.data).length, c.frame.dataLength, c.name);
  }
});

test('negative vectors: each is a CodecError ERR_MUX_COOL, never null or a value', () => {
  for (const n of vectors.negative) {
    assert.throws(
      () => decodeMuxHeader(hex(n.hex), 0),
      (e: unknown) => e instanceof CodecError && e.code === 'ERR_MUX_COOL',
      n.name,
    );
  }
});

test('New metadata with fields appended by later versions (XUDP global ID) is read, the rest skipped', () => {
  // L = 12 + 8: the IPv4 New metadata, then 8 more bytes, then the data length
  const b = hex('0014 0001 01 01 01 20c4 01 7f000001 0102030405060708 0003 616263');
  const d = decodeMuxHeader(b, 0)!;
  assert.deepEqual(d.value.target, { host: '127.0.0.1', port: 8388 });
  assert.equal(d.value.dataLength, 3);
  assert.equal(b.subarray(d.bytesRead).toString(), 'abc');
});

test('encoding refuses what it cannot write', () => {
  const out = Buffer.alloc(600);
  const bad: MuxFrameHeader[] = [
    { sessionId: 1, status: MUX_STATUS.KEEP, option: 1 }, // D without a length
    { sessionId: 1, status: MUX_STATUS.KEEP, option: 0, dataLength: 3 }, // a length without D
    { sessionId: 1, status: MUX_STATUS.KEEP, option: 1, dataLength: 0x10000 },
    { sessionId: 0x10000, status: MUX_STATUS.END, option: 0 },
    { sessionId: 1, status: MUX_STATUS.NEW, option: 0 }, // New without a target
    { sessionId: 1, status: MUX_STATUS.NEW, option: 0, network: 1, target: { host: '', port: 1 } },
  ];
  for (const h of bad) assert.throws(() => encodeMuxHeader(h, out, 0), CodecError);
});

test('round trip of random headers', () => {
  const target = fc.oneof(
    fc.ipV4().map((host) => ({ host })),
    fc.domain().map((host) => ({ host })),
  );
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.constantFrom(1, 2, 3, 4),
      fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
      target,
      fc.integer({ min: 0, max: 0xffff }),
      fc.constantFrom(1, 2),
      (sessionId, status, dataLength, t, port, network) => {
        const h = {
          sessionId,
          status,
          option: dataLength === undefined ? 0 : 1,
          ...(status === 1 ? { network, target: { host: t.host, port } } : {}),
          ...(dataLength === undefined ? {} : { dataLength }),
        } as MuxFrameHeader;
        const out = Buffer.alloc(muxHeaderLength(h));
        assert.equal(encodeMuxHeader(h, out, 0), out.length);
        assert.deepEqual(decodeMuxHeader(out, 0), { value: h, bytesRead: out.length });
      },
    ),
    { numRuns: 500 },
  );
});

test('fuzz: random bytes give a header, null, or a CodecError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
      try {
        const d = decodeMuxHeader(b, 0);
        if (d) assert.ok(d.bytesRead <= b.length);
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
      }
    }),
    { numRuns: 5000 },
  );
});

test('classifyMuxStart: v2ray first frames are mux, random salts raw, short input undecided', () => {
  for (const c of vectors.cases.filter((x) => x.frame.status === 1 && x.frame.sessionId < 256))
    assert.equal(classifyMuxStart(hex(c.hex)), 'mux', c.name);
  assert.equal(classifyMuxStart(hex('000c0001')), null);
  assert.equal(classifyMuxStart(new Uint8Array(0)), null);
  assert.equal(classifyMuxStart(hex('0004000102')), 'raw', 'Keep first is not a v2ray client');
  assert.equal(classifyMuxStart(hex('ff')), 'raw');
  // 100k random 32-byte salts (a seeded sequence): none is taken for Mux.Cool.
  let x = 0x12345678;
  const salt = Buffer.alloc(32);
  let mux = 0;
  for (let i = 0; i < 100_000; i++) {
    for (let j = 0; j < 32; j++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      salt[j] = x >>> 24;
    }
    if (classifyMuxStart(salt) === 'mux') mux++;
  }
  assert.equal(mux, 0);
});

test('padding: a short flight grows to a total in [900, 1400) whatever its size; a long one by 0..255', () => {
  const lowest = () => 0;
  const highest = (n: number) => n - 1;
  for (let flight = 0; flight < 892; flight++) {
    assert.equal(flight + MUX_PAD_OVERHEAD + muxPaddingLength(flight, lowest), 900, `${flight}`);
    assert.equal(flight + MUX_PAD_OVERHEAD + muxPaddingLength(flight, highest), 1399, `${flight}`);
  }
  // 892..899: the KeepAlive's own header already reaches 900; never a negative length
  for (let flight = 892; flight < 900; flight++) {
    assert.ok(muxPaddingLength(flight, lowest) === 0);
    assert.ok(flight + MUX_PAD_OVERHEAD + muxPaddingLength(flight, highest) <= 1399);
  }
  for (const flight of [900, 1500, 65_535 + 8]) {
    assert.equal(muxPaddingLength(flight, lowest), 0);
    assert.equal(muxPaddingLength(flight, highest), 255);
  }
  for (const bad of [-1, 1.5, Number.NaN])
    assert.throws(() => muxPaddingLength(bad, lowest), CodecError);
});

test('padding: rand is asked for [0, n) and the result is used as given (no fixed total)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 70_000 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (flight, u) => {
        const asked: number[] = [];
        const pad = muxPaddingLength(flight, (n) => {
          asked.push(n);
          return Math.floor(u * n);
        });
        assert.equal(asked.length, 1);
        assert.ok(Number.isInteger(pad) && pad >= 0 && pad <= 0xffff);
        if (flight < 892) assert.equal(flight + MUX_PAD_OVERHEAD + pad, 900 + Math.floor(u * 500));
        else if (flight >= 900) assert.equal(pad, Math.floor(u * 256));
      },
    ),
    { numRuns: 2000 },
  );
});

test('padding: the KeepAlive header with data round-trips and is the overhead the length assumes', () => {
  for (const n of [0, 1, 1391]) {
    const h = muxPaddingHeader(7, n);
    const out = Buffer.alloc(muxHeaderLength(h));
    assert.equal(encodeMuxHeader(h, out, 0), MUX_PAD_OVERHEAD);
    assert.deepEqual(decodeMuxHeader(out, 0), { value: h, bytesRead: MUX_PAD_OVERHEAD });
    assert.equal(h.status, MUX_STATUS.KEEP_ALIVE);
  }
});
