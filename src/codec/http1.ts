/**
 * HTTP/1.1 messages, pure (no I/O, no state except the chunked scanner's position): message heads
 * and where each body ends. Bodies themselves are never parsed or copied: a proxy or a front
 * forwards their bytes as they are (chunked stays chunked), and this module only says how many
 * bytes belong to them. What a proxy does with a request (where it goes, what it may forward) is
 * http-proxy.ts.
 *
 * ```
 * request head:   method SP request-target SP HTTP/1.x CRLF        RFC 9112 §3
 *                 *( field-name ":" OWS field-value OWS CRLF )     RFC 9112 §5
 *                 CRLF
 * response head:  HTTP/1.x SP 3DIGIT SP [reason] CRLF  fields  CRLF  RFC 9112 §4
 * chunked body:   *( hex-size [; ext] CRLF data CRLF ) 0 CRLF *(trailer CRLF) CRLF   RFC 9112 §7.1
 * ```
 * Heads are bounded: {@link MAX_HEAD_BYTES} bytes and {@link MAX_HEADER_FIELDS} fields, over that
 * ERR_HTTP_TOO_LARGE. Lines end in CRLF only (RFC 9112 §2.2 lets a recipient accept a bare LF; we do
 * not, so that every hop agrees on where a message ends). Heads are decoded as latin1, so every byte
 * of a field value (obs-text included) survives the round trip unchanged.
 * @module
 */
import { CodecError } from '../errors.js';
import type { Decoded } from './socks-addr.js';

/** Largest request or response head, request line and CRLFs included. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Most header fields in one head. */
export const MAX_HEADER_FIELDS = 100;
/** Longest chunk-size line (size, extensions, CRLF) and trailer section in a chunked body. */
export const MAX_CHUNK_LINE_BYTES = 4 * 1024;

export type HttpVersion = '1.0' | '1.1';
/** Header fields in their order, names as sent. */
export type HeaderFields = readonly (readonly [name: string, value: string])[];

export interface HttpRequestHead {
  readonly method: string;
  /** The request-target exactly as sent. */
  readonly target: string;
  readonly version: HttpVersion;
  readonly headers: HeaderFields;
}

export interface HttpResponseHead {
  readonly version: HttpVersion;
  readonly status: number;
  readonly reason: string;
  readonly headers: HeaderFields;
}

const CR = 0x0d;
const LF = 0x0a;

/** RFC 9110 §5.6.2 tchar. */
const TCHAR = (() => {
  const t = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~") t[c.charCodeAt(0)] = 1;
  for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  return t;
})();

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** RFC 9112 §3.2: a request-target has no whitespace, and no controls (CTL, RFC 5234 B.1). */
function hasControlOrSpace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

export function parseError(message: string): CodecError {
  return new CodecError('ERR_HTTP_PARSE', message);
}

/**
 * Splits a head at `offset` into its lines (without CRLF). Returns null when the empty line that
 * ends the head has not arrived yet; throws ERR_HTTP_TOO_LARGE when it cannot arrive within
 * MAX_HEAD_BYTES or the head has over MAX_HEADER_FIELDS fields, ERR_HTTP_PARSE on a bare CR or LF.
 */
function splitHead(
  buf: Uint8Array,
  offset: number,
  skipLeadingEmptyLines: boolean,
): { lines: string[]; bytesRead: number } | null {
  let p = offset;
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before the request-line.
  if (skipLeadingEmptyLines) {
    while (p + 1 < buf.length && buf[p] === CR && buf[p + 1] === LF) p += 2;
    if (p < buf.length && buf[p] === CR && p + 1 === buf.length) return null;
  }
  const limit = Math.min(buf.length, offset + MAX_HEAD_BYTES);
  const lines: string[] = [];
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  let lineStart = p;
  for (; p < limit; p++) {
    const c = buf[p]!;
    if (c === LF) throw parseError('a line ends in a bare LF (CRLF expected)');
    if (c !== CR) continue;
    if (p + 1 >= buf.length) return null; // the LF may still come
    if (buf[p + 1] !== LF) throw parseError('a bare CR inside the head');
    if (p === lineStart) {
      if (lines.length === 0) throw parseError('the head is empty');
      return { lines, bytesRead: p + 2 - offset };
    }
    // the request or status line, then at most MAX_HEADER_FIELDS fields
    if (lines.length > MAX_HEADER_FIELDS)
      throw new CodecError('ERR_HTTP_TOO_LARGE', `over ${MAX_HEADER_FIELDS} header fields`);
    lines.push(text.toString('latin1', lineStart, p));
    p++; // skip the LF
    lineStart = p + 1;
  }
  if (buf.length - offset >= MAX_HEAD_BYTES)
    throw new CodecError('ERR_HTTP_TOO_LARGE', `the head is over ${MAX_HEAD_BYTES} bytes`);
  return null;
}

/** RFC 9112 §5: `name: value`, OWS trimmed; obs-fold and whitespace before the colon rejected. */
function parseFields(lines: string[]): [string, string][] {
  if (lines.length - 1 > MAX_HEADER_FIELDS)
    throw new CodecError('ERR_HTTP_TOO_LARGE', `over ${MAX_HEADER_FIELDS} header fields`);
  const out: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    // RFC 9112 §5.2: a server may reject obs-fold with 400; a proxy that unfolded would change bytes.
    if (line.charCodeAt(0) === 0x20 || line.charCodeAt(0) === 0x09)
      throw parseError('obsolete line folding in a header field');
    const colon = line.indexOf(':');
    if (colon < 0) throw parseError(`a header line without a colon`);
    const name = line.slice(0, colon);
    // RFC 9112 §5.1: no whitespace between field name and colon; a server MUST reject it (400).
    if (!isToken(name)) throw parseError(`'${name.slice(0, 40)}' is not a field name`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    // RFC 9110 §5.5: field values are VCHAR, obs-text, SP and HTAB; NUL and other controls are not.
    for (let j = 0; j < value.length; j++) {
      const c = value.charCodeAt(j);
      if ((c < 0x20 && c !== 0x09) || c === 0x7f)
        throw parseError(`a control character in the value of ${name}`);
    }
    out.push([name, value]);
  }
  return out;
}

function parseVersion(s: string): HttpVersion {
  if (s === 'HTTP/1.1') return '1.1';
  if (s === 'HTTP/1.0') return '1.0';
  throw parseError(`'${s.slice(0, 20)}' is not HTTP/1.0 or HTTP/1.1`);
}

/** Decodes a request head (request line and fields) at `offset`. */
export function decodeRequestHead(
  buf: Uint8Array,
  offset: number,
): Decoded<HttpRequestHead> | null {
  const split = splitHead(buf, offset, true);
  if (split === null) return null;
  const line = split.lines[0]!;
  // RFC 9112 §3: method SP request-target SP HTTP-version, single spaces.
  const sp1 = line.indexOf(' ');
  const sp2 = line.lastIndexOf(' ');
  if (sp1 <= 0 || sp2 === sp1) throw parseError('the request line is not "METHOD target HTTP/1.1"');
  const method = line.slice(0, sp1);
  const target = line.slice(sp1 + 1, sp2);
  if (!isToken(method)) throw parseError(`'${method.slice(0, 20)}' is not a method`);
  if (target.length === 0 || hasControlOrSpace(target))
    throw parseError('the request-target is empty or has whitespace or controls');
  const version = parseVersion(line.slice(sp2 + 1));
  return {
    value: { method, target, version, headers: parseFields(split.lines) },
    bytesRead: split.bytesRead,
  };
}

/** Decodes a response head (status line and fields) at `offset`. */
export function decodeResponseHead(
  buf: Uint8Array,
  offset: number,
): Decoded<HttpResponseHead> | null {
  const split = splitHead(buf, offset, false);
  if (split === null) return null;
  const line = split.lines[0]!;
  // RFC 9112 §4: HTTP-version SP 3DIGIT SP [reason-phrase]; some servers omit the second space.
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(line);
  if (!m) throw parseError('the status line is not "HTTP/1.1 200 OK"');
  return {
    value: {
      version: parseVersion(m[1]!),
      status: Number(m[2]),
      reason: m[3] ?? '',
      headers: parseFields(split.lines),
    },
    bytesRead: split.bytesRead,
  };
}

function fieldsLength(headers: HeaderFields): number {
  let n = 2; // the final CRLF
  for (const [k, v] of headers) n += k.length + 2 + v.length + 2; // name ": " value CRLF
  return n;
}

function encodeFields(headers: HeaderFields, out: Uint8Array, offset: number): number {
  const b = Buffer.from(out.buffer, out.byteOffset, out.length);
  let p = offset;
  for (const [k, v] of headers) {
    p += b.write(k, p, 'latin1');
    b[p++] = 0x3a; // ':'
    b[p++] = 0x20;
    p += b.write(v, p, 'latin1');
    b[p++] = CR;
    b[p++] = LF;
  }
  b[p++] = CR;
  b[p++] = LF;
  return p - offset;
}

export function requestHeadLength(head: HttpRequestHead): number {
  // method SP target SP HTTP/1.x CRLF, then the fields
  return head.method.length + 1 + head.target.length + 1 + 8 + 2 + fieldsLength(head.headers);
}

export function encodeRequestHead(head: HttpRequestHead, out: Uint8Array, offset: number): number {
  const b = Buffer.from(out.buffer, out.byteOffset, out.length);
  let p = offset;
  p += b.write(`${head.method} ${head.target} HTTP/${head.version}\r\n`, p, 'latin1');
  return p - offset + encodeFields(head.headers, out, p);
}

export function responseHeadLength(head: HttpResponseHead): number {
  // HTTP/1.x SP 3DIGIT SP reason CRLF, then the fields
  return 8 + 1 + 3 + 1 + head.reason.length + 2 + fieldsLength(head.headers);
}

export function encodeResponseHead(
  head: HttpResponseHead,
  out: Uint8Array,
  offset: number,
): number {
  const b = Buffer.from(out.buffer, out.byteOffset, out.length);
  let p = offset;
  const status = String(head.status).padStart(3, '0');
  p += b.write(`HTTP/${head.version} ${status} ${head.reason}\r\n`, p, 'latin1');
  return p - offset + encodeFields(head.headers, out, p);
}

/** The first value of a field (case-insensitive name), or undefined. */
export function headerValue(headers: HeaderFields, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of headers) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/** All comma-separated elements of every occurrence of a field, trimmed and lower case. */
function listValues(headers: HeaderFields, name: string): string[] {
  const out: string[] = [];
  const lower = name.toLowerCase();
  for (const [k, v] of headers)
    if (k.toLowerCase() === lower)
      for (const t of v.split(',')) {
        const s = t.trim().toLowerCase();
        if (s) out.push(s);
      }
  return out;
}

/**
 * RFC 9112 §9.3: does the connection persist after this message? HTTP/1.1 unless `close`;
 * HTTP/1.0 only with `keep-alive`.
 */
export function persists(version: HttpVersion, headers: HeaderFields): boolean {
  const tokens = listValues(headers, 'connection');
  if (tokens.includes('close')) return false;
  return version === '1.1' || tokens.includes('keep-alive');
}

// ---------------------------------------------------------------------------------------------
// Where a body ends (RFC 9112 §6)

export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** read until the sender closes (responses only) */
  | { readonly kind: 'close' };

const NO_BODY: BodyFraming = { kind: 'none' };

/** RFC 9110 §8.6: one Content-Length, or a list of identical ones. */
function contentLength(headers: HeaderFields): number | undefined {
  const values = listValues(headers, 'content-length');
  if (values.length === 0) return undefined;
  const first = values[0]!;
  if (!/^\d{1,15}$/.test(first)) throw parseError(`Content-Length '${first.slice(0, 20)}'`);
  for (const v of values)
    if (v !== first) throw parseError('several Content-Length fields that disagree');
  return Number(first);
}

/** RFC 9112 §6.3 rules 3-6 for a request. */
export function requestBodyFraming(head: HttpRequestHead): BodyFraming {
  const te = listValues(head.headers, 'transfer-encoding');
  const cl = contentLength(head.headers);
  if (te.length > 0) {
    // RFC 9112 §6.1: a sender MUST NOT send Content-Length with Transfer-Encoding; both together
    // is how requests are smuggled past a proxy, so refuse instead of choosing one.
    if (cl !== undefined) throw parseError('both Transfer-Encoding and Content-Length');
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    if (head.version === '1.0') throw parseError('Transfer-Encoding in an HTTP/1.0 request');
    // RFC 9112 §6.3 rule 4: chunked must be the final coding of a request, else 400.
    if (te[te.length - 1] !== 'chunked') throw parseError('a Transfer-Encoding other than chunked');
    return { kind: 'chunked' };
  }
  if (cl === undefined || cl === 0) return NO_BODY; // RFC 9112 §6.3 rule 7
  return { kind: 'length', length: cl };
}

/** RFC 9112 §6.3 rules 1-7 for a response to a request with `method`. */
export function responseBodyFraming(method: string, head: HttpResponseHead): BodyFraming {
  // Rule 1: HEAD, 1xx, 204 and 304 have no body whatever the fields say.
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304)
    return NO_BODY;
  const te = listValues(head.headers, 'transfer-encoding');
  // Rule 3: Transfer-Encoding overrides Content-Length; without a final chunked, read until close.
  if (te.length > 0)
    return te[te.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  const cl = contentLength(head.headers);
  if (cl === undefined) return { kind: 'close' }; // rule 7
  return cl === 0 ? NO_BODY : { kind: 'length', length: cl };
}

/** The scanner's states: where in RFC 9112 §7.1's grammar the next byte falls. */
const Chunk = {
  Size: 0,
  Ext: 1,
  SizeLf: 2,
  Data: 3,
  DataCr: 4,
  DataLf: 5,
  TrailerStart: 6,
  Trailer: 7,
  TrailerLf: 8,
  FinalLf: 9,
  Done: 10,
} as const;
type ChunkState = (typeof Chunk)[keyof typeof Chunk];

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/**
 * Finds where a chunked body (RFC 9112 §7.1) ends without decoding it: feed it the bytes as they
 * come, it says how many of them belong to the body. State is a handful of numbers; no bytes are
 * kept. Chunk-size lines and trailer lines are bounded by MAX_CHUNK_LINE_BYTES.
 */
export class ChunkedBodyScanner {
  #state: ChunkState = Chunk.Size;
  #size = 0;
  #digits = 0;
  #left = 0;
  #lineBytes = 0;
  #trailerBytes = 0;

  /** True once the last chunk and the trailer section have been seen. */
  get done(): boolean {
    return this.#state === Chunk.Done;
  }

  /**
   * Consumes bytes of `buf` from `offset` up to the end of the body; returns how many it took (all
   * of them unless the body ended inside `buf`). Throws CodecError on malformed framing.
   */
  scan(buf: Uint8Array, offset: number): number {
    let p = offset;
    const end = buf.length;
    while (p < end && this.#state !== Chunk.Done) {
      switch (this.#state) {
        case Chunk.Data: {
          const n = Math.min(this.#left, end - p);
          p += n;
          this.#left -= n;
          if (this.#left === 0) this.#state = Chunk.DataCr;
          continue;
        }
        case Chunk.Size: {
          const c = buf[p]!;
          const h = hexValue(c);
          if (h >= 0) {
            // 13 hex digits stay below 2^53: exact in a double, and far beyond any real chunk
            if (++this.#digits > 13) throw parseError('a chunk size over 13 hex digits');
            this.#size = this.#size * 16 + h;
          } else {
            if (this.#digits === 0) throw parseError('a chunk without a size');
            if (c === CR) this.#state = Chunk.SizeLf;
            else if (c === 0x3b || c === 0x20 || c === 0x09) this.#state = Chunk.Ext;
            else throw parseError('a bad character after a chunk size');
          }
          break;
        }
        case Chunk.Ext: {
          const c = buf[p]!;
          if (c === CR) this.#state = Chunk.SizeLf;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f)
            throw parseError('a control character in a chunk extension');
          break;
        }
        case Chunk.SizeLf:
          if (buf[p] !== LF) throw parseError('a chunk-size line without CRLF');
          this.#lineBytes = 0;
          this.#digits = 0;
          if (this.#size === 0) {
            this.#state = Chunk.TrailerStart;
          } else {
            this.#left = this.#size;
            this.#size = 0;
            this.#state = Chunk.Data;
          }
          p++;
          continue;
        case Chunk.DataCr:
          if (buf[p] !== CR) throw parseError('chunk data longer than its size');
          this.#state = Chunk.DataLf;
          break;
        case Chunk.DataLf:
          if (buf[p] !== LF) throw parseError('chunk data not followed by CRLF');
          this.#state = Chunk.Size;
          this.#lineBytes = 0;
          p++;
          continue;
        case Chunk.TrailerStart:
          this.#state = buf[p] === CR ? Chunk.FinalLf : Chunk.Trailer;
          if (this.#state === Chunk.Trailer) continue; // re-read this byte as trailer text
          break;
        case Chunk.Trailer: {
          const c = buf[p]!;
          if (c === CR) this.#state = Chunk.TrailerLf;
          else if (c === LF) throw parseError('a trailer line ends in a bare LF');
          break;
        }
        case Chunk.TrailerLf:
          if (buf[p] !== LF) throw parseError('a bare CR in a trailer');
          this.#state = Chunk.TrailerStart;
          break;
        case Chunk.FinalLf:
          if (buf[p] !== LF) throw parseError('a chunked body not ended by CRLF');
          this.#state = Chunk.Done;
          break;
      }
      p++;
      // framing bytes are bounded; data bytes (the `continue` above) are not
      const inTrailer = this.#state === Chunk.Trailer || this.#state === Chunk.TrailerLf;
      if (
        inTrailer
          ? ++this.#trailerBytes > MAX_CHUNK_LINE_BYTES
          : ++this.#lineBytes > MAX_CHUNK_LINE_BYTES
      )
        throw new CodecError(
          'ERR_HTTP_TOO_LARGE',
          inTrailer ? 'the chunked trailer section is too long' : 'a chunk-size line is too long',
        );
    }
    return p - offset;
  }
}
