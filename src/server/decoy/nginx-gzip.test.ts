import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import {
  GZIP_BUFFER_BYTES,
  NginxGzipBody,
  acceptsGzip,
  gzipApplies,
  gzipParameters,
  systemZlibVersion,
} from './nginx-gzip.js';

test("Accept-Encoding as ngx_http_gzip_accept_encoding reads it (nginx 1.22's vectors)", () => {
  const yes = [
    'gzip',
    'gzip, deflate, br',
    'gzip,deflate',
    'deflate, gzip',
    'deflate,gzip',
    'GZIP',
    'Gzip;q=1',
    'gzip;q=0.5',
    'gzip; q=0.001',
    'gzip;q=1.000',
    'gzip ;',
    'br, gzip ',
    'gzip;',
    // nginx adds the digits of a q-value as they are: 0.5, 0.05 and 0.005 all count as 5
    'gzip;q=0.005',
  ];
  const no = [
    undefined,
    '',
    'gzi',
    'br',
    'x-gzip',
    'gzipx',
    'deflate;gzip',
    'gzip;q=0',
    'gzip;q=0.000',
    'gzip;q=2',
    'gzip;q=1.5',
    'gzip;q=0.0001',
    'gzip;x=1',
    'gzip;q',
    'gzip;q=',
    'gzip/1',
  ];
  for (const ae of yes) assert.equal(acceptsGzip(ae), true, String(ae));
  for (const ae of no) assert.equal(acceptsGzip(ae), false, String(ae));
});

test('which answers nginx compresses: 200/403/404, text/html, >= 20 bytes, HTTP/1.1, no Via', () => {
  const req = { version: 1001, acceptEncoding: 'gzip', via: false };
  assert.equal(gzipApplies(req, 200, 'text/html', 20), true);
  assert.equal(gzipApplies(req, 404, 'text/html', 153), true);
  assert.equal(gzipApplies(req, 403, 'text/html', 153), true);
  assert.equal(gzipApplies(req, 405, 'text/html', 157), false);
  assert.equal(gzipApplies(req, 301, 'text/html', 169), false);
  assert.equal(gzipApplies(req, 200, 'text/html', 19), false);
  assert.equal(gzipApplies(req, 200, 'text/plain', 500), false);
  assert.equal(gzipApplies({ ...req, version: 1000 }, 200, 'text/html', 500), false);
  assert.equal(gzipApplies({ ...req, via: true }, 200, 'text/html', 500), false);
  assert.equal(gzipApplies({ ...req, acceptEncoding: undefined }, 200, 'text/html', 500), false);
});

test('window bits and memory level shrink together with the length, as nginx shrinks them', () => {
  assert.deepEqual(gzipParameters(0), { windowBits: 15, memLevel: 8 });
  assert.deepEqual(gzipParameters(1_000_000), { windowBits: 15, memLevel: 8 });
  assert.deepEqual(gzipParameters(16_122), { windowBits: 15, memLevel: 8 });
  assert.deepEqual(gzipParameters(16_121), { windowBits: 14, memLevel: 7 });
  assert.deepEqual(gzipParameters(627), { windowBits: 10, memLevel: 3 });
  assert.deepEqual(gzipParameters(153), { windowBits: 9, memLevel: 2 });
  assert.deepEqual(gzipParameters(20), { windowBits: 9, memLevel: 2 });
});

test('the body leaves in whole 4 KiB buffers after each block, the rest with the end', async () => {
  const text = Buffer.from(
    Array.from({ length: 30_000 }, (_, i) => `<p>${i} ${(i * 7919) % 104729}</p>`).join('\n'),
  );
  const gz = new NginxGzipBody(text.length);
  const pieces: Buffer[] = [];
  for (let i = 0; i < text.length; i += 32 * 1024)
    pieces.push(await gz.push(text.subarray(i, i + 32 * 1024)));
  pieces.push(await gz.finish());
  for (const p of pieces.slice(0, -1)) assert.equal(p.length % GZIP_BUFFER_BYTES, 0);
  const all = Buffer.concat(pieces);
  assert.deepEqual(gunzipSync(all), text);
  // zlib's own gzip header for level 1 on Unix: no name, no time, XFL 4, OS 3 (as nginx's)
  assert.deepEqual([...all.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3]);
});

test('the addon compresses with the system zlib (the library nginx links)', () => {
  const v = systemZlibVersion();
  assert.ok(v, 'native/gzip is not built or libz.so.1 is missing: `npm ci` builds it');
  assert.match(v, /^1\.\d+\.\d+/);
});
