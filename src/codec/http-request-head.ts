/**
 * An HTTP/1.x request head read the way nginx 1.22 reads it (src/http/ngx_http_parse.c,
 * ngx_http_request.c), pure: the decoy web server must accept, refuse and limit exactly what nginx
 * does, because each difference is one probe that tells a Ladder server from a web server.
 *
 * ```
 * request:  *( CR / LF ) method SP+ request-target [ SP+ "HTTP/" major "." minor SP* ] [CR] LF
 *           *( field-name ":" SP* field-value [CR] LF ) [CR] LF
 * method:   1*( "A"-"Z" / "_" / "-" )                       (anything else: 400)
 * target:   "/" ... | scheme "://" host [":" port] ["/" ...] (absolute-form; anything else: 400)
 * version:  major 1-9 first digit, > 1: 505; minor up to 3 digits; none: HTTP/0.9
 * ```
 * Lines may end in a bare LF, as nginx allows. Limits are nginx's header buffers
 * (`client_header_buffer_size`, `large_client_header_buffers`): a request line that does not fit
 * one large buffer is 414, a header line that does not, or a head that needs more large buffers
 * than there are, is 494 (sent as "400 Bad Request" with its own page).
 *
 * Malformed input is not an exception here but a status, because the status is the answer.
 * @module
 */

/** nginx's header buffer sizes (its defaults: 1k, then 4 buffers of 8k). */
export interface HeadLimits {
  readonly headerBufferBytes: number;
  readonly largeBuffers: number;
  readonly largeBufferBytes: number;
}

export const NGINX_HEAD_LIMITS: HeadLimits = {
  headerBufferBytes: 1024,
  largeBuffers: 4,
  largeBufferBytes: 8192,
};

export interface RequestHead {
  readonly method: string;
  /** The request-target as sent (absolute-form included). */
  readonly target: string;
  /** The path and query part of the target ("/" when absolute-form had none). */
  readonly uri: string;
  /** Host from an absolute-form target, as sent. */
  readonly uriHost: string | null;
  /** major * 1000 + minor; 9 for HTTP/0.9. */
  readonly version: number;
  /** Field names as sent, values with surrounding spaces removed; invalid names already dropped. */
  readonly headers: readonly (readonly [string, string])[];
  /** Bytes of the buffer the head took, leading empty lines included. */
  readonly bytesRead: number;
}

export type HeadResult =
  | { readonly kind: 'more' }
  | { readonly kind: 'error'; readonly status: 400 | 414 | 494 | 505; readonly inHeaders: boolean }
  | { readonly kind: 'request'; readonly head: RequestHead };

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;

const isUpperMethodChar = (c: number): boolean =>
  (c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x2d;
const isAlpha = (c: number): boolean => (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** A header-name byte nginx hashes (letters, digits, '-'); others make the line "invalid". */
const isNameChar = (c: number): boolean => isAlpha(c) || isDigit(c) || c === 0x2d;

/**
 * Reads one request head from `buf` (bytes from the start of the request, leading CRLFs included).
 * Returns `more` while the head is incomplete and within limits.
 */
export function parseRequestHead(
  buf: Uint8Array,
  limits: HeadLimits = NGINX_HEAD_LIMITS,
): HeadResult {
  const line = parseRequestLine(buf);
  // Where each element (the request line, then each header line) starts: nginx moves the element
  // in progress to a fresh large buffer whenever the current buffer is full.
  const elementStarts: number[] = [];
  /** nginx's answer once `end` bytes are in, or null while its buffers hold them. */
  const overflow = (end: number): HeadResult | null => {
    let capacity = limits.headerBufferBytes;
    let used = 0;
    let i = 0;
    while (end > capacity) {
      while (i + 1 < elementStarts.length && elementStarts[i + 1]! <= capacity) i++;
      const s = elementStarts[i]!;
      if (capacity - s >= limits.largeBufferBytes || used >= limits.largeBuffers)
        return i === 0
          ? { kind: 'error', status: 414, inHeaders: false }
          : { kind: 'error', status: 494, inHeaders: true };
      used++;
      capacity = s + limits.largeBufferBytes;
    }
    return null;
  };
  if (line.kind === 'error') return { kind: 'error', status: line.status, inHeaders: false };
  elementStarts.push(line.start);
  if (line.kind === 'more') return overflow(buf.length) ?? { kind: 'more' };
  if (line.version === 9) {
    const o = overflow(line.end);
    if (o) return o;
    return {
      kind: 'request',
      head: {
        method: line.method,
        target: line.target,
        uri: line.uri,
        uriHost: line.uriHost,
        version: 9,
        headers: [],
        bytesRead: line.end,
      },
    };
  }
  const headers: [string, string][] = [];
  let p = line.end;
  for (;;) {
    elementStarts.push(p);
    const h = parseHeaderLine(buf, p);
    if (h.kind === 'error') {
      const o = overflow(Math.min(buf.length, h.at + 1));
      return o ?? { kind: 'error', status: 400, inHeaders: true };
    }
    if (h.kind === 'more') return overflow(buf.length) ?? { kind: 'more' };
    const o = overflow(h.end);
    if (o) return o;
    if (h.kind === 'end') {
      return {
        kind: 'request',
        head: {
          method: line.method,
          target: line.target,
          uri: line.uri,
          uriHost: line.uriHost,
          version: line.version,
          headers,
          bytesRead: h.end,
        },
      };
    }
    if (h.valid) headers.push([h.name, h.value]);
    p = h.end;
  }
}

type LineResult =
  | { kind: 'more'; start: number }
  | { kind: 'error'; status: 400 | 505 }
  | {
      kind: 'line';
      start: number;
      end: number;
      method: string;
      target: string;
      uri: string;
      uriHost: string | null;
      version: number;
    };

function latin1(buf: Uint8Array, from: number, to: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + from, to - from).toString('latin1');
}

/**
 * An absolute-form target's `scheme "://" host [":" port]` at `p` (its first byte is not '/'):
 * where the path starts and the host, 'more' when the buffer ends first, 'bad' at a byte nginx
 * refuses.
 */
function parseAbsolutePrefix(
  buf: Uint8Array,
  start: number,
): { p: number; uriHost: string } | 'more' | 'bad' {
  let p = start;
  if (!isAlpha(buf[p]!)) return 'bad';
  // scheme ":" "//" host [":" port]
  while (
    p < buf.length &&
    (isAlpha(buf[p]!) || isDigit(buf[p]!) || buf[p] === 0x2b || buf[p] === 0x2d || buf[p] === 0x2e)
  )
    p++;
  if (p >= buf.length) return 'more';
  if (buf[p] !== 0x3a) return 'bad';
  for (let k = 1; k <= 2; k++) {
    if (p + k >= buf.length) return 'more';
    if (buf[p + k] !== 0x2f) return 'bad';
  }
  p += 3;
  const hostStart = p;
  if (p >= buf.length) return 'more';
  if (buf[p] === 0x5b) {
    while (p < buf.length && buf[p] !== 0x5d) {
      const d = buf[p]!;
      if (!(
        isDigit(d) ||
        isAlpha(d) ||
        d === 0x3a ||
        d === 0x2e ||
        d === 0x5b ||
        d === 0x25 ||
        d === 0x5f ||
        d === 0x2d ||
        d === 0x7e
      ))
        return 'bad';
      p++;
    }
    if (p >= buf.length) return 'more';
    p++;
  } else {
    while (
      p < buf.length &&
      (isAlpha(buf[p]!) || isDigit(buf[p]!) || buf[p] === 0x2e || buf[p] === 0x2d)
    )
      p++;
  }
  if (p >= buf.length) return 'more';
  const hostEnd = p;
  if (buf[p] === 0x3a) {
    p++;
    while (p < buf.length && isDigit(buf[p]!)) p++;
    if (p >= buf.length) return 'more';
  }
  const c = buf[p]!;
  if (c !== 0x2f && c !== 0x3f && c !== SP && c !== CR && c !== LF) return 'bad';
  return { p, uriHost: latin1(buf, hostStart, hostEnd) };
}

/**
 * `"HTTP/" major "." minor` at `start`, spaces, then the line's end: where the line ends and the
 * version (major × 1000 + minor); 505 for a major version above 1.
 */
function parseVersionEnd(
  buf: Uint8Array,
  start: number,
): { end: number; version: number } | 'more' | 'bad' | 505 {
  let p = start;
  const proto = 'HTTP/';
  for (let k = 0; k < proto.length; k++, p++) {
    if (p >= buf.length) return 'more';
    if (buf[p] !== proto.charCodeAt(k)) return 'bad';
  }
  if (p >= buf.length) return 'more';
  if (buf[p]! < 0x31 || buf[p]! > 0x39) return 'bad';
  let major = 0;
  while (p < buf.length && isDigit(buf[p]!)) {
    if (major > 99) return 'bad'; // nginx tests the value before each digit: 100 passes, 1000 not
    major = major * 10 + buf[p]! - 0x30;
    p++;
  }
  if (p >= buf.length) return 'more';
  if (buf[p] !== 0x2e) return 'bad';
  if (major > 1) return 505;
  p++;
  if (p >= buf.length) return 'more';
  if (!isDigit(buf[p]!)) return 'bad';
  let minor = 0;
  while (p < buf.length && isDigit(buf[p]!)) {
    if (minor > 99) return 'bad';
    minor = minor * 10 + buf[p]! - 0x30;
    p++;
  }
  while (p < buf.length && buf[p] === SP) p++;
  if (p >= buf.length) return 'more';
  const version = major * 1000 + minor;
  if (buf[p] === LF) return { end: p + 1, version };
  if (buf[p] !== CR) return 'bad';
  if (p + 1 >= buf.length) return 'more';
  return buf[p + 1] === LF ? { end: p + 2, version } : 'bad';
}

/** The request line, byte by byte, refusing at the first byte nginx refuses. */
function parseRequestLine(buf: Uint8Array): LineResult {
  let p = 0;
  while (p < buf.length && (buf[p] === CR || buf[p] === LF)) p++;
  const start = p;
  const more = { kind: 'more', start } as const;
  const bad = { kind: 'error', status: 400 } as const;
  // method
  if (p >= buf.length) return more;
  while (p < buf.length && buf[p] !== SP) {
    if (!isUpperMethodChar(buf[p]!)) return bad;
    p++;
  }
  if (p >= buf.length) return more;
  const method = latin1(buf, start, p);
  while (p < buf.length && buf[p] === SP) p++;
  if (p >= buf.length) return more;
  const targetStart = p;
  let uriStart = p;
  let uriHost: string | null = null;
  let c = buf[p]!;
  if (c !== 0x2f) {
    const abs = parseAbsolutePrefix(buf, p);
    if (abs === 'more') return more;
    if (abs === 'bad') return bad;
    p = abs.p;
    uriHost = abs.uriHost;
    uriStart = p;
  }
  // path and query: no controls, no DEL; SP, CR or LF ends it
  while (p < buf.length) {
    c = buf[p]!;
    if (c === SP || c === CR || c === LF) break;
    if (c < 0x20 || c === 0x7f) return bad;
    p++;
  }
  if (p >= buf.length) return more;
  const target = latin1(buf, targetStart, p);
  const rawUri = latin1(buf, uriStart, p);
  const uri = rawUri.length === 0 || rawUri[0] === '?' ? '/' + rawUri : rawUri;
  const line = (end: number, version: number): LineResult => ({
    kind: 'line',
    start,
    end,
    method,
    target,
    uri,
    uriHost,
    version,
  });
  // HTTP/0.9: the target ends the line
  const end09 = (q: number): LineResult => {
    if (buf[q] === LF) return line(q + 1, 9);
    if (q + 1 >= buf.length) return more;
    return buf[q + 1] === LF ? line(q + 2, 9) : bad;
  };
  if (c === CR || c === LF) return end09(p);
  while (p < buf.length && buf[p] === SP) p++;
  if (p >= buf.length) return more;
  if (buf[p] === CR || buf[p] === LF) return end09(p);
  const v = parseVersionEnd(buf, p);
  if (v === 'more') return more;
  if (v === 'bad') return bad;
  if (v === 505) return { kind: 'error', status: 505 };
  return line(v.end, v.version);
}

type HeaderLineResult =
  | { kind: 'more' }
  | { kind: 'error'; at: number }
  | { kind: 'end'; end: number }
  | { kind: 'field'; end: number; name: string; value: string; valid: boolean };

/** One header line at `p` (ngx_http_parse_header_line with ignore_invalid_headers on). */
function parseHeaderLine(buf: Uint8Array, p: number): HeaderLineResult {
  if (p >= buf.length) return { kind: 'more' };
  const first = buf[p]!;
  if (first === LF) return { kind: 'end', end: p + 1 };
  if (first === CR) {
    if (p + 1 >= buf.length) return { kind: 'more' };
    return buf[p + 1] === LF ? { kind: 'end', end: p + 2 } : { kind: 'error', at: p + 1 };
  }
  const nameStart = p;
  let valid = true;
  let nameEnd = -1;
  // the name
  while (p < buf.length) {
    const c = buf[p]!;
    if (c === 0x3a && p > nameStart) {
      nameEnd = p;
      p++;
      break;
    }
    if (c === CR || c === LF) {
      if (p === nameStart) return { kind: 'error', at: p };
      nameEnd = p; // a line without a colon: a field with an empty value
      break;
    }
    if (c <= 0x20 || c === 0x7f || c === 0x3a) return { kind: 'error', at: p };
    if (!isNameChar(c)) valid = false;
    p++;
  }
  if (nameEnd < 0) return { kind: 'more' };
  // spaces before the value, the value, the line end
  while (p < buf.length && buf[p] === SP) p++;
  const valueStart = p;
  let valueEnd = p;
  while (p < buf.length) {
    const c = buf[p]!;
    if (c === CR || c === LF) break;
    if (c === 0) return { kind: 'error', at: p };
    p++;
    if (c !== SP) valueEnd = p;
  }
  if (p >= buf.length) return { kind: 'more' };
  let end: number;
  if (buf[p] === LF) end = p + 1;
  else {
    // CR: more CRs may follow; then LF
    let q = p + 1;
    while (q < buf.length && buf[q] === CR) q++;
    if (q >= buf.length) return { kind: 'more' };
    if (buf[q] !== LF) return { kind: 'error', at: q };
    end = q + 1;
  }
  return {
    kind: 'field',
    end,
    name: latin1(buf, nameStart, nameEnd),
    value: latin1(buf, valueStart, valueEnd),
    valid,
  };
}
