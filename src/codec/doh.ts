/**
 * DNS over HTTPS (RFC 8484) as Ladder's client speaks it: one POST of an `application/dns-message`
 * body over HTTP/1.1 with keep-alive, and the answer it reads back. Pure: no I/O. The message heads
 * are http1.ts's; this module adds the request's fields and decodes the response's body, which a
 * DNS answer needs whole (http1.ts only says where a body ends).
 *
 * ```text
 * request   POST <path> HTTP/1.1 CRLF                                          RFC 8484 §4.1
 *           Host: <authority> CRLF
 *           Accept: application/dns-message CRLF
 *           Content-Type: application/dns-message CRLF
 *           Content-Length: <n> CRLF  CRLF  <DNS message, n bytes>
 * response  HTTP/1.1 200 ... CRLF  Content-Type: application/dns-message CRLF ... CRLF
 *           <DNS message>   framed by Content-Length, chunked, or the end of the connection
 * chunked   *( hex-size [; ext] CRLF data CRLF ) 0 CRLF *(trailer CRLF) CRLF   RFC 9112 §7.1
 * ```
 *
 * Bounded: a head of at most http1.ts's MAX_HEAD_BYTES, a body of at most {@link MAX_DOH_BODY_BYTES}
 * (the largest DNS message), chunk-size and trailer lines of at most MAX_CHUNK_LINE_BYTES. 1xx
 * interim heads are skipped. Over a bound, or malformed framing, is a CodecError; `null` means more
 * bytes are needed.
 * @module
 */
import { CodecError } from '../errors.js';
import {
  decodeResponseHead,
  encodeRequestHead,
  headerValue,
  MAX_CHUNK_LINE_BYTES,
  persists,
  requestHeadLength,
  responseBodyFraming,
  type HttpRequestHead,
} from './http1.js';
import type { Decoded } from './socks-addr.js';

/** RFC 8484 §6: the media type of a DNS message in wire format. */
export const DOH_MEDIA_TYPE = 'application/dns-message';
/** The largest DNS message (a 16-bit length frames it over TCP; RFC 8484 §6 bodies are the same). */
export const MAX_DOH_BODY_BYTES = 0xffff;
/** Interim (1xx) heads skipped before the final one; more is a misbehaving server. */
const MAX_INTERIM_HEADS = 4;

/** A decoded DoH answer. */
export interface DohResponse {
  readonly status: number;
  /** The Content-Type's media type, lower case, parameters dropped ('' when absent). */
  readonly mediaType: string;
  /** The body: the DNS message when status is 200 and mediaType is {@link DOH_MEDIA_TYPE}. */
  readonly body: Uint8Array;
  /** Whether the connection may carry the next request (RFC 9112 §9.3, and a framed body). */
  readonly keepAlive: boolean;
}

function tooLarge(what: string): CodecError {
  return new CodecError('ERR_HTTP_TOO_LARGE', what);
}

function parseError(what: string): CodecError {
  return new CodecError('ERR_HTTP_PARSE', what);
}

/** The request head for a DNS message of `bodyLength` bytes to `authority` (`host[:port]`). */
export function dohRequestHead(
  authority: string,
  path: string,
  bodyLength: number,
): HttpRequestHead {
  return {
    method: 'POST',
    target: path,
    version: '1.1',
    headers: [
      ['Host', authority],
      ['Accept', DOH_MEDIA_TYPE],
      ['Content-Type', DOH_MEDIA_TYPE],
      ['Content-Length', String(bodyLength)],
    ],
  };
}

/** Bytes of the whole request (head and body) for `message`. */
export function dohRequestLength(authority: string, path: string, message: Uint8Array): number {
  return requestHeadLength(dohRequestHead(authority, path, message.length)) + message.length;
}

/** Writes the whole request for `message` at `offset`; returns the bytes written. */
export function encodeDohRequest(
  authority: string,
  path: string,
  message: Uint8Array,
  out: Uint8Array,
  offset: number,
): number {
  const n = encodeRequestHead(dohRequestHead(authority, path, message.length), out, offset);
  out.set(message, offset + n);
  return n + message.length;
}

/**
 * Decodes one response at `offset`. `ended`: the connection has closed, so a body framed by the end
 * of the connection is complete (and one framed otherwise that is cut short is an error).
 */
export function decodeDohResponse(
  buf: Uint8Array,
  offset: number,
  ended: boolean,
): Decoded<DohResponse> | null {
  let p = offset;
  for (let interim = 0; ; interim++) {
    const head = decodeResponseHead(buf, p);
    if (head === null) {
      if (ended) throw parseError('the connection closed inside a response head');
      return null;
    }
    p += head.bytesRead;
    const h = head.value;
    // RFC 9110 §15.2: a client must accept 1xx answers before the final one, and skip them.
    if (h.status >= 100 && h.status < 200) {
      if (h.status === 101) throw parseError('101 Switching Protocols to a DoH request');
      if (interim >= MAX_INTERIM_HEADS) throw parseError('too many 1xx interim responses');
      continue;
    }
    const mediaType = (headerValue(h.headers, 'content-type') ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase();
    const framing = responseBodyFraming('POST', h);
    let body: Decoded<Uint8Array> | null;
    let framed = true;
    switch (framing.kind) {
      case 'none':
        body = { value: new Uint8Array(0), bytesRead: 0 };
        break;
      case 'length':
        if (framing.length > MAX_DOH_BODY_BYTES)
          throw tooLarge(
            `a DoH answer of ${framing.length} bytes (a DNS message is at most 65535)`,
          );
        body =
          buf.length - p >= framing.length
            ? { value: buf.subarray(p, p + framing.length), bytesRead: framing.length }
            : null;
        break;
      case 'chunked':
        body = decodeChunkedBody(buf, p, MAX_DOH_BODY_BYTES);
        break;
      case 'close':
        framed = false;
        if (buf.length - p > MAX_DOH_BODY_BYTES)
          throw tooLarge('a DoH answer over 65535 bytes (a DNS message is at most that)');
        body = ended ? { value: buf.subarray(p), bytesRead: buf.length - p } : null;
        break;
    }
    if (body === null) {
      if (ended) throw parseError('the connection closed inside a response body');
      return null;
    }
    return {
      value: {
        status: h.status,
        mediaType,
        body: body.value,
        keepAlive: framed && persists(h.version, h.headers),
      },
      bytesRead: p + body.bytesRead - offset,
    };
  }
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** The index of the CRLF ending the line at `p`, -1 if not here yet; bounded, bare LF refused. */
function lineEnd(buf: Uint8Array, p: number): number {
  const limit = Math.min(buf.length, p + MAX_CHUNK_LINE_BYTES);
  for (let i = p; i < limit; i++) {
    const c = buf[i];
    if (c === 0x0a) throw parseError('a chunked-body line ends in a bare LF');
    if (c !== 0x0d) continue;
    if (i + 1 >= buf.length) return -1;
    if (buf[i + 1] !== 0x0a) throw parseError('a bare CR in a chunked body');
    return i;
  }
  if (buf.length - p >= MAX_CHUNK_LINE_BYTES)
    throw tooLarge('a chunk-size or trailer line is too long');
  return -1;
}

/**
 * Decodes a whole chunked body (RFC 9112 §7.1) at `offset` into its data, at most `maxBytes` of
 * it; null until the final CRLF has arrived. A body of one chunk is a view into `buf`; more chunks
 * are copied into one buffer.
 */
export function decodeChunkedBody(
  buf: Uint8Array,
  offset: number,
  maxBytes: number,
): Decoded<Uint8Array> | null {
  const pieces: Uint8Array[] = [];
  let total = 0;
  let p = offset;
  for (;;) {
    const end = lineEnd(buf, p);
    if (end < 0) return null;
    let size = 0;
    let i = p;
    for (; i < end; i++) {
      const h = hexDigit(buf[i]!);
      if (h < 0) break;
      size = size * 16 + h;
      if (size > maxBytes) throw tooLarge(`a chunked DoH answer over ${maxBytes} bytes`);
    }
    if (i === p) throw parseError('a chunk without a size');
    // what follows the size is an extension (`;name=value`), whitespace first allowed, or nothing
    if (i < end && buf[i] !== 0x3b && buf[i] !== 0x20 && buf[i] !== 0x09)
      throw parseError('a bad character after a chunk size');
    p = end + 2;
    if (size === 0) break;
    if (total + size > maxBytes) throw tooLarge(`a chunked DoH answer over ${maxBytes} bytes`);
    if (buf.length - p < size + 2) return null;
    if (buf[p + size] !== 0x0d || buf[p + size + 1] !== 0x0a)
      throw parseError('chunk data not followed by CRLF');
    pieces.push(buf.subarray(p, p + size));
    total += size;
    p += size + 2;
  }
  // the trailer section: lines until an empty one, bounded together
  const trailerStart = p;
  for (;;) {
    const end = lineEnd(buf, p);
    if (end < 0) return null;
    const empty = end === p;
    p = end + 2;
    if (empty) break;
    if (p - trailerStart > MAX_CHUNK_LINE_BYTES)
      throw tooLarge('the chunked trailer section is too long');
  }
  const value = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, total);
  return { value, bytesRead: p - offset };
}
