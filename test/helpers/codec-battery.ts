/**
 * The standard checks every codec passes (STYLE.md habit 8): encode gives the vector bytes, the length
 * function equals the bytes written, it works at an offset and from a view with a non-zero
 * byteOffset, and every strict prefix decodes to null ("need more").
 */
import assert from 'node:assert/strict';

export interface Decoded<T> {
  value: T;
  bytesRead: number;
}

export interface CodecUnderTest<T> {
  encode(value: T, out: Uint8Array, offset: number): number;
  length(value: T): number;
  decode(buf: Uint8Array, offset: number): Decoded<T> | null;
}

export function checkCodec<T>(codec: CodecUnderTest<T>, value: T, expected: Uint8Array): void {
  const len = codec.length(value);
  assert.equal(len, expected.length, 'length() equals the vector length');
  const out = new Uint8Array(len);
  assert.equal(codec.encode(value, out, 0), len, 'encode returns the bytes written');
  assert.deepEqual(Buffer.from(out).toString('hex'), Buffer.from(expected).toString('hex'));

  const big = new Uint8Array(len + 17).fill(0xaa);
  assert.equal(codec.encode(value, big, 7), len);
  assert.deepEqual(Buffer.from(big.subarray(7, 7 + len)), Buffer.from(expected));
  assert.equal(big[6], 0xaa, 'encode writes nothing before offset');
  assert.equal(big[7 + len], 0xaa, 'encode writes nothing after its length');

  const d = codec.decode(expected, 0);
  assert.ok(d, 'the whole encoding decodes');
  assert.equal(d.bytesRead, len);
  assert.deepEqual(d.value, value);

  const backing = new Uint8Array(len + 9);
  backing.set(expected, 5);
  const view = backing.subarray(3);
  const dv = codec.decode(view, 2);
  assert.ok(dv, 'decodes from a view at an offset');
  assert.deepEqual(dv.value, value);
  assert.equal(dv.bytesRead, len);

  for (let i = 0; i < len; i++) {
    assert.equal(codec.decode(expected.subarray(0, i), 0), null, `prefix of ${i} bytes needs more`);
  }
}

/** Splits `data` into chunks at every boundary pattern worth testing: each single split point, and one byte at a time. */
export function* splits(data: Uint8Array): Generator<Uint8Array[]> {
  yield [data];
  for (let i = 1; i < data.length; i++) yield [data.subarray(0, i), data.subarray(i)];
  yield Array.from(data, (_b, i) => data.subarray(i, i + 1));
}
