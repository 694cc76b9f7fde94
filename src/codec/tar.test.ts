import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CodecError } from '../errors.js';
import { buildTar, findTarFile, tarEntries, ustarHeader, TAR_BLOCK_BYTES } from './tar.js';

const body = (n: number, fill: number) => Buffer.alloc(n, fill);

/** Writes a header's checksum again after a test changed a field. */
function reChecksum(h: Buffer): Buffer {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

test('finds each file of an archive by name, as a view of its exact bytes', () => {
  const files = [
    { name: 'package/package.json', body: Buffer.from('{"name":"x"}') },
    { name: 'package/bin/node', body: body(1025, 7) },
    { name: 'package/empty', body: Buffer.alloc(0) },
    { name: 'package/LICENSE', body: body(512, 9) },
  ];
  const tar = buildTar(files);
  for (const f of files) assert.deepEqual(Buffer.from(findTarFile(tar, f.name)!), f.body);
  assert.equal(findTarFile(tar, 'package/bin/node.exe'), undefined);
  assert.deepEqual(
    [...tarEntries(tar)].map((e) => e.name),
    files.map((f) => f.name),
  );
});

test('joins the ustar prefix field to the name', () => {
  const h = ustarHeader('node', 3);
  h.write('package/bin', 345, 'latin1');
  reChecksum(h);
  const tar = Buffer.concat([h, Buffer.from('abc'), Buffer.alloc(509 + 1024)]);
  assert.deepEqual(Buffer.from(findTarFile(tar, 'package/bin/node')!), Buffer.from('abc'));
});

test('skips directories and extension headers by their size', () => {
  const dir = ustarHeader('package/', 0);
  dir[156] = 0x35; // '5': a directory
  const pax = ustarHeader('PaxHeader', 20);
  pax[156] = 0x78; // 'x'
  for (const h of [dir, pax]) reChecksum(h);
  const rest = buildTar([{ name: 'package/bin/node', body: Buffer.from('bin') }]);
  const tar = Buffer.concat([dir, pax, body(20, 0x41), Buffer.alloc(492), rest]);
  assert.deepEqual(
    [...tarEntries(tar)].map((e) => e.name),
    ['package/bin/node'],
  );
});

test('refuses a damaged header, a size past the end and a non-octal size', () => {
  const tar = buildTar([{ name: 'package/bin/node', body: body(600, 1) }]);
  const flipped = Buffer.from(tar);
  flipped[10] = flipped[10]! ^ 1;
  assert.throws(() => findTarFile(flipped, 'package/bin/node'), CodecError);
  assert.throws(() => findTarFile(flipped, 'x'), /wrong checksum/);
  const cut = tar.subarray(0, TAR_BLOCK_BYTES + 100);
  assert.throws(() => findTarFile(cut, 'package/bin/node'), /past the end/);
  const h = ustarHeader('a', 1);
  h.write('9', 124, 'latin1');
  reChecksum(h);
  assert.throws(() => [...tarEntries(Buffer.concat([h, Buffer.alloc(512)]))], /not an octal/);
});

test('an empty or short input holds no file', () => {
  assert.equal(findTarFile(Buffer.alloc(0), 'a'), undefined);
  assert.equal(findTarFile(Buffer.alloc(511, 1), 'a'), undefined);
  assert.equal(findTarFile(Buffer.alloc(1024), 'a'), undefined);
});
