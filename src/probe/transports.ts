/**
 * The transports an access key offers, as the probe needs them: where the server is, whether the
 * transport starts with TLS, and how to build its dialers over a connection the probe opened (so each
 * step can be timed and its failure named). A ladder:// key carries several transports; the probe
 * checks each one.
 * @module
 */
import type { Socket } from 'node:net';
import { parseSsUri } from '../codec/access-key-uri.js';
import { parseTrojanUri } from '../codec/trojan-uri.js';
import { DEFAULT_TLS_FINGERPRINT } from '../codec/tls-fingerprint-param.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import { parseLadderKey } from '../codec/ladder-key.js';
import { ConfigError, LadderError } from '../errors.js';
import { SsPacketDialer, SsStreamDialer } from '../transport/ss-dialer.js';
import { TrojanDialer } from '../transport/trojan-dialer.js';
import type { PacketDialer, StreamDialer, Target } from '../transport/types.js';
import { trustStore } from './ops.js';

export interface DialerOptions {
  /** Extra CA certificates (PEM) for TLS transports, added to the built-in roots. */
  readonly ca?: string;
  readonly timeoutMs: number;
  /** Use this connected socket for the next stream dial instead of opening one. */
  readonly socket?: Socket;
}

export interface ProbeTransport {
  /** For reports: "shadowsocks chacha20-ietf-poly1305", "trojan (TLS, SNI example.org)". */
  readonly name: string;
  readonly kind: 'shadowsocks' | 'trojan';
  /** The server as the key names it: a host name or an address, and a port. */
  readonly server: Target;
  /** TLS first (its handshake is a separate step of the check), with this SNI. */
  readonly tlsServerName?: string;
  /** The key's display name, if it has one. */
  readonly tag?: string;
  /** Dialers to the server at `address` (the probe resolves names itself). */
  dialers(address: string, o: DialerOptions): { stream: StreamDialer; packet?: PacketDialer };
}

/**
 * Every transport of one access key: one for ss:// and trojan://, each of the list of a ladder://
 * key (transports of schemes this Ladder cannot check are listed in `skipped`, as the client skips
 * them).
 */
export function keyTransports(uri: string): { transports: ProbeTransport[]; skipped: string[] } {
  const text = uri.trim();
  if (!/^ladder:/i.test(text)) return { transports: transportsFromKey(text), skipped: [] };
  const key = parseLadderKey(text);
  const transports: ProbeTransport[] = [];
  const skipped: string[] = [];
  key.transports.forEach((t, i) => {
    try {
      for (const one of transportsFromKey(t))
        transports.push(key.name && !one.tag ? { ...one, tag: key.name } : one);
    } catch (err) {
      if (err instanceof LadderError)
        skipped.push(`transport ${i + 1} of the ladder:// key: ${err.message}`);
      else throw err;
    }
  });
  return { transports, skipped };
}

/** The transport of one ss:// or trojan:// key URI. */
export function transportsFromKey(uri: string): ProbeTransport[] {
  const text = uri.trim();
  if (/^trojan:/i.test(text)) {
    const k = parseTrojanUri(text);
    const sni = k.sni ?? k.host;
    return [
      {
        name: `trojan (TLS, SNI ${sni})`,
        kind: 'trojan',
        server: { host: k.host, port: k.port },
        tlsServerName: sni,
        ...(k.tag ? { tag: k.tag } : {}),
        dialers(address, o) {
          const d = new TrojanDialer(
            { host: address, port: k.port },
            {
              password: k.password,
              sni,
              timeoutMs: o.timeoutMs,
              ...(k.pinSha256 ? { pinSha256: k.pinSha256 } : {}),
              // The key's TLS client, as `ladder client` uses it: the censor sees the same hello.
              fp: k.fp ?? DEFAULT_TLS_FINGERPRINT,
              ...(o.ca ? { ca: trustStore([o.ca])!.join('\n') } : {}),
              ...(o.socket ? { socket: o.socket } : {}),
            },
          );
          return { stream: d, packet: d };
        },
      },
    ];
  }
  if (/^ss:/i.test(text)) {
    const k = parseSsUri(text);
    if (k.plugin)
      throw new ConfigError(
        'ERR_KEY_URI',
        `probe: the key uses the plugin '${k.plugin.name}', which Ladder cannot run; give a key without a plugin`,
      );
    const key = makeCipherKey(k.method, k.password);
    return [
      {
        name: `shadowsocks ${k.method}${k.prefix ? ' (prefix)' : ''}`,
        kind: 'shadowsocks',
        server: { host: k.host, port: k.port },
        ...(k.tag ? { tag: k.tag } : {}),
        dialers(address, o) {
          const server = { host: address, port: k.port };
          const socket = o.socket;
          const stream = new SsStreamDialer(server, key, {
            connectTimeoutMs: o.timeoutMs,
            ...(socket ? { connect: () => Promise.resolve(socket) } : {}),
          });
          return { stream, packet: new SsPacketDialer(server, key) };
        },
      },
    ];
  }
  throw new ConfigError(
    'ERR_KEY_URI',
    `probe: '${text.slice(0, text.indexOf(':') + 1) || text.slice(0, 12)}' keys cannot be checked: give an ss://, trojan:// or ladder:// key`,
  );
}
