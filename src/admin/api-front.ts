/**
 * Who gets a connection that reaches the management API: the API only when its first request asks
 * for a path under the secret prefix (compared in constant time); every other connection, and every
 * byte it sent, goes to the same decoy as the main port's, which answers as nginx does. A prober
 * who does not know the prefix sees a web server, on the API's own port or on the main port when
 * the API is served there (`--api main`).
 * @module
 */
import type { Duplex } from 'node:stream';
import { timingSafeEqual } from 'node:crypto';
import { parseRequestHead } from '../codec/http-request-head.js';
import type { Fallback } from '../server/decoy/decoy-site.js';

/** Most bytes held while the first request head is incomplete (nginx's buffers hold 33 KiB). */
const MAX_HEAD_BYTES = 40 * 1024;

/** Constant-time "the request-target's path starts with the prefix, then '/', '?' or ends". */
export function underSecretPrefix(target: string, prefix: string): boolean {
  const path = target.startsWith('/')
    ? target
    : target.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?]*/i, '');
  const a = Buffer.from(path, 'latin1');
  const b = Buffer.from(prefix, 'latin1');
  const n = Math.min(a.length, b.length);
  const padded = Buffer.alloc(b.length);
  a.copy(padded, 0, 0, n);
  const same = timingSafeEqual(padded, b);
  const next = a[b.length];
  return same && a.length >= b.length && (next === undefined || next === 0x2f || next === 0x3f);
}

export interface ApiConnectionHandler {
  /** Serves a connection whose first bytes (`head`) were already read. */
  handleConnection(conn: Duplex, head: Buffer): void;
}

export class SecretPrefixFront implements Fallback {
  readonly #prefix: string;
  readonly #api: ApiConnectionHandler;
  readonly #fallback: Fallback;

  readonly #headerTimeoutMs: number;
  /** Plain HTTP to the TLS port is the site's to answer: the API is never reached that way. */
  readonly handlePlainOnTlsPort: Fallback['handlePlainOnTlsPort'];

  /**
   * `headerTimeoutMs`: a first request head not complete by then closes the connection without a
   * word, as the decoy (and nginx's client_header_timeout) would.
   */
  constructor(
    prefix: string,
    api: ApiConnectionHandler,
    fallback: Fallback,
    headerTimeoutMs = 60_000,
  ) {
    this.#prefix = prefix;
    this.#api = api;
    this.#fallback = fallback;
    this.#headerTimeoutMs = headerTimeoutMs;
    this.handlePlainOnTlsPort = fallback.handlePlainOnTlsPort;
  }

  handle(conn: Duplex, head: Buffer): void {
    let buf = head;
    let decided = false;
    const decide = (): void => {
      const r = parseRequestHead(buf);
      if (r.kind === 'more' && !conn.readableEnded && buf.length < MAX_HEAD_BYTES) return;
      decided = true;
      clearTimeout(timer);
      conn.off('data', onData);
      conn.off('end', onEnd);
      conn.pause();
      if (r.kind === 'request' && underSecretPrefix(r.head.target, this.#prefix))
        this.#api.handleConnection(conn, buf);
      else this.#fallback.handle(conn, buf);
    };
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      decide();
    };
    const onEnd = (): void => {
      if (!decided) decide();
    };
    const timer = setTimeout(() => {
      if (!decided) conn.destroy();
    }, this.#headerTimeoutMs);
    timer.unref();
    conn.once('close', () => clearTimeout(timer));
    if (buf.length > 0 || conn.readableEnded) {
      decide();
      if (decided) return;
    }
    conn.on('data', onData);
    conn.on('end', onEnd);
    if (conn.isPaused()) conn.resume();
  }

  close(): void {
    this.#fallback.close();
  }
}
