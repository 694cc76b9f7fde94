/**
 * From an access key URI to the dialers that carry traffic with it: ss:// (Shadowsocks), trojan://
 * (Trojan over TLS), and ladder:// (several of those, with failover between them). The one builder
 * that `ladder client` and `ladder probe` share, so both speak to a server exactly as the key says.
 *
 * It reads no files and prints nothing itself: the caller passes `readFile` (a v2ray-plugin `cert=`
 * option names a file) and `warn` (a key with a weak prefix still works, with a warning).
 * @module
 */
import { getServers } from 'node:dns';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { makeCipherKey } from '../crypto/ss-key.js';
import { parseSsUri } from '../codec/access-key-uri.js';
import { parseTrojanUri } from '../codec/trojan-uri.js';
import { parseLadderKey } from '../codec/ladder-key.js';
import { DEFAULT_TLS_FINGERPRINT, type TlsFingerprint } from '../codec/tls-fingerprint-param.js';
import { v2rayPluginOptions } from '../codec/v2ray-plugin.js';
import { prefixWeakness } from '../codec/ss-prefix.js';
import { formatHostPort } from '../core/host-port.js';
import { LadderError } from '../errors.js';
import { SsPacketDialer, SsStreamDialer } from './ss-dialer.js';
import { CarrierDialer } from './carrier-dialer.js';
import { TrojanDialer } from './trojan-dialer.js';
import { wsConnect, wsConnector } from './ws-dialer.js';
import { dnsTunnelConnect } from './dns-tunnel-client.js';
import { FailoverDialer } from './failover.js';
import { CappedDialer, dialIfRoom, handshakeCapped } from './capped-dialer.js';
import { Preconnect, type Opener } from './preconnect.js';
import type { PacketDialer, StreamDialer, Target } from './types.js';

export interface KeyDialers {
  stream: StreamDialer;
  packet: PacketDialer;
  /** For people: where and how, e.g. "198.18.0.1:443 with trojan over TLS". */
  what: string;
  /** Set for ladder:// keys: the failover dialer, to report switches. */
  failover?: FailoverDialer;
  /**
   * Each transport's own dialers by its name (the `#tag` of its URI in the key), for routing rules
   * that name a transport. Transports without a tag are not listed.
   */
  transports: ReadonlyMap<string, { stream: StreamDialer; packet: PacketDialer }>;
  /** Closes the connections opened ahead (`preconnect`) and opens none after: the client stops. */
  close(): void;
}

/** The connections a transport's dialers opened ahead ({@link KeyDialerOptions.preconnect}). */
export interface OpenedAhead {
  /** Closes those open now; later dials may open more (the transport was found blocked). */
  drop(): void;
  /** Closes those open now and opens none after. */
  close(): void;
}

/** Choices that are not part of a key. */
export interface KeyDialerOptions {
  /** Mux.Cool sessions one connection carries in its life (default 128, as v2ray). */
  muxSessionsPerConnection?: number;
  /** Mux.Cool connections a trojan key's concurrent sessions are spread over (default 3: trojan-dialer.ts). */
  muxConnections?: number;
  /** The TLS client for keys that name none (a ladder:// key's `fp`; default chrome). */
  fp?: TlsFingerprint;
  /**
   * Plain Shadowsocks, and plain Trojan over fp=chrome TLS, read into recycled memory
   * (transport/types.ts, the lent-read contract). Only for callers whose every consumer honours
   * borrowed chunks (the client's relay and fronts).
   */
  recycleReads?: boolean;
  /**
   * How long a new connection's request header waits for the application's first bytes, to leave
   * in one record with them, before it leaves alone (default 50 ms; `--first-payload-wait`).
   */
  firstPayloadWaitMs?: number;
  /**
   * Connections a transport without Mux.Cool holds open to its server at once; more dials wait
   * for one to close (transport/capped-dialer.ts; `--max-connections-per-server`). Unset: no cap.
   */
  maxConnectionsPerServer?: number;
  /**
   * In a ladder:// key with several transports: new connections move to the next transport once
   * the current one has carried this many bytes (transport/failover.ts; `--rotate-after`). Unset:
   * no rotation.
   */
  rotateAfterBytes?: number;
  /**
   * The recursive resolver that carries a `dns=` key's tunnel (`--dns-tunnel-resolver`; default:
   * the system's first resolver).
   */
  dnsTunnelResolver?: Target;
  /**
   * Transports whose every stream is a fresh TLS or WebSocket connection (plain and `split`
   * Trojan, WebSocket without Mux.Cool) open the next stream's connection while the current dial's
   * is in use (transport/preconnect.ts; the client's default, off with `--no-preconnect`).
   */
  preconnect?: boolean;
  /** How long a connection opened ahead waits for a dial (default preconnect.ts PRECONNECT_IDLE_MS). */
  preconnectIdleMs?: number;
}

/** What the builder needs from outside: files and a place for warnings. */
export interface KeyEnv {
  /** Reads a file named in a key (UTF-8); throws as `fs.readFileSync` does. */
  readFile(path: string): string;
  /** A warning for the person using the key. */
  warn(message: string): void;
}

/** Per-build changes, for a caller that measures each step of a connection (`ladder probe`). */
export interface DialOverrides {
  /** Dial this address instead of the key's host (the caller resolved the name itself). */
  readonly address?: string;
  /** The first stream dial goes over this connected socket instead of opening one. */
  readonly socket?: Socket;
  /** Connect (and TLS handshake) timeout. */
  readonly timeoutMs?: number;
  /** The whole trust store (PEM) for TLS, instead of Node's roots. */
  readonly ca?: string;
  /**
   * The key's transport on one connection: no Mux.Cool pool, no split first payload, so that the
   * connection the caller opened is the one that carries the request (a WebSocket goes over it).
   */
  readonly plain?: boolean;
}

interface KeyTransportBase {
  /** The server as the key names it: a host name or an address, and a port. */
  readonly server: Target;
  /** The transport's name in the key (its `#tag`), if it has one. */
  readonly tag?: string;
  /** For people: "198.18.0.1:443 with trojan over TLS". */
  readonly what: string;
  /** The SNI of its TLS connection to the server; absent when the transport has no TLS. */
  readonly tlsServerName?: string;
  /** Carried inside a WebSocket (Trojan with type=ws, Shadowsocks with v2ray-plugin). */
  readonly webSocket: boolean;
  /** Many streams share one connection (Mux.Cool) when the client uses the key. */
  readonly multiplexed: boolean;
  /** Fresh dialers for this transport, and what they open ahead. */
  dialers(over?: DialOverrides): {
    stream: StreamDialer;
    packet: PacketDialer;
    ahead: OpenedAhead;
  };
}

/** One transport of a key, parsed and checked, ready to build dialers. */
export type KeyTransport =
  | (KeyTransportBase & { readonly kind: 'trojan' })
  | (KeyTransportBase & {
      readonly kind: 'shadowsocks';
      readonly method: string;
      /** The key sets a prefix for the first bytes (SIP: Outline's connection prefix). */
      readonly prefixed: boolean;
    });

/** Sessions per Mux.Cool connection and connections per pool, when the caller asks for its own. */
function perConnectionOf(o: KeyDialerOptions): {
  muxSessionsPerConnection?: number;
  muxConnections?: number;
} {
  return {
    ...(o.muxSessionsPerConnection ? { muxSessionsPerConnection: o.muxSessionsPerConnection } : {}),
    ...(o.muxConnections ? { muxConnections: o.muxConnections } : {}),
  };
}

/** The first payload's wait, when the caller asks for one of its own. */
function firstWaitOf(o: KeyDialerOptions): { firstPayloadWaitMs?: number } {
  return o.firstPayloadWaitMs !== undefined ? { firstPayloadWaitMs: o.firstPayloadWaitMs } : {};
}

/**
 * The stream dialer under the per-server cap, unless there is none or the key multiplexes; a
 * dialer whose every stream is a TLS handshake also runs few of them at once (handshakeCapped).
 */
function capped(
  d: StreamDialer,
  o: KeyDialerOptions,
  multiplexed: boolean,
  tls = false,
): StreamDialer {
  const paced = tls && !multiplexed ? handshakeCapped(d) : d;
  return o.maxConnectionsPerServer && !multiplexed
    ? new CappedDialer(paced, { max: o.maxConnectionsPerServer })
    : paced;
}

/** Where a connector opens to: the caps pass it on, and the connector does not read it. */
const THE_SERVER: Target = { host: '', port: 0 };

/**
 * For a transport whose every stream is a fresh connection: each connection opened through the
 * per-server and handshake caps (as {@link capped}), and, with `preconnect`, one opened ahead
 * after each dial; the Preconnects made are added to `aheads`.
 */
function connections(
  o: KeyDialerOptions,
  tls: boolean,
  aheads: Preconnect[],
): (open: Opener) => Opener {
  return (open) => {
    const caps = capped({ dial: (_t, signal) => open(signal) }, o, false, tls);
    const viaCaps: Opener = (signal) => caps.dial(THE_SERVER, signal);
    if (!o.preconnect) return viaCaps;
    const ahead = new Preconnect(viaCaps, {
      openIfRoom: (signal) => dialIfRoom(caps, THE_SERVER, signal),
      ...(o.preconnectIdleMs !== undefined ? { idleMs: o.preconnectIdleMs } : {}),
    });
    aheads.push(ahead);
    return (signal) => ahead.open(signal);
  };
}

/** Drop and close for the Preconnects of one transport's dialers. */
function openedAhead(aheads: readonly Preconnect[]): OpenedAhead {
  return {
    drop: () => aheads.forEach((a) => a.drop()),
    close: () => aheads.forEach((a) => a.close()),
  };
}

/** One ss:// or trojan:// URI. Throws a LadderError (ERR_KEY_URI) for any other scheme. */
export function keyTransport(uri: string, o: KeyDialerOptions, env: KeyEnv): KeyTransport {
  const text = uri.trim();
  if (/^trojan:/i.test(text)) return trojanTransport(text, o);
  if (/^ss:/i.test(text)) return ssTransport(text, o, env);
  throw new LadderError(
    'ERR_KEY_URI',
    `unsupported key '${text.slice(0, text.indexOf(':') + 1) || text.slice(0, 12)}'; Ladder takes ss://, trojan:// and ladder:// keys`,
  );
}

/** A trojan:// key: Trojan over TLS, optionally inside a WebSocket or with Mux.Cool. */
function trojanTransport(uri: string, o: KeyDialerOptions): KeyTransport {
  const perConnection = perConnectionOf(o);
  const t = parseTrojanUri(uri);
  const ws = t.type === 'ws';
  const fp = t.fp ?? o.fp ?? DEFAULT_TLS_FINGERPRINT;
  const pin = t.pinSha256 ? { pinSha256: t.pinSha256 } : {};
  const how = ws
    ? `trojan over WebSocket${t.security === 'none' ? '' : ' over TLS'}`
    : 'trojan over TLS';
  return {
    kind: 'trojan',
    server: { host: t.host, port: t.port },
    ...(ws && t.security === 'none'
      ? {}
      : { tlsServerName: t.sni ?? (ws ? t.wsHost : undefined) ?? t.host }),
    webSocket: ws,
    multiplexed: Boolean(t.mux),
    ...(t.tag ? { tag: t.tag } : {}),
    what: `${formatHostPort(t.host, t.port)} with ${how}${t.fp === 'node' ? ' (fp=node)' : ''}${t.mux ? ' (Mux.Cool)' : ''}${t.split ? ' (first payload split)' : ''}${t.carrierBytes ? ` (carriers of ${t.carrierBytes} bytes)` : ''}${t.pinSha256 ? ' (pinned certificate)' : ''}`,
    dialers(over = {}) {
      const server = { host: over.address ?? t.host, port: t.port };
      const each = {
        ...(over.timeoutMs !== undefined ? { timeoutMs: over.timeoutMs } : {}),
        ...(over.ca ? { ca: over.ca } : {}),
      };
      const tls = { sni: t.sni ?? t.wsHost ?? t.host, ...pin, fp, ...each };
      const wsOptions = {
        path: t.path ?? '/',
        host: t.wsHost ?? t.sni ?? t.host,
        ...(t.security === 'none' ? {} : { tls }),
      };
      if (over.plain) {
        const socket = over.socket;
        const d = new TrojanDialer(server, {
          password: t.password,
          ...(ws
            ? {
                ...tls,
                connect: (_s: Target, signal?: AbortSignal): Promise<Duplex> =>
                  wsConnect(server, { ...wsOptions, ...(socket ? { socket } : {}) }, signal),
              }
            : { ...tls, sni: t.sni ?? t.host, ...(socket ? { socket } : {}) }),
          ...firstWaitOf(o),
        });
        return { stream: capped(d, o, false), packet: d, ahead: openedAhead([]) };
      }
      const overTls = !ws || t.security !== 'none';
      const aheads: Preconnect[] = [];
      // Every stream a fresh connection: the caps (and preconnect) at the connection's seam.
      const fresh = !t.mux && !t.carrierBytes;
      const d = new TrojanDialer(server, {
        password: t.password,
        ...tls,
        ...firstWaitOf(o),
        ...(over.socket ? { socket: over.socket } : {}),
        // Mux.Cool inside Trojan, as v2ray's trojan outbound with mux enabled (mux-pool.ts).
        ...(t.mux ? { mux: t.mux, ...perConnection } : {}),
        ...(t.muxPadding === false ? { muxPadding: false } : {}),
        ...(t.split ? { split: true } : {}),
        // Lent reads only where the relay reads the stream (carrier-dialer.ts keeps what it reads).
        ...(!ws && !t.mux && !t.carrierBytes && o.recycleReads ? { recycleReads: true } : {}),
        // Trojan inside a WebSocket, as v2ray's trojan outbound with network ws (ws-dialer.ts).
        ...(ws ? { connect: wsConnector(server, wsOptions) } : {}),
        ...(fresh ? { through: connections(o, overTls, aheads) } : {}),
      });
      // Each stream spread over short connections under a censor's byte budget (carrier-dialer.ts).
      const stream = t.carrierBytes
        ? new CarrierDialer(capped(d, o, false, overTls), { carrierBytes: t.carrierBytes })
        : fresh
          ? d
          : capped(d, o, Boolean(t.mux), overTls);
      return { stream, packet: d, ahead: openedAhead(aheads) };
    },
  };
}

/** An ss:// key: Shadowsocks, optionally inside v2ray-plugin's WebSocket. */
function ssTransport(uri: string, o: KeyDialerOptions, env: KeyEnv): KeyTransport {
  const perConnection = perConnectionOf(o);
  const k = parseSsUri(uri);
  const key = makeCipherKey(k.method, k.password);
  if (k.prefix) {
    const weak = prefixWeakness(k.method, k.prefix);
    if (weak) env.warn(weak);
  }
  const ws = v2rayPluginOptions(k.plugin);
  if (k.plugin && !ws)
    throw new LadderError(
      'ERR_KEY_URI',
      `ss:// key: the plugin '${k.plugin.name}' is not built in (Ladder speaks v2ray-plugin's WebSocket mode); remove plugin= to use plain Shadowsocks`,
    );
  // Read once, when the key is taken: a missing file is a key error, not a dial error.
  const wsCa = ws?.cert ? { ca: readPem(env, ws.cert) } : {};
  if (k.dns !== undefined && ws)
    throw new LadderError(
      'ERR_KEY_URI',
      'ss:// key: dns= and plugin= cannot go together (the DNS tunnel carries plain Shadowsocks); remove one',
    );
  const dns = k.dns;
  const how = dns
    ? `${k.method} in a DNS tunnel under ${dns}`
    : ws
      ? `${k.method} over WebSocket${ws.tls ? ' over TLS' : ''}${ws.mux ? ' (Mux.Cool)' : ''}`
      : `${k.method}${k.prefix ? ` and a ${k.prefix.length}-byte prefix` : ''}`;
  return {
    kind: 'shadowsocks',
    method: k.method,
    prefixed: k.prefix !== undefined && k.prefix.length > 0,
    server: { host: k.host, port: k.port },
    ...(k.tag ? { tag: k.tag } : {}),
    what: `${formatHostPort(k.host, k.port)} with ${how}`,
    ...(ws?.tls ? { tlsServerName: ws.host } : {}),
    webSocket: ws !== null,
    multiplexed: Boolean(ws?.mux),
    dialers(over = {}) {
      const server = { host: over.address ?? k.host, port: k.port };
      const socket = over.socket;
      const wsOptions = ws && {
        path: ws.path,
        host: ws.host,
        ...(ws.tls
          ? {
              tls: {
                sni: ws.host,
                ...(ws.pinSha256 ? { pinSha256: ws.pinSha256 } : {}),
                fp: ws.fp ?? o.fp ?? DEFAULT_TLS_FINGERPRINT,
                ...(over.ca ? { ca: over.ca } : wsCa),
              },
            }
          : {}),
      };
      const pooled = wsOptions && !over.plain;
      const aheads: Preconnect[] = [];
      // A WebSocket per stream: the caps (and preconnect) at the connection's seam.
      const fresh = pooled && !ws.mux;
      const perStream =
        fresh &&
        connections(o, Boolean(ws.tls), aheads)((signal) => wsConnect(server, wsOptions, signal));
      // v2ray-plugin (SIP003): the Shadowsocks stream inside a WebSocket (ws-dialer.ts); on the
      // caller's connection, one WebSocket and no Mux.Cool.
      const connect = !wsOptions
        ? socket && (() => Promise.resolve(socket))
        : perStream
          ? (_s: Target, signal?: AbortSignal): Promise<Duplex> => perStream(signal)
          : pooled
            ? wsConnector(server, {
                ...wsOptions,
                mux: ws.mux ? (ws.muxConcurrency ?? 1) : 0,
                ...perConnection,
              })
            : (_s: Target, signal?: AbortSignal): Promise<Duplex> =>
                wsConnect(server, { ...wsOptions, ...(socket ? { socket } : {}) }, signal);
      // Ladder's DNS tunnel: the Shadowsocks stream in queries through a resolver, not over TCP.
      const tunnel =
        dns &&
        (() =>
          Promise.resolve(
            dnsTunnelConnect(o.dnsTunnelResolver ?? systemResolver(), { domain: dns }),
          ));
      const stream = new SsStreamDialer(server, key, {
        ...(k.prefix ? { prefix: k.prefix } : {}),
        ...firstWaitOf(o),
        ...(over.timeoutMs !== undefined ? { connectTimeoutMs: over.timeoutMs } : {}),
        ...(!ws && !dns && o.recycleReads ? { recycleReads: true } : {}),
        ...(tunnel ? { connect: tunnel } : connect ? { connect } : {}),
      });
      // SIP003: UDP does not go through the plugin; it goes to the server's own UDP port.
      return {
        stream: fresh
          ? stream
          : capped(stream, o, Boolean(pooled && ws.mux), Boolean(pooled && ws.tls)),
        packet: new SsPacketDialer(server, key),
        ahead: openedAhead(aheads),
      };
    },
  };
}

/** The system's first DNS resolver (node:dns, from /etc/resolv.conf), as a host and port. */
function systemResolver(): Target {
  const first = getServers()[0];
  if (!first)
    throw new LadderError(
      'ERR_CONFIG',
      'DNS tunnel: this system has no DNS resolver configured; give one with --dns-tunnel-resolver <ip:port>',
    );
  const m = /^\[(.+)\]:(\d+)$/.exec(first) ?? /^([^:]+):(\d+)$/.exec(first);
  return m ? { host: m[1]!, port: Number(m[2]) } : { host: first, port: 53 };
}

function readPem(env: KeyEnv, file: string): string {
  try {
    return env.readFile(file);
  } catch (err) {
    throw new LadderError(
      'ERR_KEY_URI',
      `ss:// key: the v2ray-plugin option cert=${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
}

/**
 * Every transport of a key: one for ss:// and trojan://, each of the list of a ladder:// key. In a
 * ladder:// key, transports this Ladder cannot use are skipped (`skipped` says why, by position);
 * `fp` and `name` of the ladder:// key apply to its transports.
 */
function keyTransports(
  uri: string,
  o: KeyDialerOptions,
  env: KeyEnv,
): { transports: KeyTransport[]; skipped: { index: number; error: LadderError }[]; name?: string } {
  const text = uri.trim();
  if (!/^ladder:/i.test(text)) return { transports: [keyTransport(text, o, env)], skipped: [] };
  const key = parseLadderKey(text);
  const transports: KeyTransport[] = [];
  const skipped: { index: number; error: LadderError }[] = [];
  key.transports.forEach((t, index) => {
    try {
      transports.push(keyTransport(t, key.fp ? { ...o, fp: key.fp } : o, env));
    } catch (err) {
      if (err instanceof LadderError) skipped.push({ index, error: err });
      else throw err;
    }
  });
  return { transports, skipped, ...(key.name ? { name: key.name } : {}) };
}

/**
 * The dialers for a key. In a ladder:// key, transports this Ladder does not know are skipped
 * (`skipped` lists them) as long as one is left; the others sit behind one FailoverDialer.
 */
export function dialersFromKey(
  uri: string,
  o: KeyDialerOptions & { onSwitch?: (to: string, why: string) => void },
  env: KeyEnv,
): KeyDialers & { skipped: string[] } {
  const text = uri.trim();
  const { onSwitch, ...options } = o;
  if (!/^ladder:/i.test(text)) {
    if (options.rotateAfterBytes !== undefined)
      env.warn(
        'rotation (--rotate-after) needs a ladder:// key with several transports; it is off',
      );
    const one = keyTransport(text, options, env);
    const { ahead, ...d } = one.dialers();
    return {
      ...d,
      close: () => ahead.close(),
      what: one.what,
      skipped: [],
      transports: new Map(one.tag ? [[one.tag, d]] : []),
    };
  }
  const all = keyTransports(text, options, env);
  const skipped = all.skipped.map((s) => `transport ${s.index + 1}: ${s.error.message}`);
  if (all.transports.length === 0)
    throw new LadderError(
      'ERR_KEY_URI',
      `ladder:// key: no transport this Ladder can use (${skipped.join('; ')})`,
    );
  const entries = all.transports.map((t) => ({ name: t.what, tag: t.tag, ...t.dialers() }));
  const rotate = options.rotateAfterBytes;
  if (rotate !== undefined && entries.length < 2)
    env.warn(
      'rotation (--rotate-after) needs a ladder:// key with two or more transports this Ladder can use; it is off',
    );
  const failover = new FailoverDialer(entries, {
    ...(onSwitch ? { onSwitch } : {}),
    ...(rotate !== undefined ? { rotateAfterBytes: rotate } : {}),
  });
  return {
    stream: failover,
    packet: failover,
    what: `${entries.length} transport${entries.length === 1 ? '' : 's'}, first ${entries[0]!.name}`,
    failover,
    close: () => entries.forEach((e) => e.ahead.close()),
    skipped,
    transports: new Map(
      entries.flatMap((e) => (e.tag ? [[e.tag, { stream: e.stream, packet: e.packet }]] : [])),
    ),
  };
}

/**
 * The servers a key connects to (every transport of a ladder:// key, the ones this Ladder cannot
 * use included), hosts as written: names or literals. `--tun` keeps exactly these out of the tunnel.
 */
export function serverEndpointsOfKey(uri: string): Target[] {
  const out = new Map<string, Target>();
  for (const k of keyServers(uri)) out.set(`${k.host} ${k.port}`, { host: k.host, port: k.port });
  return [...out.values()];
}

/**
 * The server names (not address literals) that a key's transports connect to directly, to be
 * resolved before the first connection needs them. A DNS-tunnel transport reaches its server
 * through the resolver, never by its name: left out.
 */
export function serverNamesOfKey(uri: string): string[] {
  const names = new Set<string>();
  for (const k of keyServers(uri)) if (k.dns === undefined && isIP(k.host) === 0) names.add(k.host);
  return [...names];
}

/** Each transport of a key that this Ladder can parse: its server and whether it is a DNS tunnel. */
function keyServers(uri: string): { host: string; port: number; dns?: string | undefined }[] {
  const text = uri.trim();
  const uris = /^ladder:/i.test(text) ? parseLadderKey(text).transports : [text];
  const out: { host: string; port: number; dns?: string | undefined }[] = [];
  for (const u of uris) {
    try {
      if (/^trojan:/i.test(u)) out.push(parseTrojanUri(u));
      else if (/^ss:/i.test(u)) out.push(parseSsUri(u));
    } catch {
      // a transport dialersFromKey skips
    }
  }
  return out;
}
