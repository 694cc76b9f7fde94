/**
 * The transports an access key offers, as the probe needs them: where the server is, whether the
 * transport starts with TLS, and how to build its dialers over a connection the probe opened (so each
 * step can be timed and its failure named). A ladder:// key carries several transports; the probe
 * checks each one.
 * @module
 */
import type { Socket } from 'node:net';
import { parseLadderKey } from '../codec/ladder-key.js';
import type { TlsFingerprint } from '../codec/tls-fingerprint-param.js';
import { ConfigError, LadderError } from '../errors.js';
import { keyTransport, type KeyEnv } from '../transport/key-dialers.js';
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
  /** The client carries many streams on one connection with it (Mux.Cool). */
  readonly multiplexed?: boolean;
  /** The key's display name, if it has one. */
  readonly tag?: string;
  /** Dialers to the server at `address` (the probe resolves names itself). */
  dialers(address: string, o: DialerOptions): { stream: StreamDialer; packet?: PacketDialer };
}

/**
 * The probe reads no files (a key with a plugin is refused before anything is read) and, unless
 * the caller says where, keeps a key's warnings to itself: the report says what was checked.
 */
const quietEnv: KeyEnv = {
  readFile: (path) => {
    throw new ConfigError(
      'ERR_KEY_URI',
      `probe: the key names a file (${path}); give a key without one`,
    );
  },
  warn: () => {},
};

/**
 * Every transport of one access key: one for ss:// and trojan://, each of the list of a ladder://
 * key (transports of schemes this Ladder cannot check are listed in `skipped`, as the client skips
 * them).
 */
export function keyTransports(
  uri: string,
  env: KeyEnv = quietEnv,
): { transports: ProbeTransport[]; skipped: string[] } {
  const text = uri.trim();
  if (!/^ladder:/i.test(text)) return { transports: transportsFromKey(text, env), skipped: [] };
  const key = parseLadderKey(text);
  const transports: ProbeTransport[] = [];
  const skipped: string[] = [];
  key.transports.forEach((t, i) => {
    try {
      for (const one of transportsFromKey(t, env, key.fp))
        transports.push(key.name && !one.tag ? { ...one, tag: key.name } : one);
    } catch (err) {
      if (err instanceof LadderError)
        skipped.push(`transport ${i + 1} of the ladder:// key: ${err.message}`);
      else throw err;
    }
  });
  return { transports, skipped };
}

/**
 * The transport of one ss:// or trojan:// key URI, built by the client's builder
 * (transport/key-dialers.ts) on one connection per dial: a WebSocket goes over it, but no Mux.Cool
 * pool or split, so each step of that connection can be timed. `fp` is a ladder:// key's TLS client.
 */
export function transportsFromKey(
  uri: string,
  env: KeyEnv = quietEnv,
  fp?: TlsFingerprint,
): ProbeTransport[] {
  const text = uri.trim();
  if (!/^(ss|trojan):/i.test(text))
    throw new ConfigError(
      'ERR_KEY_URI',
      `probe: '${text.slice(0, text.indexOf(':') + 1) || text.slice(0, 12)}' keys cannot be checked: give an ss://, trojan:// or ladder:// key`,
    );
  const k = keyTransport(text, fp ? { fp } : {}, env);
  const dialers = (address: string, o: DialerOptions) =>
    k.dialers({
      address,
      plain: true,
      timeoutMs: o.timeoutMs,
      // The key's TLS client, as `ladder client` uses it: the censor sees the same hello.
      ...(o.ca && k.tlsServerName ? { ca: trustStore([o.ca])!.join('\n') } : {}),
      ...(o.socket ? { socket: o.socket } : {}),
    });
  const over = [
    k.webSocket ? 'WebSocket' : '',
    k.tlsServerName ? `TLS, SNI ${k.tlsServerName}` : '',
    k.multiplexed ? 'Mux.Cool' : '',
  ].filter(Boolean);
  const common = {
    server: k.server,
    ...(k.tag ? { tag: k.tag } : {}),
    ...(k.tlsServerName ? { tlsServerName: k.tlsServerName } : {}),
    ...(k.multiplexed ? { multiplexed: true } : {}),
    dialers,
  };
  if (k.kind === 'trojan')
    return [{ ...common, name: `trojan (${over.join(', ')})`, kind: 'trojan' }];
  const what = `shadowsocks ${k.method}${k.prefixed ? ' (prefix)' : ''}`;
  return [
    {
      ...common,
      name: over.length > 0 ? `${what} (${over.join(', ')})` : what,
      kind: 'shadowsocks',
    },
  ];
}
