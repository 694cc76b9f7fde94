/**
 * Fuzzing the tar reader (src/codec/tar.ts) that reads Node's binary out of an npm tarball:
 * random bytes, and valid archives with random bytes changed, cut or appended, give entries or a
 * CodecError, never another exception or a hang, and never a body outside the input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CodecError } from '../../src/errors.js';
import { buildTar, tarEntries } from '../../src/codec/tar.js';

function walk(tar: Uint8Array): void {
  try {
    let steps = 0;
    for (const e of tarEntries(tar)) {
      steps++;
      assert.ok(e.body.byteOffset >= tar.byteOffset);
      assert.ok(e.body.byteOffset + e.body.length <= tar.byteOffset + tar.length);
      assert.ok(steps <= tar.length / 512);
    }
  } catch (err) {
    if (!(err instanceof CodecError)) throw err;
  }
}

test('random bytes: entries or a CodecError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => walk(bytes)),
    { numRuns: 2000 },
  );
});

const archive = fc
  .array(
    fc.record({
      name: fc.string({ minLength: 1, maxLength: 99 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'a')),
      body: fc.uint8Array({ maxLength: 1500 }),
    }),
    { minLength: 1, maxLength: 4 },
  )
  .map((files) => buildTar(files));

test('valid archives with bytes changed, cut or added: entries or a CodecError', () => {
  fc.assert(
    fc.property(
      archive,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 1024 }),
      (tar, flips, cut, extra) => {
        const t = Buffer.from(tar);
        for (const [at, v] of flips) t[at % t.length] = v;
        walk(t);
        walk(t.subarray(0, cut % (t.length + 1)));
        walk(Buffer.concat([t, extra]));
      },
    ),
    { numRuns: 500 },
  );
});

test('a valid archive round-trips through the reader', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 1500 }), { minLength: 1, maxLength: 4 }),
      (bodies) => {
        const files = bodies.map((body, i) => ({ name: `package/f${i}`, body }));
        const got = [...tarEntries(buildTar(files))];
        assert.deepEqual(
          got.map((e) => [e.name, Buffer.from(e.body)]),
          files.map((f) => [f.name, Buffer.from(f.body)]),
        );
      },
    ),
    { numRuns: 300 },
  );
});
