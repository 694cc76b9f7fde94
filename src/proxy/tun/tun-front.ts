/**
 * The TUN front: turns the IP packets every app sends into the TUN device into connections through
 * the key's dialers, the way the "system" stacks of sing-box and Clash do — the kernel's own TCP
 * does the TCP, reached by address translation at the device:
 *
 * ```text
 *   app  A:sp ──▶ D:dp            (routed into the TUN device; read here)
 *        rewritten to  P:np ──▶ T:lp   and written back: the kernel delivers it to our listener
 *   listener T:lp ──▶ P:np        (read here: np names the session)
 *        rewritten to  D:dp ──▶ A:sp   and written back: the app sees its peer answer
 *   T = the device's address, P = the other address of its /30 (the "NAT peer"),
 *   lp = the listener's port, np = a port handed out per session.
 * ```
 * Each accepted connection is dialled to D:dp (by name when D is a fake address, see fake-dns.ts)
 * and relayed; a failed dial resets the app's connection (RST). MSS, windows, retransmission,
 * half-close and memory bounds are the kernel's and relay()'s. TCP and UDP to port 53 are answered
 * here by the fake DNS. Other UDP flows each get a PacketSession of the packet dialer, with an idle
 * timeout and a bounded table. IPv6 is translated the same way, with the device's IPv6 address and
 * NAT peer and a listener of its own, when `tunAddress6` is given; the NAT ports are shared by both
 * families. A ping (ICMP or ICMPv6 echo request) is answered at once with "destination unreachable,
 * administratively prohibited": no transport carries ICMP, so an echo reply would claim a
 * reachability nobody checked, and silence would make the app wait for its timeout. Fragments
 * (IPv4, or an IPv6 fragment header) are dropped and counted: the kernel never fragments the TCP
 * here, and a UDP datagram larger than the MTU is lost as on a link that drops it. Other IPv6
 * extension headers and other ICMP are dropped (docs/tun.md).
 * Nothing is logged with an address.
 * @module
 */
import { createServer, type Server, type Socket } from 'node:net';
import { debuglog } from 'node:util';
import {
  IP_PROTO,
  TCP_FLAG,
  decodeIpv4Flow,
  decodeIpv6Flow,
  encodeIpv4Udp,
  encodeIpv6Udp,
  encodeIpv4Unreachable,
  encodeIpv6Unreachable,
  ICMP_TYPE,
  ICMPV6_TYPE,
  ipv4Fragmented,
  ipv4IcmpType,
  ipv6Fragmented,
  ipv6IcmpType,
  ipVersion,
  rewriteIpv4Flow,
  rewriteIpv6Flow,
  u32ToIpv4,
  udpPayload,
  type Ipv4Flow,
  type Ipv6Flow,
} from '../../codec/ip-packet.js';
import { bytesToIPv6 } from '../../codec/socks-addr.js';
import { decodeDnsTcpFrame } from '../../codec/dns.js';
import { relay } from '../../transport/relay.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from '../../transport/types.js';
import type { FakeDns } from './fake-dns.js';

const debug = debuglog('ladder:tun');

/** NAT ports handed out per TCP session: [NAT_PORT_MIN, 65535]. */
const NAT_PORT_MIN = 1024;
/** A session whose connection has closed (or never came) is forgotten after this long without packets. */
const TCP_LINGER_MS = 60_000;
const SWEEP_MS = 5_000;
const DIAL_TIMEOUT_MS = 20_000;
/** A DNS-over-TCP connection answered here closes after this long without a query. */
const DNS_TCP_IDLE_MS = 10_000;
const MAX_DNS_TCP_BUFFER = 2 + 0xffff;
/** ICMP errors written back per second at most (an app flooding pings gets no more). */
const ICMP_ERRORS_PER_S = 100;
/** RFC 1812 §5.2.7.1 and RFC 4443 §3.1: communication administratively prohibited. */
const ICMP_PROHIBITED = 13;
const ICMPV6_PROHIBITED = 1;

/** Where packets go back into the stack. */
export interface PacketDevice {
  write(packet: Uint8Array): boolean;
}

export interface TunFrontOptions {
  device: PacketDevice;
  dialer: StreamDialer;
  packetDialer: PacketDialer;
  fakeDns: FakeDns;
  /** The TUN device's own IPv4 address (u32) and the other address of its /30. */
  tunAddress: number;
  natPeer: number;
  /** Destinations never carried (the client's own servers: a packet to them here is a loop). */
  excluded?: (ip: number) => boolean;
  /** The device's IPv6 address and the other address of its /126; without them IPv6 is dropped. */
  tunAddress6?: Uint8Array;
  natPeer6?: Uint8Array;
  /** IPv6 destinations never carried (16 bytes each). */
  excluded6?: (ip: Uint8Array) => boolean;
  /** TCP connections relayed or being dialled at once; more are reset (default 4096). */
  maxConnections?: number;
  /** UDP flows at once; the least recently used is closed for a new one (default 1024). */
  maxUdpFlows?: number;
  /** A UDP flow with no packet either way for this long is closed (default 60 s). */
  udpIdleMs?: number;
  /** Milliseconds now; injected in tests. */
  now?: () => number;
}

interface TcpSession {
  readonly src: number;
  readonly srcPort: number;
  readonly dst: number;
  readonly dstPort: number;
  readonly natPort: number;
  /** An IPv6 session's addresses (copies); src and dst are 0 then. */
  readonly v6: { readonly src: Uint8Array; readonly dst: Uint8Array } | undefined;
  last: number;
  /** The accepted connection is open (its session must not expire). */
  open: boolean;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface UdpFlow {
  session: PacketSession;
  readonly target: Target;
  last: number;
}

export interface TunFrontStats {
  tcpSessions: number;
  connections: number;
  udpFlows: number;
  /** Packets dropped, every reason (fragments and pings among them). */
  dropped: number;
  /** IP fragments dropped. */
  fragments: number;
  /** Pings answered "administratively prohibited". */
  pingsRefused: number;
}

export class TunFront {
  readonly #o: TunFrontOptions;
  readonly #now: () => number;
  readonly #maxConnections: number;
  readonly #maxUdpFlows: number;
  readonly #udpIdleMs: number;
  /** App source port → sessions from that port (almost always one). */
  readonly #byAppPort = new Map<number, TcpSession[]>();
  readonly #byNatPort: (TcpSession | undefined)[] = new Array(65536);
  #nextNatPort = NAT_PORT_MIN;
  #tcpSessions = 0;
  #connections = 0;
  #dropped = 0;
  #fragments = 0;
  #pingsRefused = 0;
  #icmpSecond = -1;
  #icmpInSecond = 0;
  readonly #udp = new Map<string, UdpFlow>();
  readonly #sockets = new Set<Socket>();
  readonly #servers: Server[] = [];
  #listenPort = 0;
  #listenPort6 = 0;
  readonly #natPeer6Text: string | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: TunFrontOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#maxConnections = o.maxConnections ?? 4096;
    this.#maxUdpFlows = o.maxUdpFlows ?? 1024;
    this.#udpIdleMs = o.udpIdleMs ?? 60_000;
    this.#natPeer6Text = o.natPeer6 ? bytesToIPv6(o.natPeer6) : undefined;
  }

  #listenOn(host: string): Promise<number> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) =>
      this.#onConnection(s),
    );
    server.on('error', (err) => debug('listener: %s', (err as NodeJS.ErrnoException).code));
    this.#servers.push(server);
    return new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: 0, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve((server.address() as { port: number }).port);
      });
    });
  }

  /**
   * Listens on the device's address (which must be assigned and up) on a port of the kernel's
   * choice, and on its IPv6 address when one is given. Returns the IPv4 listener's port.
   */
  async listen(): Promise<number> {
    this.#listenPort = await this.#listenOn(u32ToIpv4(this.#o.tunAddress));
    if (this.#o.tunAddress6)
      this.#listenPort6 = await this.#listenOn(bytesToIPv6(this.#o.tunAddress6));
    this.#sweep = setInterval(() => this.sweep(), SWEEP_MS);
    this.#sweep.unref();
    return this.#listenPort;
  }

  /** Uses `port` as the listener's port without listening (for tests that feed packets only). */
  setListenPort(port: number, port6 = port): void {
    this.#listenPort = port;
    this.#listenPort6 = port6;
  }

  stats(): TunFrontStats {
    return {
      tcpSessions: this.#tcpSessions,
      connections: this.#connections,
      udpFlows: this.#udp.size,
      dropped: this.#dropped,
      fragments: this.#fragments,
      pingsRefused: this.#pingsRefused,
    };
  }

  /**
   * One packet read from the device; the buffer is only valid during the call. Returns true when
   * the packet, rewritten in place, is to be written back into the device (the caller does that,
   * a batch at a time); replies that are new packets (DNS, UDP) are written here.
   */
  handlePacket(packet: Uint8Array): boolean {
    if (this.#closed) return false;
    const version = ipVersion(packet);
    if (version === 6) return this.#handle6(packet);
    if (version !== 4) return this.#drop('not IP');
    let f: Ipv4Flow | null;
    try {
      f = decodeIpv4Flow(packet);
    } catch {
      return this.#drop('malformed');
    }
    if (!f) {
      if (ipv4Fragmented(packet)) return this.#fragment();
      if (ipv4IcmpType(packet) === ICMP_TYPE.ECHO_REQUEST)
        return this.#refusePing(() => encodeIpv4Unreachable(packet, ICMP_PROHIBITED));
      return this.#drop('not TCP/UDP');
    }
    return f.protocol === IP_PROTO.TCP ? this.#tcp(packet, f) : this.#udpPacket(packet, f);
  }

  #handle6(packet: Uint8Array): boolean {
    if (!this.#o.tunAddress6) return this.#drop('IPv6, not carried');
    let f: Ipv6Flow | null;
    try {
      f = decodeIpv6Flow(packet);
    } catch {
      return this.#drop('malformed');
    }
    if (!f) {
      if (ipv6Fragmented(packet)) return this.#fragment();
      if (ipv6IcmpType(packet) === ICMPV6_TYPE.ECHO_REQUEST)
        return this.#refusePing(() => encodeIpv6Unreachable(packet, ICMPV6_PROHIBITED));
      return this.#drop('not TCP/UDP, or IPv6 extension headers');
    }
    return f.protocol === IP_PROTO.TCP ? this.#tcp6(packet, f) : this.#udp6(packet, f);
  }

  #tcp6(packet: Uint8Array, f: Ipv6Flow): boolean {
    const o = this.#o;
    const t6 = o.tunAddress6!;
    const p6 = o.natPeer6!;
    if (f.srcPort === this.#listenPort6 && sameBytes(f.src, t6) && sameBytes(f.dst, p6)) {
      const s = this.#byNatPort[f.dstPort];
      if (!s?.v6) return this.#drop('no session for a listener packet');
      s.last = this.#now();
      rewriteIpv6Flow(packet, f, s.v6.dst, s.dstPort, s.v6.src, s.srcPort);
      return true;
    }
    let s = this.#find6(f);
    if (!s) {
      if ((f.tcpFlags & (TCP_FLAG.SYN | TCP_FLAG.ACK)) !== TCP_FLAG.SYN)
        return this.#drop('no session');
      if (f.dstPort !== 53 && o.excluded6?.(f.dst)) return this.#drop('to a server of the client');
      s = this.#open(0, f.srcPort, 0, f.dstPort, {
        src: new Uint8Array(f.src),
        dst: new Uint8Array(f.dst),
      });
      if (!s) return this.#drop('NAT table full');
    }
    s.last = this.#now();
    rewriteIpv6Flow(packet, f, p6, s.natPort, t6, this.#listenPort6);
    return true;
  }

  #find6(f: Ipv6Flow): TcpSession | undefined {
    const list = this.#byAppPort.get(f.srcPort);
    if (!list) return undefined;
    for (const s of list)
      if (
        s.v6 &&
        s.dstPort === f.dstPort &&
        sameBytes(s.v6.src, f.src) &&
        sameBytes(s.v6.dst, f.dst)
      )
        return s;
    return undefined;
  }

  #fragment(): false {
    this.#fragments++;
    return this.#drop('a fragment');
  }

  /** Writes the ICMP error `reply()` builds for a ping, within {@link ICMP_ERRORS_PER_S}. */
  #refusePing(reply: () => Buffer): false {
    const second = Math.floor(this.#now() / 1000);
    if (second !== this.#icmpSecond) {
      this.#icmpSecond = second;
      this.#icmpInSecond = 0;
    }
    if (this.#icmpInSecond >= ICMP_ERRORS_PER_S) return this.#drop('ping, over the ICMP rate');
    this.#icmpInSecond++;
    this.#pingsRefused++;
    this.#o.device.write(reply());
    return this.#drop('ping, refused');
  }

  #drop(why: string): false {
    this.#dropped++;
    if (debug.enabled) debug('drop: %s', why);
    return false;
  }

  #tcp(packet: Uint8Array, f: Ipv4Flow): boolean {
    const o = this.#o;
    if (f.src === o.tunAddress && f.srcPort === this.#listenPort && f.dst === o.natPeer) {
      // From our listener back to an app.
      const s = this.#byNatPort[f.dstPort];
      if (!s) return this.#drop('no session for a listener packet');
      s.last = this.#now();
      rewriteIpv4Flow(packet, f, s.dst, s.dstPort, s.src, s.srcPort);
      return true;
    }
    if (f.dstPort !== 53 && o.excluded?.(f.dst)) return this.#drop('to a server of the client');
    let s = this.#find(f);
    if (!s) {
      // Only a SYN opens a session; anything else for an unknown flow is a leftover.
      if ((f.tcpFlags & (TCP_FLAG.SYN | TCP_FLAG.ACK)) !== TCP_FLAG.SYN)
        return this.#drop('no session');
      s = this.#open(f.src, f.srcPort, f.dst, f.dstPort, undefined);
      if (!s) return this.#drop('NAT table full');
    }
    s.last = this.#now();
    rewriteIpv4Flow(packet, f, o.natPeer, s.natPort, o.tunAddress, this.#listenPort);
    return true;
  }

  #find(f: Ipv4Flow): TcpSession | undefined {
    const list = this.#byAppPort.get(f.srcPort);
    if (!list) return undefined;
    for (const s of list)
      if (!s.v6 && s.src === f.src && s.dst === f.dst && s.dstPort === f.dstPort) return s;
    return undefined;
  }

  #open(
    src: number,
    srcPort: number,
    dst: number,
    dstPort: number,
    v6: TcpSession['v6'],
  ): TcpSession | undefined {
    const span = 65536 - NAT_PORT_MIN;
    if (this.#tcpSessions >= span) return undefined;
    let port = this.#nextNatPort;
    while (this.#byNatPort[port]) port = port === 65535 ? NAT_PORT_MIN : port + 1;
    this.#nextNatPort = port === 65535 ? NAT_PORT_MIN : port + 1;
    const s: TcpSession = {
      src,
      srcPort,
      dst,
      dstPort,
      natPort: port,
      v6,
      last: this.#now(),
      open: false,
    };
    this.#byNatPort[port] = s;
    const list = this.#byAppPort.get(srcPort);
    if (list) list.push(s);
    else this.#byAppPort.set(srcPort, [s]);
    this.#tcpSessions++;
    return s;
  }

  #forget(s: TcpSession): void {
    if (this.#byNatPort[s.natPort] !== s) return;
    this.#byNatPort[s.natPort] = undefined;
    const list = this.#byAppPort.get(s.srcPort);
    if (list) {
      const i = list.indexOf(s);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#byAppPort.delete(s.srcPort);
    }
    this.#tcpSessions--;
  }

  /** Forgets closed TCP sessions and idle UDP flows; runs every few seconds on its own. */
  sweep(): void {
    const now = this.#now();
    for (const list of [...this.#byAppPort.values()])
      for (const s of [...list]) if (!s.open && now - s.last > TCP_LINGER_MS) this.#forget(s);
    for (const [k, flow] of this.#udp)
      if (now - flow.last > this.#udpIdleMs) {
        flow.session.close();
        this.#udp.delete(k);
      }
  }

  #target6(dst: Uint8Array, port: number): Target | undefined {
    if (this.#o.fakeDns.isFake6(dst)) {
      const name = this.#o.fakeDns.nameOf6(dst);
      return name === undefined ? undefined : { host: name, port };
    }
    return { host: bytesToIPv6(dst), port };
  }

  #target(dst: number, port: number): Target | undefined {
    if (this.#o.fakeDns.isFake(dst)) {
      const name = this.#o.fakeDns.nameOf(dst);
      return name === undefined ? undefined : { host: name, port };
    }
    return { host: u32ToIpv4(dst), port };
  }

  #onConnection(socket: Socket): void {
    const peer = socket.remoteAddress;
    const fromPeer =
      socket.remotePort !== undefined &&
      (peer === u32ToIpv4(this.#o.natPeer) || (peer !== undefined && peer === this.#natPeer6Text));
    const s = fromPeer ? this.#byNatPort[socket.remotePort!] : undefined;
    // The session must be of the listener's family: a v4 session's port reached over v6 is no match.
    const target =
      s && (s.v6 !== undefined) === (peer === this.#natPeer6Text)
        ? s.v6
          ? this.#target6(s.v6.dst, s.dstPort)
          : this.#target(s.dst, s.dstPort)
        : undefined;
    if (!s || !target || this.#closed || this.#connections >= this.#maxConnections) {
      this.#drop(s ? 'connection limit, or an address no name stands for' : 'no session');
      socket.resetAndDestroy();
      return;
    }
    s.open = true;
    this.#connections++;
    this.#sockets.add(socket);
    socket.once('close', () => {
      s.open = false;
      s.last = this.#now();
      this.#connections--;
      this.#sockets.delete(socket);
    });
    socket.on('error', () => {});
    if (s.dstPort === 53) return this.#dnsOverTcp(socket);
    void this.#carry(socket, target);
  }

  async #carry(socket: Socket, target: Target): Promise<void> {
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    socket.once('close', onClose);
    const timer = setTimeout(() => abort.abort(), DIAL_TIMEOUT_MS);
    let up;
    try {
      up = await this.#o.dialer.dial(target, abort.signal);
    } catch (err) {
      debug('dial: %s', (err as { code?: string }).code ?? 'error');
      if (!socket.destroyed) socket.resetAndDestroy();
      return;
    } finally {
      clearTimeout(timer);
      socket.off('close', onClose);
    }
    if (socket.destroyed) {
      up.destroy();
      return;
    }
    const done = relay(socket, up);
    socket.resume();
    const r = await done;
    if (r.error) debug('relay: %s', r.error.code);
  }

  /** DNS over TCP to any address: answered here (RFC 7766 framing), never sent anywhere. */
  #dnsOverTcp(socket: Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    socket.setTimeout(DNS_TCP_IDLE_MS, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > MAX_DNS_TCP_BUFFER) return socket.destroy();
      for (;;) {
        const frame = decodeDnsTcpFrame(buf, 0);
        if (!frame) break;
        buf = buf.subarray(frame.bytesRead);
        const answer = this.#o.fakeDns.answer(frame.value);
        if (!answer) return socket.destroy();
        const len = Buffer.alloc(2);
        len.writeUInt16BE(answer.length);
        socket.write(Buffer.concat([len, answer]));
      }
    });
    socket.on('end', () => socket.end());
    socket.resume();
  }

  /** UDP: always false, a reply is a new packet written here. */
  #udpPacket(packet: Uint8Array, f: Ipv4Flow): false {
    const o = this.#o;
    const payload = udpPayload(packet, f);
    if (f.dstPort === 53) {
      const answer = o.fakeDns.answer(payload);
      if (answer) o.device.write(encodeIpv4Udp(f.dst, 53, f.src, f.srcPort, answer));
      else this.#drop('not a DNS query');
      return false;
    }
    if (o.excluded?.(f.dst)) return this.#drop('to a server of the client');
    const { src, srcPort, dst, dstPort } = f;
    return this.#udpSend(`${src}:${srcPort}>${dst}:${dstPort}`, payload, () => {
      const target = this.#target(dst, dstPort);
      // Replies come from the flow's own destination, whatever address the server reports: a
      // connected UDP socket in the app accepts nothing else.
      return target && { target, wrap: (r) => encodeIpv4Udp(dst, dstPort, src, srcPort, r) };
    });
  }

  #udp6(packet: Uint8Array, f: Ipv6Flow): false {
    const o = this.#o;
    const payload = udpPayload(packet, f);
    if (f.dstPort === 53) {
      const answer = o.fakeDns.answer(payload);
      if (answer) o.device.write(encodeIpv6Udp(f.dst, 53, f.src, f.srcPort, answer));
      else this.#drop('not a DNS query');
      return false;
    }
    const { srcPort, dstPort } = f;
    const key = `${Buffer.from(f.src.buffer, f.src.byteOffset, 16).toString('hex')}:${srcPort}>${Buffer.from(f.dst.buffer, f.dst.byteOffset, 16).toString('hex')}:${dstPort}`;
    return this.#udpSend(key, payload, () => {
      if (o.excluded6?.(f.dst)) return undefined;
      const src = new Uint8Array(f.src); // copies: f.src is a view into the batch
      const dst = new Uint8Array(f.dst);
      const target = this.#target6(dst, dstPort);
      return target && { target, wrap: (r) => encodeIpv6Udp(dst, dstPort, src, srcPort, r) };
    });
  }

  /**
   * Sends a UDP payload on the flow `key`, opening it with what `create` says (the target, and how
   * a reply becomes a packet) when there is none; `create` returning undefined drops the packet.
   */
  #udpSend(
    key: string,
    payload: Uint8Array,
    create: () => { target: Target; wrap: (reply: Buffer) => Buffer } | undefined,
  ): false {
    const o = this.#o;
    let flow = this.#udp.get(key);
    if (flow) {
      this.#udp.delete(key); // Map order is recency
      this.#udp.set(key, flow);
    } else {
      const c = create();
      if (!c) return this.#drop('to a server of the client, or an address no name stands for');
      if (this.#udp.size >= this.#maxUdpFlows) {
        const [k, oldest] = this.#udp.entries().next().value as [string, UdpFlow];
        oldest.session.close();
        this.#udp.delete(k);
      }
      const created = { target: c.target, last: this.#now() } as UdpFlow;
      created.session = o.packetDialer.open((reply) => {
        if (this.#closed) return;
        created.last = this.#now();
        try {
          o.device.write(c.wrap(reply));
        } catch {
          this.#drop('reply too large');
        }
      });
      flow = created;
      this.#udp.set(key, flow);
    }
    flow.last = this.#now();
    // The payload is a view into the device's batch: the dialer may keep it past this call.
    flow.session.send(Buffer.from(payload), flow.target);
    return false;
  }

  /** Stops listening, resets every connection and closes every UDP flow. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep) clearInterval(this.#sweep);
    for (const flow of this.#udp.values()) flow.session.close();
    this.#udp.clear();
    for (const s of this.#sockets) s.destroy();
    await Promise.all(
      this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }
}
