/**
 * The Shadowsocks server's UDP relay: opens each datagram with the key that last matched its source
 * or by trial over every key within a budget (udp-trial-budget.ts), keeps one session per client
 * (AEAD-2017: per key and source address; 2022: per session id), forwards payloads through a
 * `PacketDialer` and encrypts the replies.
 *
 * Probe resistance: a datagram that fails before authentication is dropped without a reply, its
 * reason reported. Privacy: client addresses stay in memory, as return paths, and are never logged.
 * @module
 */
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { randomBytes } from 'node:crypto';
import { debuglog } from 'node:util';
import { LadderError, type ErrorCode } from '../errors.js';
import { RotatingSaltFilter, SlidingWindow } from '../crypto/replay.js';
import type { Random, SsServerKey } from '../codec/ss-tcp.js';
import {
  encodeUdp2017,
  encodeUdp2022,
  openTrialUdp,
  openUdpRequest,
  type OpenedUdpRequest,
} from '../codec/ss-udp.js';
import { TrialBudget, sourcePrefix, type TrialBudgetOptions } from './udp-trial-budget.js';
import type { AccessGate, Lease } from './access/gate.js';
import type { SsKeyRing } from './ss-key-ring.js';
import { describeAddress, listenError } from '../transport/listen.js';
import type { Clock, PacketDialer, PacketSession, Target } from '../transport/types.js';

const debug = debuglog('ladder:server');

/** The sweep for idle sessions runs at least this often. */
const SWEEP_MAX_INTERVAL_MS = 10_000;

export interface SsUdpRelayOptions {
  keys: SsKeyRing;
  packetDialer: PacketDialer;
  gate: AccessGate;
  clock: Clock;
  monotonicNow: () => number;
  random: Random;
  /** A session with no packets for this long is forgotten. */
  udpTimeoutMs: number;
  /** Sessions at once; the least recently active goes first. */
  maxUdpSessions: number;
  udpTrialBudget?: TrialBudgetOptions | undefined;
  /** A datagram failed before authentication, with the reason's code. */
  rejected(code: ErrorCode): void;
  /** UDP payload bytes for `keyId`. */
  udpBytes(keyId: string, up: number, down: number): void;
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

export class SsUdpRelay {
  readonly #o: SsUdpRelayOptions;
  /**
   * AEAD-2017 UDP salts, both the clients' and our own responses': every datagram carries a fresh
   * salt, so one seen before is a replay (or a reflection) from whatever address it comes.
   */
  readonly #replay2017 = new RotatingSaltFilter(randomBytes(16));
  readonly #budget: TrialBudget;
  readonly #sessions = new Map<string, UdpSession>();
  #udp: UdpSocket | null = null;
  #sweep: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(options: SsUdpRelayOptions) {
    this.#o = options;
    this.#budget = new TrialBudget(options.udpTrialBudget, options.monotonicNow());
  }

  /** Binds the UDP port. Rejects with ERR_LISTEN naming the address. */
  async listen(host: string, port: number): Promise<void> {
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
    const every = Math.min(SWEEP_MAX_INTERVAL_MS, this.#o.udpTimeoutMs / 2);
    this.#sweep = setInterval(() => this.#sweepSessions(), every);
    this.#sweep.unref();
  }

  /** Closes the port and every session; replies that arrive later are dropped. */
  close(): void {
    this.#closed = true;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#udp?.close();
    this.#udp = null;
    for (const s of this.#sessions.values()) {
      s.out.close();
      s.lease.close();
    }
    this.#sessions.clear();
  }

  /** Sessions open now. */
  get sessions(): number {
    return this.#sessions.size;
  }

  #onDatagram(udp: UdpSocket, msg: Buffer, rinfo: RemoteInfo): void {
    const now = this.#o.clock.now();
    const mono = this.#o.monotonicNow();
    const opened = this.#open(msg, rinfo.address, now, mono);
    if (opened === null) return;
    const { key, header, datagram } = opened;
    if (!header && !this.#replay2017.add(msg.subarray(0, key.key.keySize), mono)) {
      // A datagram that opened once before (or our own response, reflected): neither forwarded
      // nor answered, from whatever address it comes.
      this.#o.rejected('ERR_REPLAY_CLIENT');
      return;
    }
    this.#o.keys.rememberUdp(rinfo.address, key);
    const id = header
      ? `${key.id}\u0000${header.sessionId.toString('latin1')}`
      : `${key.id}\u0000${rinfo.address}\u0000${rinfo.port}`;
    const known = this.#sessions.get(id);
    if (header && known?.window && !known.window.check(header.packetId)) {
      this.#o.rejected('ERR_REPLAY_CLIENT');
      return;
    }
    const s = known ?? this.#newSession(udp, opened, id, rinfo, now);
    if (!s) return;
    if (header) s.window!.accept(header.packetId);
    // SIP022 §3.2.4: replies go to the last address the session was seen at.
    s.client = rinfo;
    this.#touch(s, now);
    this.#o.udpBytes(key.id, datagram.payload.length, 0);
    // Over its speed cap, a datagram is dropped: UDP has no backpressure to apply.
    if (s.lease.up(datagram.payload.length) > 0) return;
    s.out.send(datagram.payload, datagram.target);
  }

  /** A session for a client's first datagram, or null (reported) when its gate refuses the key. */
  #newSession(
    udp: UdpSocket,
    { key, header }: OpenedUdpRequest,
    id: string,
    rinfo: RemoteInfo,
    now: number,
  ): UdpSession | null {
    const lease = this.#o.gate.open(key.id, rinfo.address, 'udp');
    if (!lease) {
      this.#o.rejected('ERR_ACCESS_DENIED');
      return null;
    }
    if (this.#sessions.size >= this.#o.maxUdpSessions) this.#evictOldest();
    const session: UdpSession = {
      id,
      key,
      lease,
      client: rinfo,
      lastSeen: now,
      serverPacketId: 0n,
      out: this.#o.packetDialer.open((payload, from) => this.#reply(udp, session, payload, from)),
      ...(header
        ? {
            window: new SlidingWindow(),
            clientSessionId: Buffer.from(header.sessionId),
            serverSessionId: this.#o.random(8),
          }
        : {}),
    };
    lease.onRevoke(() => {
      session.out.close();
      if (this.#sessions.get(id) === session) this.#sessions.delete(id);
      lease.close();
    });
    return session;
  }

  /**
   * Finds the key of a datagram within the trial budget: the key that last matched this source
   * first (paid from the hinted budget, refunded when it opens), then every other key (paid from
   * the global budget). Null, with the reason counted, when it is dropped.
   */
  #open(msg: Buffer, address: string, now: number, mono: number): OpenedUdpRequest | null {
    const table = this.#o.keys.table;
    const prefix = sourcePrefix(address);
    const hint = this.#o.keys.udpHintOf(address);
    try {
      if (hint) {
        if (!this.#budget.takeHinted(prefix, msg.length, mono)) {
          this.#o.rejected('ERR_UDP_BUDGET');
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
        this.#o.rejected('ERR_UDP_BUDGET');
        return null;
      }
      const o = openUdpRequest(table, msg, now, undefined, hint);
      if (o === null) this.#o.rejected('ERR_CIPHER');
      return o;
    } catch (err) {
      this.#o.rejected(err instanceof LadderError ? err.code : 'ERR_CODEC');
      return null;
    }
  }

  /** Marks a session active: the session map is kept in order of activity, oldest first. */
  #touch(s: UdpSession, now: number): void {
    s.lastSeen = now;
    this.#sessions.delete(s.id);
    this.#sessions.set(s.id, s);
  }

  #reply(udp: UdpSocket, s: UdpSession, payload: Buffer, from: Target): void {
    if (this.#closed) return;
    const now = this.#o.clock.now();
    if (this.#sessions.get(s.id) === s) this.#touch(s, now);
    let packet: Buffer;
    try {
      packet = this.#encodeReply(s, payload, from, now);
    } catch (err) {
      debug('udp reply encode failed %s', (err as Error).message);
      return;
    }
    this.#o.udpBytes(s.key.id, 0, payload.length);
    if (s.lease.down(payload.length) > 0) return;
    udp.send(packet, s.client.port, s.client.address);
  }

  #encodeReply(s: UdpSession, payload: Buffer, from: Target, now: number): Buffer {
    const key = s.key.key;
    if (key.edition === 2017) {
      const salt = this.#o.random(key.keySize);
      // Our own salt goes into the filter: the reply, sent back to us, is refused as a replay.
      this.#replay2017.add(salt, this.#o.monotonicNow());
      return encodeUdp2017(key, salt, { target: from, payload });
    }
    return encodeUdp2022(
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
  }

  /** Forgets idle sessions, oldest first, stopping at the first that is still active. */
  #sweepSessions(): void {
    const cutoff = this.#o.clock.now() - this.#o.udpTimeoutMs;
    for (const s of this.#sessions.values()) {
      if (s.lastSeen >= cutoff) break;
      this.#drop(s);
    }
  }

  /** O(1): the first session in the map is the least recently active. */
  #evictOldest(): void {
    const oldest = this.#sessions.values().next();
    if (!oldest.done) this.#drop(oldest.value);
  }

  #drop(s: UdpSession): void {
    this.#sessions.delete(s.id);
    s.out.close();
    s.lease.close();
  }
}
