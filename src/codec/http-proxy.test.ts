/**
 * HTTP proxy codec against test/vectors/http-proxy.json (RFC 9112/9110/7617 examples and grammar):
 * heads through the codec battery, routes, body framing, persistence, the chunked scanner at every
 * split, every negative case with its code, and the size bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkCodec, splits } from '../../test/helpers/codec-battery.js';
import { hasCode, type ErrorCode } from '../errors.js';
import {
  ChunkedBodyScanner,
  MAX_HEAD_BYTES,
  MAX_HEADER_FIELDS,
  decodeRequestHead,
  decodeResponseHead,
  encodeRequestHead,
  encodeResponseHead,
  forwardHeaders,
  forwardableHeaders,
  headerValue,
  parseBasicAuth,
  persists,
  requestBodyFraming,
  requestHeadLength,
  responseBodyFraming,
  responseHeadLength,
  routeRequest,
  type HttpRequestHead,
  type HttpResponseHead,
} from './http-proxy.js';

interface HeadCase<T> {
  name: string;
  source: string;
  text: string;
  canonical: boolean;
  value: T;
}
interface Vectors {
  source: string;
  requestHeads: (HeadCase<HttpRequestHead> & {
    route: unknown;
    framing?: unknown;
    basicAuth?: unknown;
  })[];
  responseHeads: (HeadCase<HttpResponseHead> & {
    method: string;
    framing: unknown;
    persists: boolean;
  })[];
  chunkedBodies: { name: string; source: string; text: string; after: string }[];
  negative: {
    name: string;
    source: string;
    kind: string;
    text: string;
    error: ErrorCode;
    message?: string;
  }[];
}

/** The repository's test/vectors/<name>: from the working directory (npm test), else from here. */
function vectorFile(name: string): string {
  const fromCwd = join(process.cwd(), 'test/vectors', name);
  if (existsSync(fromCwd)) return fromCwd;
  return fileURLToPath(new URL(`../../../test/vectors/${name}`, import.meta.url));
}

const vectors = JSON.parse(readFileSync(vectorFile('http-proxy.json'), 'utf8')) as Vectors;

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

test('vectors file names its provenance and has negative cases', () => {
  assert.match(vectors.source, /RFC 9112/);
  assert.ok(vectors.negative.length >= 20);
  for (const c of [
    ...vectors.requestHeads,
    ...vectors.responseHeads,
    ...vectors.chunkedBodies,
    ...vectors.negative,
  ])
    assert.ok(c.source, c.name);
});

for (const c of vectors.requestHeads) {
  test(`request head: ${c.name}`, () => {
    const b = bytes(c.text);
    if (c.canonical)
      checkCodec(
        { encode: encodeRequestHead, length: requestHeadLength, decode: decodeRequestHead },
        c.value,
        b,
      );
    const d = decodeRequestHead(b, 0);
    assert.ok(d);
    assert.deepEqual(d.value, c.value);
    assert.equal(d.bytesRead, b.length);
    assert.deepEqual(routeRequest(d.value), c.route);
    if (c.framing) assert.deepEqual(requestBodyFraming(d.value), c.framing);
    if (c.basicAuth)
      assert.deepEqual(
        parseBasicAuth(headerValue(d.value.headers, 'proxy-authorization')),
        c.basicAuth,
      );
    // the same result at every split, and with the next message's bytes behind it
    for (const pieces of splits(b)) assert.deepEqual(decodeIncrementally(pieces), c.value);
    const more = Buffer.concat([b, bytes('GET http://x/ HTTP/1.1\r\n')]);
    assert.equal(decodeRequestHead(more, 0)?.bytesRead, b.length);
  });
}

/** Feeds pieces one by one the way the proxy does: decode after each, null until complete. */
function decodeIncrementally(pieces: Uint8Array[]): HttpRequestHead | undefined {
  let buf = Buffer.alloc(0);
  for (const [i, p] of pieces.entries()) {
    buf = Buffer.concat([buf, p]);
    const d = decodeRequestHead(buf, 0);
    if (d) {
      assert.equal(i, pieces.length - 1, 'complete only with the last piece');
      return d.value;
    }
  }
  return undefined;
}

for (const c of vectors.responseHeads) {
  test(`response head: ${c.name}`, () => {
    const b = bytes(c.text);
    if (c.canonical)
      checkCodec(
        { encode: encodeResponseHead, length: responseHeadLength, decode: decodeResponseHead },
        c.value,
        b,
      );
    const d = decodeResponseHead(b, 0);
    assert.ok(d);
    assert.deepEqual(d.value, c.value);
    assert.deepEqual(responseBodyFraming(c.method, d.value), c.framing);
    assert.equal(persists(d.value.version, d.value.headers), c.persists);
  });
}

for (const c of vectors.chunkedBodies) {
  test(`chunked body: ${c.name}`, () => {
    const body = bytes(c.text);
    const all = Buffer.concat([body, bytes(c.after)]);
    for (const pieces of splits(all)) {
      const s = new ChunkedBodyScanner();
      let taken = 0;
      for (const p of pieces) {
        if (s.done) break;
        const n = s.scan(p, 0);
        taken += n;
        if (n < p.length) assert.ok(s.done, 'stops early only at the end of the body');
      }
      assert.ok(s.done);
      assert.equal(taken, body.length, 'consumes exactly the body');
    }
    // at an offset inside a larger buffer
    const s = new ChunkedBodyScanner();
    const padded = Buffer.concat([bytes('xxx'), all]);
    assert.equal(s.scan(padded, 3), body.length);
  });
}

for (const c of vectors.negative) {
  test(`negative: ${c.kind}: ${c.name} → ${c.error}`, () => {
    const b = bytes(c.text);
    const run = (): unknown => {
      switch (c.kind) {
        case 'requestHead':
          return decodeRequestHead(b, 0);
        case 'requestFraming':
          return requestBodyFraming(decodeRequestHead(b, 0)!.value);
        case 'route':
          return routeRequest(decodeRequestHead(b, 0)!.value);
        case 'responseHead':
          return decodeResponseHead(b, 0);
        case 'chunked':
          return new ChunkedBodyScanner().scan(b, 0);
        default:
          throw new Error(`unknown kind ${c.kind}`);
      }
    };
    assert.throws(run, (e: unknown) => {
      assert.ok(hasCode(e, c.error), `${String(e)} has code ${c.error}`);
      if (c.message) assert.match((e as Error).message, new RegExp(c.message));
      return true;
    });
  });
}

test(`bounds: a head over ${MAX_HEAD_BYTES} bytes is ERR_HTTP_TOO_LARGE, without waiting for its end`, () => {
  const start = bytes(`GET http://example.com/ HTTP/1.1\r\nX-Big: `);
  const big = Buffer.concat([start, Buffer.alloc(MAX_HEAD_BYTES, 0x61)]);
  assert.throws(
    () => decodeRequestHead(big, 0),
    (e) => hasCode(e, 'ERR_HTTP_TOO_LARGE'),
  );
  // just under the bound still decodes
  const fits = Buffer.concat([
    start,
    Buffer.alloc(MAX_HEAD_BYTES - start.length - 4, 0x61),
    bytes('\r\n\r\n'),
  ]);
  assert.equal(fits.length, MAX_HEAD_BYTES);
  assert.equal(decodeRequestHead(fits, 0)?.bytesRead, MAX_HEAD_BYTES);
  // a partial head under the bound needs more
  assert.equal(decodeRequestHead(fits.subarray(0, MAX_HEAD_BYTES - 1), 0), null);
  // the same for responses
  assert.throws(
    () => decodeResponseHead(Buffer.alloc(MAX_HEAD_BYTES + 1, 0x61), 0),
    (e) => hasCode(e, 'ERR_HTTP_TOO_LARGE'),
  );
});

test(`bounds: ${MAX_HEADER_FIELDS} fields decode, one more is ERR_HTTP_TOO_LARGE`, () => {
  const head = (n: number): Buffer =>
    bytes(
      `GET http://example.com/ HTTP/1.1\r\n${Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n`,
    );
  assert.equal(decodeRequestHead(head(MAX_HEADER_FIELDS), 0)?.value.headers.length, 100);
  assert.throws(
    () => decodeRequestHead(head(MAX_HEADER_FIELDS + 1), 0),
    (e) => hasCode(e, 'ERR_HTTP_TOO_LARGE'),
  );
});

test('bounds: an endless chunk extension or trailer is ERR_HTTP_TOO_LARGE', () => {
  assert.throws(
    () => new ChunkedBodyScanner().scan(bytes(`1;${'e'.repeat(5000)}`), 0),
    (e) => hasCode(e, 'ERR_HTTP_TOO_LARGE'),
  );
  assert.throws(
    () => new ChunkedBodyScanner().scan(bytes(`0\r\nX: ${'t'.repeat(5000)}`), 0),
    (e) => hasCode(e, 'ERR_HTTP_TOO_LARGE'),
  );
  // large chunk data is not bounded: only framing bytes are
  const s = new ChunkedBodyScanner();
  const size = 1 << 20;
  const line = bytes(`${size.toString(16)}\r\n`);
  assert.equal(s.scan(line, 0), line.length);
  assert.equal(s.scan(Buffer.alloc(size), 0), size);
  assert.equal(s.scan(bytes('\r\n0\r\n\r\n'), 0), 7);
  assert.ok(s.done);
});

test('forwarded fields: hop-by-hop and those named in Connection go, framing stays when asked', () => {
  const h: [string, string][] = [
    ['Host', 'a'],
    ['Connection', 'keep-alive, X-Secret'],
    ['Keep-Alive', 'timeout=5'],
    ['Proxy-Authorization', 'Basic eDp5'],
    ['Proxy-Connection', 'keep-alive'],
    ['X-Secret', '1'],
    ['TE', 'trailers'],
    ['Upgrade', 'websocket'],
    ['Transfer-Encoding', 'chunked'],
    ['Accept', '*/*'],
  ];
  assert.deepEqual(forwardHeaders(h, { keepFraming: true, drop: ['host'] }), [
    ['Transfer-Encoding', 'chunked'],
    ['Accept', '*/*'],
  ]);
  assert.deepEqual(forwardHeaders(h), [
    ['Host', 'a'],
    ['Accept', '*/*'],
  ]);
  assert.deepEqual(forwardableHeaders(h.flat()), forwardHeaders(h));
});

test('persistence (RFC 9112 §9.3)', () => {
  assert.equal(persists('1.1', []), true);
  assert.equal(persists('1.1', [['Connection', 'Close']]), false);
  assert.equal(persists('1.0', []), false);
  assert.equal(persists('1.0', [['connection', 'Keep-Alive']]), true);
});

test('Basic credentials (RFC 7617)', () => {
  assert.deepEqual(parseBasicAuth('Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=='), {
    username: 'Aladdin',
    password: 'open sesame',
  });
  assert.deepEqual(parseBasicAuth('basic YTpiOmM='), { username: 'a', password: 'b:c' });
  assert.equal(parseBasicAuth(undefined), null);
  assert.equal(parseBasicAuth('Bearer abc'), null);
  assert.equal(parseBasicAuth('Basic bm9jb2xvbg=='), null); // "nocolon"
  assert.equal(parseBasicAuth('Basic !!!'), null);
});
