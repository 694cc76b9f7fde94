/**
 * The local SOCKS5 front end (RFC 1928, RFC 1929): CONNECT and UDP ASSOCIATE, no-auth or
 * username/password, carried by any StreamDialer/PacketDialer (the tunnel, or direct in tests).
 * Failures become the proper reply code; nothing is logged with an address.
 * @module
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { timingSafeEqual, createHash } from 'node:crypto';
import { debuglog } from 'node:util';
import { CodecError, LadderError, type ErrorCode } from '../errors.js';
import {
  SOCKS_CMD,
  SOCKS_METHOD,
  SOCKS_REPLY,
  decodeGreeting,
  decodeRequest,
  decodeUdpDatagram,
  decodeUserPass,
  encodeReply,
  encodeUdpDatagram,
  methodSelection,
  userPassReply,
} from '../codec/socks5.js';
import { relay } from '../transport/relay.js';
import type { PacketDialer, PacketSession, StreamDialer } from '../transport/types.js';

const debug = debuglog('ladder:socks5');
/** A handshake never needs more than this (greeting 257 + auth 513 + request 262). */
const MAX_HANDSHAKE_BYTES = 2048;

/** RFC 1928 §6 reply code for a failed dial. */
export function socksReplyFor(err: unknown): number {
  const code: ErrorCode | undefined = err instanceof LadderError ? err.code : undefined;
  switch (code) {
    case 'ERR_DIAL_REFUSED':
      return SOCKS_REPLY.CONNECTION_REFUSED;
    case 'ERR_DIAL_UNREACHABLE':
      return SOCKS_REPLY.NETWORK_UNREACHABLE;
    case 'ERR_DIAL_DNS':
      return SOCKS_REPLY.HOST_UNREACHABLE;
    case 'ERR_DIAL_TIMEOUT':
      return SOCKS_REPLY.TTL_EXPIRED;
    case 'ERR_DIAL_FORBIDDEN':
      return SOCKS_REPLY.NOT_ALLOWED;
    case 'ERR_SERVER_UNREACHABLE':
      return SOCKS_REPLY.NETWORK_UNREACHABLE;
    default:
      return SOCKS_REPLY.GENERAL_FAILURE;
  }
}

export interface Socks5ServerOptions {
  dialer: StreamDialer;
  packetDialer?: PacketDialer;
  /** username → password; when set, only username/password authentication is accepted. */
  users?: ReadonlyMap<string, string>;
  /** Close a connection that has not finished its handshake after this long (default 10 s). */
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  onError?: (code: ErrorCode) => void;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class Socks5Server {
  readonly #o: Socks5ServerOptions;
  readonly #users: { name: Buffer; pass: Buffer }[] | null;
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;

  constructor(options: Socks5ServerOptions) {
    this.#o = options;
    this.#users = options.users
      ? [...options.users].map(([u, p]) => ({ name: digest(u), pass: digest(p) }))
      : null;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.handle(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new LadderError(
            'ERR_LISTEN',
            err.code === 'EADDRINUSE'
              ? `SOCKS5 ${host}:${port} is already in use; choose another with --socks`
              : `SOCKS5 ${host}:${port}: ${err.message}`,
            { cause: err },
          ),
        ),
      );
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
    server.on('error', (e) => debug('listener error %s', e.message));
    this.#server = server;
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    for (const c of this.#sockets) c.destroy();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  #checkUser(username: string, password: string): boolean {
    const u = digest(username);
    const p = digest(password);
    let ok = false;
    for (const e of this.#users ?? [])
      if (timingSafeEqual(e.name, u) && timingSafeEqual(e.pass, p)) ok = true;
    return ok;
  }

  /** Serves one accepted connection. */
  handle(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let stage: 'greeting' | 'auth' | 'request' | 'done' = 'greeting';
    const timer = setTimeout(() => socket.destroy(), this.#o.handshakeTimeoutMs ?? 10_000);
    timer.unref();
    const fail = (code: ErrorCode, reply?: Buffer): void => {
      stage = 'done';
      clearTimeout(timer);
      socket.off('data', onData);
      this.#o.onError?.(code);
      if (reply) socket.end(reply);
      else socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]); // handshake only: a few hundred bytes at most
      if (buf.length > MAX_HANDSHAKE_BYTES) return fail('ERR_SOCKS_VERSION');
      try {
        for (;;) {
          if (stage === 'greeting') {
            const g = decodeGreeting(buf, 0);
            if (!g) return;
            buf = buf.subarray(g.bytesRead);
            const want = this.#users ? SOCKS_METHOD.USERNAME_PASSWORD : SOCKS_METHOD.NO_AUTH;
            if (!g.value.includes(want))
              return fail('ERR_SOCKS_AUTH', methodSelection(SOCKS_METHOD.NO_ACCEPTABLE));
            socket.write(methodSelection(want));
            stage = this.#users ? 'auth' : 'request';
          } else if (stage === 'auth') {
            const a = decodeUserPass(buf, 0);
            if (!a) return;
            buf = buf.subarray(a.bytesRead);
            if (!this.#checkUser(a.value.username, a.value.password))
              return fail('ERR_SOCKS_AUTH', userPassReply(false));
            socket.write(userPassReply(true));
            stage = 'request';
          } else if (stage === 'request') {
            let r;
            try {
              r = decodeRequest(buf, 0);
            } catch (err) {
              if (err instanceof CodecError && err.code === 'ERR_SOCKS_ADDR') {
                return fail('ERR_SOCKS_ADDR', encodeReply(SOCKS_REPLY.ADDRESS_TYPE_NOT_SUPPORTED));
              }
              throw err;
            }
            if (!r) return;
            const rest = buf.subarray(r.bytesRead);
            stage = 'done';
            clearTimeout(timer);
            socket.off('data', onData);
            socket.pause();
            if (r.value.command === SOCKS_CMD.CONNECT)
              void this.#connect(socket, r.value.target, rest);
            else if (r.value.command === SOCKS_CMD.UDP_ASSOCIATE && this.#o.packetDialer)
              this.#associate(socket, this.#o.packetDialer);
            else fail('ERR_SOCKS_COMMAND', encodeReply(SOCKS_REPLY.COMMAND_NOT_SUPPORTED));
            return;
          } else return;
        }
      } catch (err) {
        fail(err instanceof LadderError ? err.code : 'ERR_SOCKS_VERSION');
      }
    };
    socket.on('data', onData);
  }

  async #connect(
    socket: Socket,
    target: { host: string; port: number },
    rest: Buffer,
  ): Promise<void> {
    let up;
    try {
      up = await this.#o.dialer.dial(target);
    } catch (err) {
      this.#o.onError?.(err instanceof LadderError ? err.code : 'ERR_DIAL');
      if (!socket.destroyed) socket.end(encodeReply(socksReplyFor(err)));
      return;
    }
    if (socket.destroyed) {
      up.destroy();
      return;
    }
    // No feedback crosses a Shadowsocks tunnel, so the bound address is not known: 0.0.0.0:0.
    socket.write(encodeReply(SOCKS_REPLY.SUCCEEDED));
    if (rest.length > 0) up.write(rest);
    socket.resume();
    await relay(socket, up, this.#o.idleTimeoutMs ? { idleTimeoutMs: this.#o.idleTimeoutMs } : {});
  }

  #associate(control: Socket, packetDialer: PacketDialer): void {
    const clientIp = control.remoteAddress ?? '';
    const family = control.localFamily === 'IPv6' ? 'udp6' : 'udp4';
    const udp: UdpSocket = createSocket(family);
    let client: RemoteInfo | null = null;
    let session: PacketSession | null = null;
    const close = (): void => {
      session?.close();
      session = null;
      try {
        udp.close();
      } catch {
        /* already closed */
      }
    };
    udp.on('error', close);
    udp.on('message', (msg, rinfo) => {
      // RFC 1928 §7: accept datagrams only from the client that asked for the association.
      if (rinfo.address !== clientIp) return;
      let d;
      try {
        d = decodeUdpDatagram(msg);
      } catch {
        return;
      }
      if (d.frag !== 0) return; // fragmentation is optional; we drop fragments as §7 allows
      client = rinfo;
      session ??= packetDialer.open((payload, from) => {
        if (client) udp.send(encodeUdpDatagram(from, payload), client.port, client.address);
      });
      session.send(d.data, d.target);
    });
    udp.bind(0, control.localAddress, () => {
      const a = udp.address();
      control.write(encodeReply(SOCKS_REPLY.SUCCEEDED, { host: a.address, port: a.port }));
      control.resume();
    });
    // The association lives as long as the control connection (§7).
    control.on('data', () => {});
    control.on('end', () => control.end());
    control.on('close', close);
  }
}
