/**
 * nginx's gzip filter as Debian configures it (`gzip on;` in /etc/nginx/nginx.conf, every other
 * gzip setting at nginx's default): which responses it compresses (ngx_http_gzip_ok,
 * ngx_http_gzip_header_filter), with which zlib parameters, and in which pieces the compressed body
 * leaves as chunks (ngx_http_gzip_body_filter with `gzip_buffers 32 4k`).
 *
 * - Compressed: status 200, 403 or 404; type text/html (`gzip_types` default); a body of at least
 *   20 bytes (`gzip_min_length`); HTTP/1.1 (`gzip_http_version`); an Accept-Encoding that accepts
 *   gzip as nginx parses it (q=0 refuses); no Via header (`gzip_proxied off`).
 * - zlib: level 1, the gzip wrapper, window bits 15 and memory level 8 shrunk together, one step
 *   per halving, while the body is shorter than the window less 262 bytes.
 * - On the wire: no Content-Length (chunked), no Accept-Ranges (and so no ranges), a weak ETag,
 *   `Content-Encoding: gzip` last. After each block of input, the whole 4 KiB output buffers filled
 *   so far leave as one chunk; the rest leaves with the last chunk.
 *
 * The bytes come from the system's zlib through native/gzip (the library nginx links), so they equal
 * nginx's; without the addon, node:zlib (Chromium's zlib) compresses the same content to other
 * bytes (docs/probe-resistance.md says what differs).
 * @module
 */
import { createRequire } from 'node:module';
import { createGzip } from 'node:zlib';

/** nginx's `gzip_buffers` size on a 4 KiB-page system. */
export const GZIP_BUFFER_BYTES = 4096;
/** Input handed to the compressor at a time (nginx's `output_buffers` 32k). */
export const GZIP_INPUT_BLOCK_BYTES = 32 * 1024;
/** `gzip_min_length` default. */
export const GZIP_MIN_LENGTH = 20;

/** Statuses nginx's gzip header filter compresses. */
const GZIP_STATUSES: ReadonlySet<number> = new Set([200, 403, 404]);

/** ngx_http_gzip_quantity: the q-value in thousandths as nginx reads it (0: refused). */
function quantity(s: string, p: number): number {
  let c = s[p++];
  if (c !== '0' && c !== '1') return 0;
  let q = (c === '1' ? 1 : 0) * 100;
  if (p === s.length) return q;
  c = s[p++];
  if (c === ',' || c === ' ') return q;
  if (c !== '.') return 0;
  let n = 0;
  while (p < s.length) {
    c = s[p++]!;
    if (c === ',' || c === ' ') break;
    if (c >= '0' && c <= '9') {
      // nginx adds each digit as it is, whatever its place
      q += c.charCodeAt(0) - 0x30;
      n++;
      continue;
    }
    return 0;
  }
  return q > 100 || n > 3 ? 0 : q;
}

/** ngx_http_gzip_ok's Accept-Encoding test: does `ae` accept gzip? */
export function acceptsGzip(ae: string | undefined): boolean {
  if (ae === undefined || ae.length < 4) return false;
  if (ae.startsWith('gzip,')) return true;
  const lower = ae.toLowerCase();
  let start = 0;
  let p: number;
  for (;;) {
    p = lower.indexOf('gzip', start);
    if (p < 0) return false;
    if (p === start || ae[p - 1] === ',' || ae[p - 1] === ' ') break;
    start = p + 4;
  }
  p += 4;
  while (p < ae.length) {
    const c = ae[p++];
    if (c === ',') return true;
    if (c === ';') {
      while (p < ae.length) {
        const d = ae[p++];
        if (d === 'q' || d === 'Q') {
          if (p + 2 > ae.length || ae[p++] !== '=') return false;
          return quantity(ae, p) !== 0;
        }
        if (d !== ' ') return false;
      }
      return true;
    }
    if (c !== ' ') return false;
  }
  return true;
}

/** What of the request nginx's gzip decision reads. */
export interface GzipRequest {
  /** major * 1000 + minor (9: HTTP/0.9). */
  readonly version: number;
  readonly acceptEncoding: string | undefined;
  readonly via: boolean;
}

/** Would Debian's nginx compress this response? */
export function gzipApplies(
  req: GzipRequest,
  status: number,
  type: string,
  length: number,
): boolean {
  return (
    GZIP_STATUSES.has(status) &&
    length >= GZIP_MIN_LENGTH &&
    type === 'text/html' &&
    req.version >= 1001 &&
    !req.via &&
    acceptsGzip(req.acceptEncoding)
  );
}

/** ngx_http_gzip_filter_memory: zlib's window bits and memory level for a body of `length`. */
export function gzipParameters(length: number): { windowBits: number; memLevel: number } {
  let windowBits = 15;
  let memLevel = 8;
  if (length > 0) {
    while (length < (1 << (windowBits - 1)) - 262) {
      windowBits--;
      memLevel--;
    }
    if (memLevel < 1) memLevel = 1;
  }
  return { windowBits, memLevel };
}

interface NativeGzip {
  version(): string | null;
  create(level: number, windowBits: number, memLevel: number): unknown;
  push(stream: unknown, input: Buffer, finish: boolean): Buffer;
}

let native: NativeGzip | null | undefined;

function loadNative(): NativeGzip | null {
  if (native !== undefined) return native;
  native = null;
  const require = createRequire(import.meta.url);
  for (const rel of [
    '../../../../native/gzip/build/Release/ladder_gzip.node',
    '../../../native/gzip/build/Release/ladder_gzip.node',
  ]) {
    try {
      const m = require(rel) as NativeGzip;
      if (m.version() !== null) native = m;
      break;
    } catch {
      // try the next place; absent means node:zlib
    }
  }
  return native;
}

/** The system zlib's version when the addon compresses with it, else null (node:zlib is used). */
export function systemZlibVersion(): string | null {
  return loadNative()?.version() ?? null;
}

/** A gzip compressor: input in, compressed bytes out as they are produced. */
interface Deflater {
  push(input: Buffer, finish: boolean): Promise<Buffer>;
}

function nativeDeflater(n: NativeGzip, windowBits: number, memLevel: number): Deflater {
  const s = n.create(1, windowBits, memLevel);
  return { push: (input, finish) => Promise.resolve(n.push(s, input, finish)) };
}

function nodeDeflater(windowBits: number, memLevel: number): Deflater {
  const z = createGzip({ level: 1, windowBits, memLevel });
  let out: Buffer[] = [];
  z.on('data', (d: Buffer) => out.push(d));
  const take = (): Buffer => {
    const b = Buffer.concat(out);
    out = [];
    return b;
  };
  return {
    push: (input, finish) =>
      new Promise((resolve, reject) => {
        z.once('error', reject);
        if (finish) {
          z.once('end', () => resolve(take()));
          z.end(input);
        } else z.write(input, () => resolve(take()));
      }),
  };
}

/**
 * One compressed body, cut into chunks as nginx cuts it: `push` each block of input (at most
 * {@link GZIP_INPUT_BLOCK_BYTES}) and send what it returns as one chunk (nothing when empty);
 * `finish` returns the last chunk.
 */
export class NginxGzipBody {
  readonly #deflater: Deflater;
  #pending: Buffer = Buffer.alloc(0);

  constructor(length: number) {
    const { windowBits, memLevel } = gzipParameters(length);
    const n = loadNative();
    this.#deflater = n
      ? nativeDeflater(n, windowBits, memLevel)
      : nodeDeflater(windowBits, memLevel);
  }

  /** The whole 4 KiB buffers filled by this input (possibly none). */
  async push(input: Buffer): Promise<Buffer> {
    const out = await this.#deflater.push(input, false);
    const all = this.#pending.length === 0 ? out : Buffer.concat([this.#pending, out]);
    const full = all.length - (all.length % GZIP_BUFFER_BYTES);
    this.#pending = all.subarray(full);
    return all.subarray(0, full);
  }

  /** Everything left, with the gzip trailer. */
  async finish(): Promise<Buffer> {
    const out = await this.#deflater.push(Buffer.alloc(0), true);
    return Buffer.concat([this.#pending, out]);
  }
}
