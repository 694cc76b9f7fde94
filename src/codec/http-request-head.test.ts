import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseRequestHead, NGINX_HEAD_LIMITS } from './http-request-head.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

test('a complete request: method, target, version, headers in order, bytes read', () => {
  const r = parseRequestHead(b('\r\nGET /a?b HTTP/1.1\r\nHost: x \r\nX-A:  1\r\n\r\nNEXT'));
  assert.equal(r.kind, 'request');
  if (r.kind !== 'request') return;
  assert.equal(r.head.method, 'GET');
  assert.equal(r.head.uri, '/a?b');
  assert.equal(r.head.version, 1001);
  assert.deepEqual(r.head.headers, [
    ['Host', 'x'],
    ['X-A', '1'],
  ]);
  assert.equal(r.head.bytesRead, 'GET /a?b HTTP/1.1\r\nHost: x \r\nX-A:  1\r\n\r\n'.length + 2);
});

test('absolute-form targets give the host and a path', () => {
  const r = parseRequestHead(b('GET http://Ex.org:81?q HTTP/1.0\r\n\r\n'));
  assert.equal(r.kind, 'request');
  if (r.kind !== 'request') return;
  assert.equal(r.head.uriHost, 'Ex.org');
  assert.equal(r.head.uri, '/?q');
  assert.equal(r.head.version, 1000);
});

test('HTTP/0.9: no version, no headers', () => {
  const r = parseRequestHead(b('GET /x\r\n'));
  assert.equal(r.kind, 'request');
  if (r.kind === 'request') assert.equal(r.head.version, 9);
});

test('refusals carry nginx statuses', () => {
  const cases: [string, number][] = [
    ['get / HTTP/1.1\r\n', 400],
    ['\x16\x03\x01', 400],
    ['GET * HTTP/1.1\r\n', 400],
    ['GET / HTTP/2.0\r\n', 505],
    ['GET / HTTP/1.1000\r\n', 400],
    ['GET / HTTP/1.1\r\nX Y: 1\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\n x\r\n\r\n', 400],
    [`GET /${'a'.repeat(9000)}`, 414],
    [`GET / HTTP/1.1\r\nX: ${'a'.repeat(9000)}`, 494],
  ];
  for (const [text, status] of cases) {
    const r = parseRequestHead(b(text));
    assert.equal(r.kind, 'error', JSON.stringify(text));
    if (r.kind === 'error') assert.equal(r.status, status, JSON.stringify(text));
  }
});

test('every strict prefix of a valid head needs more bytes', () => {
  const head = b('POST http://a/b HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n');
  for (let i = 0; i < head.length; i++)
    assert.equal(parseRequestHead(head.subarray(0, i)).kind, 'more', `prefix ${i}`);
  assert.equal(parseRequestHead(head).kind, 'request');
});

test('fuzz: random bytes give a result, never an exception, and never "more" past the buffers', () => {
  const max =
    NGINX_HEAD_LIMITS.headerBufferBytes +
    NGINX_HEAD_LIMITS.largeBuffers * NGINX_HEAD_LIMITS.largeBufferBytes;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
      const r = parseRequestHead(bytes);
      assert.ok(['more', 'error', 'request'].includes(r.kind));
      if (r.kind === 'request') assert.ok(r.head.bytesRead <= bytes.length);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(
      fc.constantFrom('GET / HTTP/1.1\r\n', 'GET /', 'GET / HTTP/1.1\r\nX: '),
      fc.integer({ min: max, max: max + 3000 }),
      (start, n) => {
        const bytes = Buffer.concat([b(start), Buffer.alloc(n, 0x61)]);
        assert.equal(parseRequestHead(bytes).kind, 'error');
      },
    ),
    { numRuns: 50 },
  );
});

test('fuzz: request-like text never throws', () => {
  const piece = fc.constantFrom(
    'GET',
    ' ',
    '/',
    'HTTP/1.1',
    '\r\n',
    '\n',
    '\r',
    ':',
    'Host',
    'a',
    '%',
    '\0',
    '\t',
    'http://',
    '[',
    ']',
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), (parts) => {
      const r = parseRequestHead(b(parts.join('')));
      assert.ok(['more', 'error', 'request'].includes(r.kind));
    }),
    { numRuns: 3000 },
  );
});
