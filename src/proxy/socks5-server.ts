/**
 * The local SOCKS5 front end (RFC 1928, RFC 1929): CONNECT and UDP ASSOCIATE, no authentication or
 * username/password, carried by any StreamDialer/PacketDialer (the tunnel, or direct in tests).
 *
 * ```
 * client                          Socks5Server                       dialer
 *   | greeting  ─────────────────▶  | method selection (00 or 02)
 *   | [user/pass ───────────────▶   | status]                  (RFC 1929, only when users are set)
 *   | request   ─────────────────▶  | ── dial(target) ───────────▶ |
 *   | ◀───────── reply (00, or the failure's code)                  |
 *   | ◀═══════════════════ relay() ═══════════════════════════════▶ |
 * ```
 * A failed dial is answered with its RFC 1928 §6 code (proxy/failures.ts). A successful CONNECT
 * is answered with BND 0.0.0.0:0: a tunnel gives no feedback about the address it bound.
 * UDP ASSOCIATE opens a UDP socket on the address the client reached us at, takes datagrams only
 * from the client's address, and lives exactly as long as the TCP control connection (§7).
 * Nothing is logged with an address: the debug log carries error codes only.
 * @module
 */
import { createServer, isIPv6, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { debuglog } from 'node:util';
import type { ErrorCode } from '../errors.js';
import {
  SOCKS_CMD,
  SOCKS_METHOD,
  SOCKS_REPLY,
  decodeGreeting,
  decodeRequest,
  decodeUdpDatagram,
  decodeUserPass,
  encodeUdpDatagram,
  methodSelection,
  replyBytes,
  userPassReply,
} from '../codec/socks5.js';
import { relay } from '../transport/relay.js';
import { listenTcp } from '../transport/listen.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from '../transport/types.js';
import { codeOf, socksReplyFor } from './failures.js';
import { Credentials } from './credentials.js';

export { socksReplyFor } from './failures.js';

const debug = debuglog('ladder:socks5');

/** A handshake never needs more: greeting 2+255, user/pass 3+255+255, request 4+1+255+2. */
const MAX_HANDSHAKE_BYTES = 257 + 513 + 262;
/** After a failure reply, how long the client has to close before we do. */
const LINGER_MS = 2_000;

export interface Socks5ServerOptions {
  dialer: StreamDialer;
  /** Enables UDP ASSOCIATE; without it the command is answered 0x07. */
  packetDialer?: PacketDialer;
  /** username → password; when set, only username/password authentication (0x02) is accepted. */
  users?: ReadonlyMap<string, string>;
  /**
   * Address for UDP ASSOCIATE relay sockets, reported to the client in the reply. Default: the
   * address the client's TCP connection reached.
   */
  udpHost?: string;
  /** Close a connection that has not finished its handshake after this long (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Passed to relay(): close a CONNECT with no bytes either way for this long (default none). */
  idleTimeoutMs?: number;
  /** Called with the code of every failure (handshake, authentication, dial, relay): a metric hook. */
  onError?: (code: ErrorCode) => void;
}

/** `::ffff:127.0.0.1` → `127.0.0.1`: a dual-stack listener reports IPv4 peers in mapped form. */
function unmapped(address: string | undefined): string {
  if (!address) return '';
  return address.toLowerCase().startsWith('::ffff:') && address.includes('.')
    ? address.slice(7)
    : address;
}

export class Socks5Server {
  readonly #o: Socks5ServerOptions;
  readonly #credentials: Credentials | null;
  readonly #sockets = new Set<Socket>();
  readonly #closing = new AbortController();
  readonly #dialing = new Set<AbortController>();
  #server: Server | null = null;

  constructor(options: Socks5ServerOptions) {
    this.#o = options;
    this.#credentials = options.users ? new Credentials(options.users) : null;
  }

  /** Listens on host:port (port 0: any free port). Rejects with ERR_LISTEN naming the problem. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.handle(s));
    await listenTcp(server, host, port, 'SOCKS5', '--socks');
    server.on('error', (e: NodeJS.ErrnoException) => debug('listener error %s', e.code));
    this.#server = server;
    return server.address() as AddressInfo;
  }

  /** Stops accepting, cancels pending dials and ends every session (UDP associations with them). */
  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    this.#closing.abort();
    for (const a of this.#dialing) a.abort();
    for (const c of this.#sockets) c.destroy();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  #fail(code: ErrorCode): void {
    debug('failure %s', code);
    this.#o.onError?.(code);
  }

  /** Serves one accepted connection; usable with a listener of your own. */
  handle(socket: Socket): void {
    if (this.#closing.signal.aborted) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let stage: 'greeting' | 'auth' | 'request' | 'done' = 'greeting';
    const timer = setTimeout(() => {
      this.#fail('ERR_PROBE_TIMEOUT');
      socket.destroy();
    }, this.#o.handshakeTimeoutMs ?? 10_000);
    timer.unref();
    const stop = (): void => {
      stage = 'done';
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
    };
    const refuse = (code: ErrorCode, reply?: Buffer): void => {
      stop();
      this.#fail(code);
      if (reply) endWith(socket, reply);
      else socket.destroy();
    };
    const onEnd = (): void => refuse('ERR_PROBE_SHORT');
    const onData = (chunk: Buffer): void => {
      // Handshake bytes only, a few hundred at most: one concat per chunk is fine here.
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > MAX_HANDSHAKE_BYTES) return refuse('ERR_SOCKS_VERSION');
      try {
        while (stage !== 'done') {
          if (stage === 'greeting') {
            const g = decodeGreeting(buf, 0);
            if (!g) return;
            buf = buf.subarray(g.bytesRead);
            const want = this.#credentials ? SOCKS_METHOD.USERNAME_PASSWORD : SOCKS_METHOD.NO_AUTH;
            if (!g.value.includes(want))
              return refuse('ERR_SOCKS_AUTH', methodSelection(SOCKS_METHOD.NO_ACCEPTABLE));
            socket.write(methodSelection(want));
            stage = this.#credentials ? 'auth' : 'request';
          } else if (stage === 'auth') {
            const a = decodeUserPass(buf, 0);
            if (!a) return;
            buf = buf.subarray(a.bytesRead);
            // RFC 1929 §2: a failure status is followed by closing the connection.
            if (!this.#credentials!.check(a.value.username, a.value.password))
              return refuse('ERR_SOCKS_AUTH', userPassReply(false));
            socket.write(userPassReply(true));
            stage = 'request';
          } else {
            const r = decodeRequest(buf, 0);
            if (!r) return;
            const rest = buf.subarray(r.bytesRead);
            stop();
            socket.pause();
            const { command, target } = r.value;
            if (command === SOCKS_CMD.CONNECT) void this.#connect(socket, target, rest);
            else if (command === SOCKS_CMD.UDP_ASSOCIATE && this.#o.packetDialer)
              this.#associate(socket, this.#o.packetDialer);
            else refuse('ERR_SOCKS_COMMAND', replyBytes(SOCKS_REPLY.COMMAND_NOT_SUPPORTED));
          }
        }
      } catch (err) {
        const code = codeOf(err);
        // RFC 1928 §4/§6: an unknown address type in a request is answered 0x08.
        if (stage === 'request' && code === 'ERR_SOCKS_ADDR')
          return refuse(code, replyBytes(SOCKS_REPLY.ADDRESS_TYPE_NOT_SUPPORTED));
        refuse(code);
      }
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
  }

  async #connect(socket: Socket, target: Target, rest: Buffer): Promise<void> {
    // Cancel the dial when the client goes away or the server closes (close() aborts every pending
    // dial; one controller per dial, since AbortSignal.any costs tens of µs per connection).
    const abort = new AbortController();
    const onGone = (): void => abort.abort();
    socket.once('close', onGone);
    this.#dialing.add(abort);
    let up;
    try {
      up = await this.#o.dialer.dial(target, abort.signal);
    } catch (err) {
      // the message names the server or says 'target', never the destination (errors.ts)
      debug('dial failed: %s', (err as Error).message);
      this.#fail(codeOf(err));
      if (!socket.destroyed) endWith(socket, replyBytes(socksReplyFor(err)));
      return;
    } finally {
      this.#dialing.delete(abort);
      socket.off('close', onGone);
    }
    if (socket.destroyed) {
      up.destroy();
      return;
    }
    // No feedback crosses a tunnel, so the bound address is not known: 0.0.0.0:0.
    socket.write(replyBytes(SOCKS_REPLY.SUCCEEDED));
    if (rest.length > 0) up.write(rest);
    socket.resume();
    const result = await relay(
      socket,
      up,
      this.#o.idleTimeoutMs ? { idleTimeoutMs: this.#o.idleTimeoutMs } : {},
    );
    if (result.error) this.#fail(result.error.code);
  }

  #associate(control: Socket, packetDialer: PacketDialer): void {
    const clientIp = unmapped(control.remoteAddress);
    const host = this.#o.udpHost ?? unmapped(control.localAddress);
    const udp: UdpSocket = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    let clientPort = 0; // fixed by the first datagram from the client's address
    let session: PacketSession | null = null;
    let closed = false;
    let bound = false;
    const close = (lastWords?: Buffer): void => {
      if (closed) return;
      closed = true;
      session?.close();
      session = null;
      try {
        udp.close();
      } catch {
        /* never bound */
      }
      if (lastWords) endWith(control, lastWords);
      else control.destroy();
    };
    udp.on('error', (err: NodeJS.ErrnoException) => {
      debug('udp relay error %s', err.code);
      if (bound) return close();
      // Could not open the relay (e.g. udpHost is not an address of this machine): say so.
      this.#fail('ERR_LISTEN');
      close(replyBytes(SOCKS_REPLY.GENERAL_FAILURE));
    });
    udp.on('message', (msg, rinfo) => {
      // RFC 1928 §7: datagrams are accepted only from the client that asked for the association.
      if (unmapped(rinfo.address) !== clientIp) return;
      if (clientPort !== 0 && rinfo.port !== clientPort) return;
      let d;
      try {
        d = decodeUdpDatagram(msg);
      } catch {
        return;
      }
      // RFC 1928 §7: fragmentation is optional; an implementation without it drops fragments.
      if (d.frag !== 0) return;
      if (clientPort === 0) clientPort = rinfo.port;
      const to = rinfo.address;
      session ??= packetDialer.open((payload, from) => {
        if (!closed) udp.send(encodeUdpDatagram(from, payload), clientPort, to);
      });
      session.send(d.data, d.target);
    });
    udp.bind(0, host, () => {
      bound = true;
      if (control.destroyed) return void close();
      const a = udp.address();
      control.write(replyBytes(SOCKS_REPLY.SUCCEEDED, { host: unmapped(a.address), port: a.port }));
      // RFC 1928 §7: the association ends when the TCP connection it arrived on ends.
      control.on('data', () => {}); // nothing more is expected; read and discard
      control.on('end', () => close());
      control.resume();
    });
    control.on('close', () => close());
  }
}

/** Sends a last message and closes, giving the client LINGER_MS to close first. */
function endWith(socket: Socket, bytes: Buffer): void {
  socket.end(bytes);
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}
