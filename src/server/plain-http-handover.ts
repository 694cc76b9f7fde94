/**
 * Plain HTTP sent to the TLS port, answered as nginx answers it. nginx with `listen ... ssl` peeks
 * at a connection's first byte (ngx_http_ssl_handshake): 0x16 (a TLS record) or a byte with the
 * high bit set (an SSLv2 hello) starts the TLS handshake; any other byte makes it read the
 * connection as plain HTTP, and a request that passes its header checks is refused with its
 * "400 The plain HTTP request was sent to HTTPS port" page (status 497), `Connection: close`; a
 * malformed one gets the usual 400, a head that never completes the header timeout. The one port
 * (port-mux.ts) gives such bytes to Shadowsocks first; what Shadowsocks refuses comes here instead
 * of to the TLS stack, so that the port answers as nginx does (docs/probe-resistance.md).
 *
 * Like the TLS handover, it serves as a shadow while Shadowsocks cannot decide yet: fed the first
 * bytes, it says whether nginx would already have answered or closed (a parse error, a whole
 * request head, the peer's end). Nothing reaches the wire before {@link PlainHttpHandover.commit};
 * then the site answers on the real socket from every byte the connection sent.
 * @module
 */
import type { Duplex } from 'node:stream';
import { parseRequestHead } from '../codec/http-request-head.js';

/** What answers a plain HTTP connection on a TLS port (DecoySite.handlePlainOnTlsPort). */
export type PlainHttpAnswer = (conn: Duplex, head: Buffer) => void;

/** Would nginx on a TLS port read a connection that starts with `first` as plain HTTP? */
export function isPlainHttpStart(first: number): boolean {
  return first !== 0x16 && (first & 0x80) === 0;
}

export class PlainHttpHandover {
  readonly #answer: PlainHttpAnswer;
  #chunks: Buffer[] = [];
  #length = 0;
  #reacted = false;
  #onReact: (() => void) | undefined;
  #done = false;

  constructor(answer: PlainHttpAnswer, onReact?: () => void) {
    this.#answer = answer;
    this.#onReact = onReact;
  }

  /** Replaces the reaction callback (the port hands a shadow from one phase to the next). */
  set onReact(f: (() => void) | undefined) {
    this.#onReact = f;
  }

  /** Would nginx have answered or closed on what was fed? */
  get reacted(): boolean {
    return this.#reacted;
  }

  #react(): void {
    if (this.#reacted || this.#done) return;
    this.#reacted = true;
    const f = this.#onReact;
    this.#onReact = undefined;
    if (f) process.nextTick(f);
  }

  /** Bytes the connection sent, in order (before the commit). */
  feed(bytes: Buffer): void {
    if (this.#done || bytes.length === 0) return;
    this.#chunks.push(Buffer.from(bytes));
    this.#length += bytes.length;
    if (this.#reacted) return;
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [all];
    // A parse error is answered at once, and so is a whole head (the 497 page or an error).
    if (parseRequestHead(all).kind !== 'more') this.#react();
  }

  /** The connection ended after what was fed: nginx closes (or answers what it has). */
  feedEnd(): void {
    this.#react();
  }

  /** Bytes fed so far. */
  get length(): number {
    return this.#length;
  }

  /** The connection is the site's: it answers from every byte fed, on `socket`. */
  commit(socket: Duplex): void {
    if (this.#done) return;
    this.#done = true;
    const head = Buffer.concat(this.#chunks);
    this.#chunks = [];
    socket.on('error', () => socket.destroy());
    this.#answer(socket, head);
  }

  /** Not needed after all (Shadowsocks took the connection). */
  abandon(): void {
    this.#done = true;
    this.#chunks = [];
    this.#onReact = undefined;
  }
}

/**
 * nginx's choice on a TLS port, for a server that has nothing but TLS and a site on it (the lab's
 * reference decoy): the first byte sends the connection to `tls` (with that byte still unread) or
 * to `plain` (with the bytes read so far). A connection that ends before a byte goes to `tls`.
 */
export function splitByFirstByte(
  socket: Duplex,
  tls: (socket: Duplex) => void,
  plain: PlainHttpAnswer,
): void {
  const onData = (first: Buffer): void => {
    socket.off('end', onEnd);
    socket.pause();
    if (isPlainHttpStart(first[0]!)) plain(socket, first);
    else {
      socket.unshift(first);
      tls(socket);
    }
  };
  const onEnd = (): void => {
    socket.off('data', onData);
    tls(socket);
  };
  socket.once('data', onData);
  socket.once('end', onEnd);
}
