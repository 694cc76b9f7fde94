/**
 * The Shadowsocks server: one TCP port and the same UDP port, any number of access keys of any
 * supported method at once.
 *
 * Probe resistance (docs/probe-resistance.md): every failure before authentication — no key opens
 * the request, a replayed salt, a bad timestamp, bad padding, short or random data — gets one
 * behaviour: the server never writes a byte, keeps reading and discarding, and closes only when the
 * fixed `authTimeoutMs` since the connection opened has passed or when the peer closes. A request
 * that is valid but slow gets exactly the same treatment until it completes.
 *
 * Privacy: nothing here logs a destination or a client address. Client addresses live only in
 * memory, for the "key that last matched" hint and UDP return paths, and are never written out.
 * @module
 */
import {
  DEFAULT_AUTH_TIMEOUT_MS,
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
} from '../core/defaults.js';
import { createServer, type Server, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { randomBytes } from 'node:crypto';
import { debuglog } from 'node:util';
import { LadderError, type ErrorCode } from '../errors.js';
import { RotatingSaltFilter, SaltPool, SlidingWindow } from '../crypto/replay.js';
import {
  SsKeyTable,
  SsTcpAcceptor,
  maxAcceptBytes,
  type AcceptedTcp,
  type Random,
  type ReplayGuard,
  type SsServerKey,
} from '../codec/ss-tcp.js';
import { ScratchSlot } from '../codec/ss-stream.js';
import {
  encodeUdp2017,
  encodeUdp2022,
  openTrialUdp,
  openUdpRequest,
  type OpenedUdpRequest,
} from '../codec/ss-udp.js';
import { TrialBudget, sourcePrefix, type TrialBudgetOptions } from './udp-trial-budget.js';
import { CodecDuplex, type SocketLike } from '../stream/codec-duplex.js';
import { CountingGate, type AccessGate, type Lease } from './access/gate.js';
import { PreAuthGuard, readFirstBytes, settlePreAuth, type FirstBytes } from './pre-auth.js';
import { relay } from '../transport/relay.js';
import { describeAddress, listenError, listenTcp } from '../transport/listen.js';
import {
  systemClock,
  type Clock,
  type PacketDialer,
  type PacketSession,
  type StreamDialer,
  type Target,
} from '../transport/types.js';

const debug = debuglog('ladder:server');

/**
 * Keys one connection tries per turn of the event loop before yielding: with thousands of keys, a
 * crowd of new clients (or of probes) would otherwise hold the loop for seconds at a time, and
 * every timer and read of the connections already served would wait.
 */
const TRIALS_PER_TURN = 256;

/** What the server reports; the operator layer turns these into metrics. Never addresses. */
export interface ServerEvents {
  /**
   * A connection or datagram failed before authentication (a rejected probe, a stray, a replay),
   * with the reason's code.
   */
  rejected?(code: ErrorCode, transport: 'tcp' | 'udp'): void;
  /** @deprecated the old name of {@link ServerEvents.rejected}; called too when set. */
  probe?(code: ErrorCode, transport: 'tcp' | 'udp'): void;
  /** A TCP connection authenticated with `keyId` after `handshakeMs`. */
  accepted?(keyId: string, handshakeMs: number): void;
  /** A TCP connection of `keyId` ended, having carried `up` bytes client→target and `down` back. */
  closed?(keyId: string, up: number, down: number, code?: ErrorCode): void;
  /** UDP payload bytes for `keyId`. */
  udpBytes?(keyId: string, up: number, down: number): void;
}

export interface SsServerOptions {
  keys: readonly SsServerKey[];
  /** Opens connections to targets (usually a DirectDialer). */
  dialer: StreamDialer;
  /** Sends datagrams to targets; without it the UDP relay is off. */
  packetDialer?: PacketDialer;
  clock?: Clock;
  /** Monotonic milliseconds, for replay windows and budgets (default `performance.now`). */
  monotonicNow?: () => number;
  random?: Random;
  /** A connection that has not authenticated after this long is closed, whatever it sent (default 60 s). */
  authTimeoutMs?: number;
  /** An authenticated connection with no bytes either way for this long is closed (default 5 min). */
  idleTimeoutMs?: number;
  /** Connections at once; more are refused at accept (default 8192). */
  maxConnections?: number;
  /** A UDP session with no packets for this long is forgotten (default 2 min; SIP022 needs ≥ 60 s). */
  udpTimeoutMs?: number;
  /** UDP sessions at once (default 4096); the least recently active goes first. */
  maxUdpSessions?: number;
  /** Rates of the UDP trial-decryption budget (udp-trial-budget.ts). */
  udpTrialBudget?: TrialBudgetOptions;
  events?: ServerEvents;
  /** Admits authenticated keys and takes their byte counts (default: admit all, count nothing). */
  gate?: AccessGate;
  /**
   * The deadline and caps for connections without a key on the server's own TCP listener (default:
   * a guard of its own whose deadline is `authTimeoutMs`); share one across listeners.
   */
  preAuth?: PreAuthGuard;
}

/**
 * For a port that also serves TLS (port-mux.ts): instead of the probe rule, a connection that has
 * not authenticated is handed over, with every byte it sent, to something else (the TLS stack the
 * decoy site sits behind), so that it reacts as that does.
 */
export interface PreAuthHandover {
  /**
   * Each chunk before Shadowsocks reads it (Shadowsocks may decrypt it in place: copy what you
   * keep), and whether Shadowsocks still lacks bytes to decide once it has read it.
   */
  bytes(chunk: Buffer): void;
  /** Shadowsocks has read every byte so far and cannot decide yet. */
  undecided(): void;
  /** The connection authenticated: it stays with Shadowsocks. */
  authenticated(): void;
  /**
   * The connection is yours (its listeners removed, paused): Shadowsocks refused it (any
   * pre-authentication failure, a key its gate refuses), the peer ended it before it
   * authenticated (`ended`), or you asked for it (`release`).
   */
  take(socket: Duplex, ended: boolean): void;
}

/** What handleConnection returns with a handover: `release` takes an undecided connection now. */
export interface PreAuthControl {
  release(): void;
}

interface UdpSession {
  readonly id: string;
  readonly key: SsServerKey;
  readonly out: PacketSession;
  readonly lease: Lease;
  client: RemoteInfo;
  lastSeen: number;
  // 2022 only
  readonly window?: SlidingWindow;
  readonly clientSessionId?: Buffer;
  readonly serverSessionId?: Buffer;
  serverPacketId: bigint;
}

/** A bounded map that forgets its oldest entries: the per-client "last key that matched" hint. */
class HintMap<V> {
  readonly #map = new Map<string, V>();
  readonly #cap: number;
  constructor(cap: number) {
    this.#cap = cap;
  }
  get(k: string): V | undefined {
    return this.#map.get(k);
  }
  set(k: string, v: V): void {
    this.#map.delete(k);
    this.#map.set(k, v);
    if (this.#map.size > this.#cap) this.#map.delete(this.#map.keys().next().value!);
  }
  /** Forgets the entries whose value fails `keep`. */
  retain(keep: (v: V) => boolean): void {
    for (const [k, v] of this.#map) if (!keep(v)) this.#map.delete(k);
  }
}

export class SsServer {
  #table: SsKeyTable;
  readonly #o: Required<
    Omit<
      SsServerOptions,
      'packetDialer' | 'events' | 'keys' | 'gate' | 'udpTrialBudget' | 'preAuth'
    >
  > &
    Pick<SsServerOptions, 'packetDialer'>;
  readonly #events: ServerEvents;
  readonly #gate: AccessGate;
  readonly #preAuth: PreAuthGuard;
  /** AEAD-2017 TCP request salts (replay.ts states the window). */
  readonly #replay2017: RotatingSaltFilter;
  /** Our own AEAD-2017 response salts, so that a response reflected back at us is recognised. */
  readonly #ownSalts2017: RotatingSaltFilter;
  /**
   * AEAD-2017 UDP salts, both the clients' and our own responses': every datagram carries a fresh
   * salt, so one seen before is a replay (or a reflection) from whatever address it comes.
   */
  readonly #replayUdp2017: RotatingSaltFilter;
  readonly #replay2022 = new SaltPool();
  readonly #budget: TrialBudget;
  readonly #guard: ReplayGuard;
  readonly #tcpHint = new HintMap<SsServerKey>(10_000);
  /** One output buffer for every connection's responses (codec/ss-stream.ts ScratchSlot). */
  readonly #scratch = new ScratchSlot();
  readonly #udpHint = new HintMap<SsServerKey>(10_000);
  readonly #sockets = new Set<Duplex>();
  readonly #udpSessions = new Map<string, UdpSession>();
  #tcp: Server | null = null;
  #udp: UdpSocket | null = null;
  #sweep: NodeJS.Timeout | null = null;
  #closing = false;

  constructor(options: SsServerOptions) {
    this.#table = new SsKeyTable(options.keys);
    this.#o = {
      dialer: options.dialer,
      packetDialer: options.packetDialer,
      clock: options.clock ?? systemClock,
      monotonicNow: options.monotonicNow ?? (() => performance.now()),
      random: options.random ?? randomBytes,
      authTimeoutMs: options.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      udpTimeoutMs: Math.max(options.udpTimeoutMs ?? 120_000, 1_000),
      maxUdpSessions: options.maxUdpSessions ?? 4096,
    };
    this.#events = options.events ?? {};
    this.#gate = options.gate ?? new CountingGate();
    this.#preAuth = options.preAuth ?? new PreAuthGuard({ deadlineMs: this.#o.authTimeoutMs });
    const mono = this.#o.monotonicNow;
    // Filter secrets come from the system, not the injectable `random`: a seeded source in a test
    // keeps producing the same wire bytes whether or not the server holds filters.
    this.#replay2017 = new RotatingSaltFilter(randomBytes(16));
    this.#ownSalts2017 = new RotatingSaltFilter(randomBytes(16));
    this.#replayUdp2017 = new RotatingSaltFilter(randomBytes(16));
    this.#budget = new TrialBudget(options.udpTrialBudget, mono());
    this.#guard = {
      addSalt2017: (s) => this.#replay2017.add(s, mono()),
      isOwnSalt2017: (s) => this.#ownSalts2017.has(s, mono()),
      // The ±30 s timestamp check uses wall time (SIP022), so a salt stays pooled until both the
      // wall and the monotonic clock say 60 s have passed: a clock step cannot let a replay in.
      addSalt2022: (s, nowMs) => this.#replay2022.add(s, nowMs, mono()),
    };
  }

  /** Reports a pre-authentication failure (ServerEvents.rejected, and the old name `probe`). */
  #rejected(code: ErrorCode, transport: 'tcp' | 'udp'): void {
    this.#events.rejected?.(code, transport);
    this.#events.probe?.(code, transport);
  }

  /** Replaces the set of keys; connections already open keep theirs. */
  setKeys(keys: readonly SsServerKey[]): void {
    const table = new SsKeyTable(keys);
    this.#table = table;
    // Each client keeps the key it last matched while that key is still served: a rebuild (any
    // key's change, in a fleet many a minute) must not send every client's next connection
    // through a trial over all the keys. A key that left the table is forgotten.
    const served = (k: SsServerKey): boolean => table.has(k);
    this.#tcpHint.retain(served);
    this.#udpHint.retain(served);
  }

  /** The clock the server times connections by (`handleConnection`'s `startedAt` is on it). */
  get clock(): Clock {
    return this.#o.clock;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#sockets.size;
  }

  /** Binds TCP, then UDP on the same port (when a packet dialer is set). Rejects with ERR_LISTEN naming the address. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const tcp = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) => {
      if (this.#preAuth.admit(s, s.remoteAddress)) this.#onConnection(s);
    });
    tcp.maxConnections = this.#o.maxConnections;
    await listenTcp(tcp, host, port, 'TCP', '--listen');
    this.#tcp = tcp;
    tcp.on('error', (err) => debug('tcp listener error %s', err.message));
    const addr = tcp.address() as AddressInfo;
    if (this.#o.packetDialer) {
      try {
        await this.listenUdp(host, addr.port);
      } catch (err) {
        tcp.close();
        this.#tcp = null;
        throw err;
      }
    }
    return addr;
  }

  /** Binds the UDP relay alone (when another listener owns the TCP port, e.g. the port mux). */
  async listenUdp(host: string, port: number): Promise<void> {
    if (!this.#o.packetDialer) return;
    const udp = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', (err: NodeJS.ErrnoException) =>
        reject(listenError(err, describeAddress('UDP', host, port), '--listen')),
      );
      udp.bind({ address: host, port, exclusive: true }, () => resolve());
    });
    udp.on('error', (err) => debug('udp error %s', err.message));
    udp.on('message', (msg, rinfo) => this.#onDatagram(udp, msg, rinfo));
    this.#udp = udp;
    this.#sweep = setInterval(() => this.#sweepUdp(), Math.min(10_000, this.#o.udpTimeoutMs / 2));
    this.#sweep.unref();
  }

  /**
   * Serves a connection accepted elsewhere (the port mux), whose first bytes `head` were already
   * read; `startedAt` is when it was accepted on {@link clock}, so the authentication timeout stays
   * the same. Any Duplex will do: a TCP socket, or a WebSocket stream or Mux.Cool session carrying
   * the same Shadowsocks stream (v2ray-plugin), which then gets the same keys, replay filters and
   * probe rule.
   */
  handleConnection(
    socket: Duplex,
    head?: Buffer,
    startedAt?: number,
    handover?: PreAuthHandover,
  ): PreAuthControl {
    return this.#onConnection(socket, head, startedAt, handover);
  }

  /**
   * Stops accepting, lets open connections finish for up to `graceMs`, then closes the rest.
   */
  async close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const tcp = this.#tcp;
    const closed = tcp ? new Promise<void>((r) => tcp.close(() => r())) : Promise.resolve();
    if (this.#sweep) clearInterval(this.#sweep);
    this.#udp?.close();
    this.#udp = null;
    for (const s of this.#udpSessions.values()) {
      s.out.close();
      s.lease.close();
    }
    this.#udpSessions.clear();
    const deadline = Date.now() + graceMs;
    while (this.#sockets.size > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  // ------------------------------------------------------------------------------- TCP

  #onConnection(
    conn: Duplex,
    head?: Buffer,
    startedAt?: number,
    handover?: PreAuthHandover,
  ): PreAuthControl {
    const socket = conn as SocketLike & { remoteAddress?: string | undefined };
    const control: PreAuthControl = { release: () => {} };
    if (this.#closing) {
      socket.destroy();
      return control;
    }
    const started = startedAt ?? this.#o.clock.now();
    this.#sockets.add(socket);
    socket.setNoDelay?.(true);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', (err) =>
      debug('client socket error %s', (err as NodeJS.ErrnoException).code ?? err.message),
    );
    const client = socket.remoteAddress ?? '';
    const acceptor = new SsTcpAcceptor(
      this.#table,
      this.#guard,
      this.#o.random,
      this.#tcpHint.get(client),
      this.#scratch,
      TRIALS_PER_TURN,
    );
    const limit = maxAcceptBytes();
    // The one timer a pre-auth connection has: it closes at this fixed time whatever happens.
    const authTimer = setTimeout(
      () => {
        if (!failed) this.#rejected('ERR_PROBE_TIMEOUT', 'tcp');
        socket.destroy();
      },
      Math.max(0, this.#o.authTimeoutMs - (this.#o.clock.now() - started)),
    );
    authTimer.unref();
    let failed = false;
    let handedOver = false;
    // With a handover (a port that also serves TLS), the connection leaves with every byte it sent.
    const handOver = (fb: FirstBytes, ended: boolean): void => {
      if (handedOver) return;
      handedOver = true;
      clearTimeout(authTimer);
      fb.stop();
      this.#sockets.delete(socket);
      handover!.take(socket, ended);
    };
    // Every failure before authentication, and a key its gate refuses, ends here: read and drop
    // until the fixed timer or the peer closes (or, with a handover, leave at once).
    const fail = (fb: FirstBytes, code: ErrorCode): void => {
      failed = true;
      this.#rejected(code, 'tcp');
      debug('pre-auth failure %s', code);
      if (handover) {
        handOver(fb, false);
        return;
      }
      fb.stop();
      socket.on('data', discard);
      socket.once('end', () => {
        clearTimeout(authTimer);
        socket.destroy();
      });
      socket.resume();
    };
    let decided = false;
    let resumeSoon = false;
    const step = (fb: FirstBytes, chunk: Buffer | null): void => {
      if (decided || handedOver) return;
      let accepted: AcceptedTcp | null;
      try {
        const now = this.#o.clock.now();
        accepted = chunk ? acceptor.push(chunk, now) : acceptor.resume(now);
        if (accepted === null && acceptor.buffered > limit)
          throw new LadderError('ERR_CIPHER', 'request too long');
      } catch (err) {
        decided = true;
        fail(fb, err instanceof LadderError ? err.code : 'ERR_CODEC');
        return;
      }
      if (accepted === null) {
        // More keys to try with these bytes: the next ones after other work of this turn (other
        // connections' reads, timers), so that trials over many keys never stall the server.
        if (acceptor.deferred) {
          if (!resumeSoon) {
            resumeSoon = true;
            setImmediate(() => {
              resumeSoon = false;
              if (!socket.destroyed) step(fb, null);
            });
          }
          return;
        }
        handover?.undecided();
        return;
      }
      decided = true;
      const lease = this.#gate.open(accepted.key.id, client, 'tcp');
      if (!lease) {
        fail(fb, 'ERR_ACCESS_DENIED');
        return;
      }
      fb.stop();
      clearTimeout(authTimer);
      settlePreAuth(socket);
      handover?.authenticated();
      this.#tcpHint.set(client, accepted.key);
      this.#events.accepted?.(accepted.key.id, this.#o.clock.now() - started);
      void this.#serve(socket, accepted, lease);
    };
    const onChunk = (fb: FirstBytes, chunk: Buffer): void => {
      handover?.bytes(chunk);
      step(fb, chunk);
    };
    // Still waiting to authenticate, the loop reads on; once `head` alone authenticated, #serve
    // resumes the socket after its reader is attached (resuming earlier would drop buffered bytes).
    const firstBytes = readFirstBytes(socket, {
      ...(head ? { head } : {}),
      // The acceptor keeps what it was given: each read goes to it at once, alone.
      onBytes: (fb) => onChunk(fb, fb.q.takeAll()),
      // A peer that closes before authenticating gets its close back, and nothing else (with a
      // handover: its end goes along with its bytes).
      onEnd: (fb) => {
        if (!failed) this.#rejected('ERR_PROBE_SHORT', 'tcp');
        if (handover) {
          handOver(fb, true);
          return;
        }
        clearTimeout(authTimer);
        socket.destroy();
      },
    });
    control.release = () => {
      if (!failed && !handedOver && !firstBytes.stopped) handOver(firstBytes, false);
    };
    return control;
  }

  async #serve(socket: SocketLike, a: AcceptedTcp, lease: Lease): Promise<void> {
    const keyId = a.key.id;
    const clock = this.#o.clock;
    let revoked = false;
    // Revoking closes both sides; the relay then ends and closes the lease.
    let sides: import('node:stream').Duplex[] = [socket];
    lease.onRevoke(() => {
      revoked = true;
      for (const s of sides) s.destroy();
    });
    let up: import('node:stream').Duplex;
    try {
      up = await this.#o.dialer.dial(a.target);
    } catch (err) {
      const code = err instanceof LadderError ? err.code : 'ERR_DIAL';
      debug('dial failed %s', code);
      socket.destroy();
      lease.close();
      this.#events.closed?.(keyId, 0, 0, code);
      return;
    }
    if (revoked || socket.destroyed) {
      up.destroy();
      lease.close();
      this.#events.closed?.(keyId, 0, 0);
      return;
    }
    let recordedSalt = a.key.key.edition !== 2017;
    const duplex = new CodecDuplex(socket, {
      encode: (payload) => {
        const out = a.stream.encode(payload, clock.now());
        if (!recordedSalt) {
          // Record our own salt so that our response, replayed to us as a request, is refused
          // (the reflection attack on AEAD-2017; 2022 headers carry a direction type instead).
          recordedSalt = true;
          if (a.stream.responseSalt)
            this.#ownSalts2017.add(a.stream.responseSalt, this.#o.monotonicNow());
        }
        return out;
      },
      decode: (chunk, borrowed) => a.stream.decode(chunk, borrowed),
      release: () => a.stream.release(),
    });
    sides = [duplex, up, socket];
    if (a.initialPayload.length > 0) {
      up.write(a.initialPayload);
      lease.up(a.initialPayload.length);
    }
    socket.resume();
    let upBytes = a.initialPayload.length;
    let downBytes = 0;
    const result = await relay(duplex, up, {
      idleTimeoutMs: this.#o.idleTimeoutMs,
      onAToB: (n: number) => {
        upBytes += n;
      },
      onBToA: (n: number) => {
        downBytes += n;
      },
      paceAToB: (n: number) => lease.up(n),
      paceBToA: (n: number) => lease.down(n),
    });
    lease.close();
    this.#events.closed?.(keyId, upBytes, downBytes, result.error?.code);
  }

  // ------------------------------------------------------------------------------- UDP

  #onDatagram(udp: UdpSocket, msg: Buffer, rinfo: RemoteInfo): void {
    const now = this.#o.clock.now();
    const mono = this.#o.monotonicNow();
    const opened = this.#openDatagram(msg, rinfo.address, now, mono);
    if (opened === null) return;
    const { key, header, datagram } = opened;
    if (!header && !this.#replayUdp2017.add(msg.subarray(0, key.key.keySize), mono)) {
      // A datagram that opened once before (or our own response, reflected): neither forwarded
      // nor answered, from whatever address it comes.
      this.#rejected('ERR_REPLAY_CLIENT', 'udp');
      return;
    }
    this.#udpHint.set(rinfo.address, key);
    const id = header
      ? `${key.id}\u0000${header.sessionId.toString('latin1')}`
      : `${key.id}\u0000${rinfo.address}\u0000${rinfo.port}`;
    let s = this.#udpSessions.get(id);
    if (header && s?.window && !s.window.check(header.packetId)) {
      this.#rejected('ERR_REPLAY_CLIENT', 'udp');
      return;
    }
    if (!s) {
      const lease = this.#gate.open(key.id, rinfo.address, 'udp');
      if (!lease) {
        this.#rejected('ERR_ACCESS_DENIED', 'udp');
        return;
      }
      if (this.#udpSessions.size >= this.#o.maxUdpSessions) this.#evictOldestUdp();
      const session: UdpSession = {
        id,
        key,
        lease,
        client: rinfo,
        lastSeen: now,
        serverPacketId: 0n,
        out: this.#o.packetDialer!.open((payload, from) =>
          this.#reply(udp, session, payload, from),
        ),
        ...(header
          ? {
              window: new SlidingWindow(),
              clientSessionId: Buffer.from(header.sessionId),
              serverSessionId: this.#o.random(8),
            }
          : {}),
      };
      s = session;
      lease.onRevoke(() => {
        session.out.close();
        if (this.#udpSessions.get(id) === session) this.#udpSessions.delete(id);
        lease.close();
      });
    }
    if (header) s.window!.accept(header.packetId);
    // SIP022 §3.2.4: replies go to the last address the session was seen at.
    s.client = rinfo;
    this.#touch(s, now);
    this.#events.udpBytes?.(key.id, datagram.payload.length, 0);
    // Over its speed cap, a datagram is dropped: UDP has no backpressure to apply.
    if (s.lease.up(datagram.payload.length) > 0) return;
    s.out.send(datagram.payload, datagram.target);
  }

  /**
   * Finds the key of a datagram within the trial budget: the key that last matched this source
   * first (paid from the hinted budget, refunded when it opens), then every other key (paid from
   * the global budget). Null, with the reason counted, when it is dropped.
   */
  #openDatagram(msg: Buffer, address: string, now: number, mono: number): OpenedUdpRequest | null {
    const table = this.#table;
    const prefix = sourcePrefix(address);
    let hint = this.#udpHint.get(address);
    if (hint !== undefined && table.candidateOf(hint) < 0) hint = undefined;
    try {
      if (hint) {
        if (!this.#budget.takeHinted(prefix, msg.length, mono)) {
          this.#rejected('ERR_UDP_BUDGET', 'udp');
          return null;
        }
        const o = openTrialUdp(hint, msg, now);
        if (o) {
          this.#budget.refundHinted(prefix, msg.length);
          return o;
        }
      }
      const rest = table.trial.length - (hint ? 1 : 0);
      // Identity-header keys (SIP023) cost two AES blocks each: not worth budgeting.
      if (rest > 0 && !this.#budget.takeFull(prefix, rest * msg.length, mono)) {
        this.#rejected('ERR_UDP_BUDGET', 'udp');
        return null;
      }
      const o = openUdpRequest(table, msg, now, undefined, hint);
      if (o === null) this.#rejected('ERR_CIPHER', 'udp');
      return o;
    } catch (err) {
      this.#rejected(err instanceof LadderError ? err.code : 'ERR_CODEC', 'udp');
      return null;
    }
  }

  /** Marks a session active: the session map is kept in order of activity, oldest first. */
  #touch(s: UdpSession, now: number): void {
    s.lastSeen = now;
    this.#udpSessions.delete(s.id);
    this.#udpSessions.set(s.id, s);
  }

  #reply(udp: UdpSocket, s: UdpSession, payload: Buffer, from: Target): void {
    if (this.#closing) return;
    const key = s.key.key;
    const now = this.#o.clock.now();
    if (this.#udpSessions.get(s.id) === s) this.#touch(s, now);
    let packet: Buffer;
    try {
      if (key.edition === 2017) {
        const salt = this.#o.random(key.keySize);
        // Our own salt goes into the filter: the reply, sent back to us, is refused as a replay.
        this.#replayUdp2017.add(salt, this.#o.monotonicNow());
        packet = encodeUdp2017(key, salt, { target: from, payload });
      } else
        packet = encodeUdp2022(
          key,
          {
            sessionId: s.serverSessionId!,
            packetId: s.serverPacketId++,
            clientSessionId: s.clientSessionId!,
          },
          { target: from, payload },
          new Uint8Array(0),
          now,
          this.#o.random,
        );
    } catch (err) {
      debug('udp reply encode failed %s', (err as Error).message);
      return;
    }
    this.#events.udpBytes?.(s.key.id, 0, payload.length);
    if (s.lease.down(payload.length) > 0) return;
    udp.send(packet, s.client.port, s.client.address);
  }

  /** Forgets idle sessions, oldest first, stopping at the first that is still active. */
  #sweepUdp(): void {
    const cutoff = this.#o.clock.now() - this.#o.udpTimeoutMs;
    for (const s of this.#udpSessions.values()) {
      if (s.lastSeen >= cutoff) break;
      this.#dropUdp(s);
    }
  }

  /** O(1): the first session in the map is the least recently active. */
  #evictOldestUdp(): void {
    const oldest = this.#udpSessions.values().next();
    if (!oldest.done) this.#dropUdp(oldest.value);
  }

  #dropUdp(s: UdpSession): void {
    this.#udpSessions.delete(s.id);
    s.out.close();
    s.lease.close();
  }

  /** UDP sessions open now (for tests). */
  get udpSessions(): number {
    return this.#udpSessions.size;
  }
}

function discard(): void {
  /* probe mode: read and drop */
}
