import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CodecError } from '../errors.js';
import { dnsMessageBytes, dnsQuery, DNS_TYPE } from './dns.js';
import {
  decodeChunkedBody,
  decodeDohResponse,
  dohRequestLength,
  encodeDohRequest,
  MAX_DOH_BODY_BYTES,
} from './doh.js';
import { decodeRequestHead, requestBodyFraming } from './http1.js';

const MESSAGE = dnsMessageBytes(dnsQuery(0, 'example.lab', DNS_TYPE.A));

function response(head: string, body: Uint8Array = MESSAGE): Buffer {
  return Buffer.concat([Buffer.from(head.replaceAll('\n', '\r\n') + '\r\n', 'latin1'), body]);
}

test('DoH request: POST, the RFC 8484 fields, the message as the body, at an offset', () => {
  const n = dohRequestLength('dns.lab:8443', '/dns-query?x=1', MESSAGE);
  const out = Buffer.alloc(n + 5, 0xee);
  assert.equal(encodeDohRequest('dns.lab:8443', '/dns-query?x=1', MESSAGE, out, 5), n);
  assert.deepEqual(out.subarray(0, 5), Buffer.alloc(5, 0xee));
  const head = decodeRequestHead(out, 5)!;
  assert.equal(head.value.method, 'POST');
  assert.equal(head.value.target, '/dns-query?x=1');
  assert.deepEqual(head.value.headers, [
    ['Host', 'dns.lab:8443'],
    ['Accept', 'application/dns-message'],
    ['Content-Type', 'application/dns-message'],
    ['Content-Length', String(MESSAGE.length)],
  ]);
  assert.deepEqual(requestBodyFraming(head.value), { kind: 'length', length: MESSAGE.length });
  assert.deepEqual(out.subarray(5 + head.bytesRead), MESSAGE);
});

test('DoH response: Content-Length framing, every strict prefix is null, at an offset', () => {
  const r = response(
    `HTTP/1.1 200 OK\nContent-Type: application/dns-message; charset=x\nContent-Length: ${MESSAGE.length}\n`,
  );
  const tail = Buffer.from('HTTP/1.1 200 OK\r\n'); // the next response's start stays unread
  const buf = Buffer.concat([Buffer.from([1, 2, 3]), r, tail]);
  const d = decodeDohResponse(buf, 3, false)!;
  assert.equal(d.bytesRead, r.length);
  assert.equal(d.value.status, 200);
  assert.equal(d.value.mediaType, 'application/dns-message');
  assert.deepEqual(Buffer.from(d.value.body), MESSAGE);
  assert.equal(d.value.keepAlive, true);
  for (let i = 0; i < r.length; i++)
    assert.equal(decodeDohResponse(r.subarray(0, i), 0, false), null);
  assert.throws(() => decodeDohResponse(r.subarray(0, r.length - 1), 0, true), CodecError);
});

test('DoH response: chunked, 1xx skipped, Connection: close, read-until-close, errors', () => {
  const chunked = response(
    'HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nContent-Type: application/dns-message\nTransfer-Encoding: chunked\n',
    Buffer.concat([
      Buffer.from(`5;ext=1\r\n`),
      MESSAGE.subarray(0, 5),
      Buffer.from(`\r\n${(MESSAGE.length - 5).toString(16)}\r\n`),
      MESSAGE.subarray(5),
      Buffer.from('\r\n0\r\nX-Trailer: y\r\n\r\n'),
    ]),
  );
  const d = decodeDohResponse(chunked, 0, false)!;
  assert.equal(d.bytesRead, chunked.length);
  assert.deepEqual(Buffer.from(d.value.body), MESSAGE);
  for (let i = 0; i < chunked.length; i++)
    assert.equal(decodeDohResponse(chunked.subarray(0, i), 0, false), null, `prefix ${i}`);

  const closing = response(
    `HTTP/1.1 200 OK\nConnection: close\nContent-Type: application/dns-message\nContent-Length: ${MESSAGE.length}\n`,
  );
  assert.equal(decodeDohResponse(closing, 0, false)!.value.keepAlive, false);

  const untilClose = response('HTTP/1.1 200 OK\nContent-Type: application/dns-message\n');
  assert.equal(decodeDohResponse(untilClose, 0, false), null, 'the body ends at the close');
  const u = decodeDohResponse(untilClose, 0, true)!;
  assert.deepEqual(Buffer.from(u.value.body), MESSAGE);
  assert.equal(u.value.keepAlive, false);

  const notFound = decodeDohResponse(
    response('HTTP/1.1 404 Not Found\nContent-Length: 0\n', Buffer.alloc(0)),
    0,
    false,
  )!;
  assert.equal(notFound.value.status, 404);
  assert.equal(notFound.value.mediaType, '');

  const tooLong = response(
    `HTTP/1.1 200 OK\nContent-Length: ${MAX_DOH_BODY_BYTES + 1}\n`,
    Buffer.alloc(0),
  );
  assert.throws(() => decodeDohResponse(tooLong, 0, false), /at most 65535/);
  assert.throws(
    () =>
      decodeDohResponse(response('HTTP/1.1 101 Switching Protocols\n', Buffer.alloc(0)), 0, false),
    /101/,
  );
});

test('chunked bodies: sizes and lines bounded, framing checked', () => {
  const ok = Buffer.from('3\r\nabc\r\n0\r\n\r\n');
  assert.deepEqual(decodeChunkedBody(ok, 0, 10), {
    value: ok.subarray(3, 6),
    bytesRead: ok.length,
  });
  assert.throws(() => decodeChunkedBody(Buffer.from('b\r\n'), 0, 10), /over 10 bytes/);
  assert.throws(
    () => decodeChunkedBody(Buffer.from('fffffffffffffffffff\r\n'), 0, 10),
    /over 10 bytes/,
  );
  assert.equal(decodeChunkedBody(Buffer.from('6\r\nabc\r\n'), 0, 10), null, 'data still to come');
  assert.throws(
    () => decodeChunkedBody(Buffer.from('3\r\nabcX\r\n'), 0, 10),
    /not followed by CRLF/,
  );
  assert.throws(() => decodeChunkedBody(Buffer.from('\r\n'), 0, 10), /without a size/);
  assert.throws(() => decodeChunkedBody(Buffer.from('3x\r\n'), 0, 10), /bad character/);
  assert.throws(() => decodeChunkedBody(Buffer.from('3\nabc'), 0, 10), /bare LF/);
  assert.throws(() => decodeChunkedBody(Buffer.alloc(5000, 0x31), 0, 1e9), /too long/);
  const longTrailer = Buffer.concat([Buffer.from('0\r\n'), Buffer.from('x: y\r\n'.repeat(1000))]);
  assert.throws(() => decodeChunkedBody(longTrailer, 0, 10), /trailer section is too long/);
});
