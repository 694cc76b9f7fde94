/**
 * From an access key URI to the dialers that carry traffic with it: ss:// (Shadowsocks), trojan://
 * (Trojan over TLS), and ladder:// (several of those, with failover between them).
 * @module
 */
import { makeCipherKey } from '../crypto/ss-key.js';
import { parseSsUri } from '../codec/access-key-uri.js';
import { parseTrojanUri } from '../codec/trojan-uri.js';
import { parseLadderKey } from '../codec/ladder-key.js';
import { DEFAULT_TLS_FINGERPRINT, type TlsFingerprint } from '../codec/tls-fingerprint-param.js';
import { SsPacketDialer, SsStreamDialer } from '../transport/ss-dialer.js';
import { TrojanDialer } from '../transport/trojan-dialer.js';
import { v2rayPluginOptions } from '../codec/v2ray-plugin.js';
import { wsConnector } from '../transport/ws-dialer.js';
import { readFileSync } from 'node:fs';
import { FailoverDialer, type FailoverEntry } from '../transport/failover.js';
import { CappedDialer } from '../transport/capped-dialer.js';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import { LadderError } from '../errors.js';
import { formatHostPort } from './args.js';
import { prefixWeakness } from '../codec/ss-prefix.js';

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
}

/** Client-side choices that are not part of a key. */
export interface KeyDialerOptions {
  /** Mux.Cool sessions one connection carries in its life (default 128, as v2ray). */
  muxSessionsPerConnection?: number;
  /** The TLS client for keys that name none (a ladder:// key's `fp`; default chrome). */
  fp?: TlsFingerprint;
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
}

type KeyEntry = FailoverEntry & { packet: PacketDialer; tag?: string };

/** Sessions per Mux.Cool connection, when the client asks for a number of its own. */
function perConnectionOf(o: KeyDialerOptions): { muxSessionsPerConnection?: number } {
  return o.muxSessionsPerConnection ? { muxSessionsPerConnection: o.muxSessionsPerConnection } : {};
}

/** The first payload's wait, when the client asks for one of its own. */
function firstWaitOf(o: KeyDialerOptions): { firstPayloadWaitMs?: number } {
  return o.firstPayloadWaitMs !== undefined ? { firstPayloadWaitMs: o.firstPayloadWaitMs } : {};
}

/** The stream dialer under the per-server cap, unless there is none or the key multiplexes. */
function capped(d: StreamDialer, o: KeyDialerOptions, multiplexed: boolean): StreamDialer {
  return o.maxConnectionsPerServer && !multiplexed
    ? new CappedDialer(d, { max: o.maxConnectionsPerServer })
    : d;
}

function single(uri: string, o: KeyDialerOptions): KeyEntry {
  if (/^trojan:/i.test(uri)) return trojanEntry(uri, o);
  if (/^ss:/i.test(uri)) return ssEntry(uri, o);
  throw new LadderError(
    'ERR_KEY_URI',
    `unsupported key '${uri.slice(0, uri.indexOf(':') + 1) || uri.slice(0, 12)}'; Ladder takes ss://, trojan:// and ladder:// keys`,
  );
}

/** A trojan:// key: Trojan over TLS, optionally inside a WebSocket or with Mux.Cool. */
function trojanEntry(uri: string, o: KeyDialerOptions): KeyEntry {
  const perConnection = perConnectionOf(o);
  const t = parseTrojanUri(uri);
  const server = { host: t.host, port: t.port };
  const tls = {
    sni: t.sni ?? t.wsHost ?? t.host,
    ...(t.pinSha256 ? { pinSha256: t.pinSha256 } : {}),
    fp: t.fp ?? o.fp ?? DEFAULT_TLS_FINGERPRINT,
  };
  const d = new TrojanDialer(server, {
    password: t.password,
    ...tls,
    ...firstWaitOf(o),
    // Mux.Cool inside Trojan, as v2ray's trojan outbound with mux enabled (mux-pool.ts).
    ...(t.mux ? { mux: t.mux, ...perConnection } : {}),
    ...(t.muxPadding === false ? { muxPadding: false } : {}),
    ...(t.split ? { split: true } : {}),
    // Trojan inside a WebSocket, as v2ray's trojan outbound with network ws (ws-dialer.ts).
    ...(t.type === 'ws'
      ? {
          connect: wsConnector(server, {
            path: t.path ?? '/',
            host: t.wsHost ?? t.sni ?? t.host,
            ...(t.security === 'none' ? {} : { tls }),
          }),
        }
      : {}),
  });
  const how =
    t.type === 'ws'
      ? `trojan over WebSocket${t.security === 'none' ? '' : ' over TLS'}`
      : 'trojan over TLS';
  return {
    name: `${formatHostPort(t.host, t.port)} with ${how}${t.fp === 'node' ? ' (fp=node)' : ''}${t.mux ? ' (Mux.Cool)' : ''}${t.split ? ' (first payload split)' : ''}${t.pinSha256 ? ' (pinned certificate)' : ''}`,
    stream: capped(d, o, Boolean(t.mux)),
    packet: d,
    ...(t.tag ? { tag: t.tag } : {}),
  };
}

/** An ss:// key: Shadowsocks, optionally inside v2ray-plugin's WebSocket. */
function ssEntry(uri: string, o: KeyDialerOptions): KeyEntry {
  const perConnection = perConnectionOf(o);
  const k = parseSsUri(uri);
  const key = makeCipherKey(k.method, k.password);
  const server = { host: k.host, port: k.port };
  if (k.prefix) {
    const weak = prefixWeakness(k.method, k.prefix);
    if (weak) console.error(`ladder client: warning: ${weak}`);
  }
  const ws = v2rayPluginOptions(k.plugin);
  if (k.plugin && !ws)
    throw new LadderError(
      'ERR_KEY_URI',
      `ss:// key: the plugin '${k.plugin.name}' is not built in (Ladder speaks v2ray-plugin's WebSocket mode); remove plugin= to use plain Shadowsocks`,
    );
  // v2ray-plugin (SIP003): the Shadowsocks stream inside a WebSocket (ws-dialer.ts).
  const stream = new SsStreamDialer(server, key, {
    ...(k.prefix ? { prefix: k.prefix } : {}),
    ...firstWaitOf(o),
    // These dialers serve the client's SOCKS5 and HTTP fronts, whose relay() and MessageReader
    // honour borrowed chunks: the tunnel's reads can use recycled memory.
    ...(ws ? {} : { recycleReads: true }),
    ...(ws
      ? {
          connect: wsConnector(server, {
            path: ws.path,
            host: ws.host,
            mux: ws.mux ? (ws.muxConcurrency ?? 1) : 0,
            ...perConnection,
            ...(ws.tls
              ? {
                  tls: {
                    sni: ws.host,
                    ...(ws.pinSha256 ? { pinSha256: ws.pinSha256 } : {}),
                    fp: ws.fp ?? o.fp ?? DEFAULT_TLS_FINGERPRINT,
                    ...(ws.cert ? { ca: readPem(ws.cert) } : {}),
                  },
                }
              : {}),
          }),
        }
      : {}),
  });
  const how = ws
    ? `${k.method} over WebSocket${ws.tls ? ' over TLS' : ''}${ws.mux ? ' (Mux.Cool)' : ''}`
    : `${k.method}${k.prefix ? ` and a ${k.prefix.length}-byte prefix` : ''}`;
  return {
    name: `${formatHostPort(k.host, k.port)} with ${how}`,
    stream: capped(stream, o, Boolean(ws?.mux)),
    // SIP003: UDP does not go through the plugin; it goes to the server's own UDP port.
    packet: new SsPacketDialer(server, key),
    ...(k.tag ? { tag: k.tag } : {}),
  };
}

function readPem(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new LadderError(
      'ERR_KEY_URI',
      `ss:// key: the v2ray-plugin option cert=${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
}

/**
 * The dialers for a key. In a ladder:// key, transports this Ladder does not know are skipped
 * (`skipped` lists them) as long as one is left.
 */
export function dialersForKey(
  uri: string,
  onSwitch?: (to: string, why: string) => void,
  options: KeyDialerOptions = {},
): KeyDialers & { skipped: string[] } {
  const text = uri.trim();
  if (!/^ladder:/i.test(text)) {
    const one = single(text, options);
    return {
      stream: one.stream,
      packet: one.packet,
      what: one.name,
      skipped: [],
      transports: new Map(one.tag ? [[one.tag, one]] : []),
    };
  }
  const key = parseLadderKey(text);
  const entries: KeyEntry[] = [];
  const skipped: string[] = [];
  key.transports.forEach((t, i) => {
    try {
      entries.push(single(t, key.fp ? { ...options, fp: key.fp } : options));
    } catch (err) {
      if (err instanceof LadderError) skipped.push(`transport ${i + 1}: ${err.message}`);
      else throw err;
    }
  });
  if (entries.length === 0)
    throw new LadderError(
      'ERR_KEY_URI',
      `ladder:// key: no transport this Ladder can use (${skipped.join('; ')})`,
    );
  const failover = new FailoverDialer(entries, onSwitch ? { onSwitch } : {});
  return {
    stream: failover,
    packet: failover,
    what: `${entries.length} transport${entries.length === 1 ? '' : 's'}, first ${entries[0]!.name}`,
    failover,
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
export function serverEndpointsOfKey(uri: string): { host: string; port: number }[] {
  const text = uri.trim();
  const uris = /^ladder:/i.test(text) ? parseLadderKey(text).transports : [text];
  const out = new Map<string, { host: string; port: number }>();
  for (const u of uris) {
    try {
      const k = /^trojan:/i.test(u) ? parseTrojanUri(u) : /^ss:/i.test(u) ? parseSsUri(u) : null;
      if (k) out.set(`${k.host} ${k.port}`, { host: k.host, port: k.port });
    } catch {
      // a transport dialersForKey skips
    }
  }
  return [...out.values()];
}
