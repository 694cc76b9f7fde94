/**
 * Reads the two places of an HTTP/1.x request the GFW's keyword filter inspects: the request-line
 * path and the Host header, after %-decoding (docs/censorship-techniques.md §5, Rambert et al. PETS 2021). Cookies,
 * other headers and bodies are not read.
 *
 * ```text
 * METHOD SP request-target SP HTTP/1.x CRLF
 * (header-name ":" OWS value CRLF)*
 * CRLF
 * ```
 * @module
 */

export interface HttpRequestHead {
  readonly method: string;
  /** Request target, %-decoded (bytes kept as latin1 characters when not valid UTF-8). */
  readonly path: string;
  /** Host header value without the port, lower-cased, %-decoded; undefined if absent. */
  readonly host: string | undefined;
}

const METHOD = /^(GET|POST|HEAD|PUT|DELETE|OPTIONS|CONNECT|PATCH|TRACE) /;

/** True if `d` begins with an HTTP method and a space (a candidate for the HTTP filter). */
export function looksLikeHttpRequest(d: Uint8Array): boolean {
  return METHOD.test(String.fromCharCode(...d.subarray(0, 9)));
}

function isMethodPrefix(s: string): boolean {
  const methods = ['GET ', 'POST ', 'HEAD ', 'PUT ', 'DELETE ', 'OPTIONS ', 'CONNECT ', 'PATCH '];
  return methods.some((m) => m.startsWith(s));
}

/**
 * Parses the request head in `d`. Returns null if the head is not complete yet (no CRLFCRLF within
 * `maxHead` bytes is treated as complete at `maxHead`), and undefined if `d` is not an HTTP request.
 */
export function parseHttpRequestHead(
  d: Uint8Array,
  maxHead = 8192,
): HttpRequestHead | null | undefined {
  const text = Buffer.from(d.buffer, d.byteOffset, Math.min(d.length, maxHead)).toString('latin1');
  const m = METHOD.exec(text);
  if (!m) return d.length < 8 && isMethodPrefix(text) ? null : undefined;
  let headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) {
    if (d.length < maxHead) return null;
    headEnd = text.length;
  }
  const lines = text.slice(0, headEnd).split('\r\n');
  const requestLine = lines[0]!;
  const target = requestLine.slice(m[0].length).replace(/ HTTP\/\d(\.\d)?$/, '');
  let host: string | undefined;
  for (const line of lines.slice(1)) {
    const c = line.indexOf(':');
    if (c > 0 && line.slice(0, c).trim().toLowerCase() === 'host') {
      host = percentDecode(line.slice(c + 1).trim())
        .toLowerCase()
        .replace(/:\d+$/, '');
      break;
    }
  }
  return { method: m[1]!, path: percentDecode(target), host };
}

/** %-decodes a latin1 string; the result is UTF-8 text when the bytes are valid UTF-8. */
export function percentDecode(s: string): string {
  if (!s.includes('%')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c & 0xff);
  }
  const buf = Buffer.from(bytes);
  const utf8 = buf.toString('utf8');
  return utf8.includes('\ufffd') ? buf.toString('latin1') : utf8;
}
