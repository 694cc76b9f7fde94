/**
 * `ladder server --listen <host:port> --key <ss-uri> [--key <ss-uri> ...]`
 * @module
 */
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { parseTrojanUri } from '../codec/trojan-uri.js';
import { trojanPasswordHash } from '../codec/trojan.js';
import { issueCertificate } from '../codec/x509.js';
import { PortMux } from '../server/port-mux.js';
import { TrojanHandler, type TrojanUser } from '../server/trojan-server.js';
import { TlsInnerFront, WsFront, WsListener } from '../server/ws-front.js';
import { v2rayPluginOptions } from '../codec/v2ray-plugin.js';
import { DecoySite, ForwardFallback, type Fallback } from '../server/decoy/decoy-site.js';
import { LadderError } from '../errors.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import { parseSsUri } from '../codec/access-key-uri.js';
import type { SsServerKey } from '../codec/ss-tcp.js';
import { SsServer } from '../server/ss-server.js';
import { DirectDialer, DirectPacketDialer } from '../transport/direct.js';
import { PublicOnlyDialer, PublicOnlyPacketDialer } from '../transport/guarded-dialer.js';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import {
  formatHostPort,
  parseCount,
  parseFlags,
  parseHostPort,
  parseSeconds,
  untilSignal,
} from './args.js';

const HELP = `ladder server --listen <host:port> --key <ss-uri> [--key <ss-uri> ...] [options]

Serves Shadowsocks (AEAD-2017 and 2022) on one TCP port and the same UDP port, for every key given.
The host and port inside each key URI are ignored by the server.

options:
  --listen <host:port>       address to listen on (default 0.0.0.0:8388)
  --key <uri>                an access key (repeat for more): ss:// (Shadowsocks) or trojan:// (Trojan
                             over TLS, on the same port); make one with 'ladder keys new'
  --tls-cert <file> --tls-key <file>
                             certificate and key (PEM) for the TLS transports; without them a
                             self-signed certificate is made at start and its SHA-256 printed (pin it
                             in keys with ?pin=...)
  --decoy-dir <dir>          serve these files to TLS visitors without a key (default: built-in site)
  --fallback <host:port>     or forward TLS visitors without a key to this web server
  --ws-listen <host:port>    also serve the WebSocket keys as plain HTTP here (no TLS), for a CDN or
                             reverse proxy that terminates TLS in front of the server. WebSocket keys:
                             ss:// with plugin=v2ray-plugin;path=...; trojan:// with type=ws&path=...
                             (they are always served on the TLS port of --listen too)
  --no-udp                   do not relay UDP
  --allow-private-targets    let clients reach private and loopback addresses through the server
                             (default: only when --listen is a loopback address)
  --auth-timeout <s>         close unauthenticated connections after this long (default 60)
  --idle-timeout <s>         close idle connections after this long (default 300)
  --max-connections <n>      connections at once (default 8192)`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('server', argv, {
    listen: { type: 'string' },
    key: { type: 'string', multiple: true },
    'no-udp': { type: 'boolean' },
    'allow-private-targets': { type: 'boolean' },
    'auth-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'max-connections': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'decoy-dir': { type: 'string' },
    fallback: { type: 'string' },
    'ws-listen': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const listen = parseHostPort(values.listen ?? '0.0.0.0:8388', '--listen', '0.0.0.0');
  const uris = values.key ?? [];
  if (uris.length === 0) {
    throw new LadderError(
      'ERR_USAGE',
      "server: give at least one --key <ss-uri> (make one with 'ladder keys new --method 2022-blake3-aes-256-gcm')",
    );
  }
  const keys: SsServerKey[] = [];
  const trojanUsers: TrojanUser[] = [];
  // WebSocket keys: their secret paths, and whether any is plain (no TLS: for --ws-listen).
  const wsPaths: string[] = [];
  let wsPlain = false;
  uris.forEach((uri, i) => {
    try {
      if (/^trojan:/i.test(uri.trim())) {
        const t = parseTrojanUri(uri);
        trojanUsers.push({
          id: t.tag && t.tag.length > 0 ? t.tag : `key-${i + 1}`,
          hash: trojanPasswordHash(t.password),
        });
        if (t.type === 'ws') {
          wsPaths.push(t.path ?? '/');
          wsPlain ||= t.security === 'none';
        }
        return;
      }
      const k = parseSsUri(uri);
      const ws = v2rayPluginOptions(k.plugin);
      if (ws) {
        wsPaths.push(ws.path);
        wsPlain ||= !ws.tls;
      }
      keys.push({
        id: k.tag && k.tag.length > 0 ? k.tag : `key-${i + 1}`,
        key: makeCipherKey(k.method, k.password),
      });
    } catch (err) {
      if (err instanceof LadderError)
        throw new LadderError(err.code, `--key #${i + 1}: ${err.message}`, { cause: err });
      throw err;
    }
  });
  const ids = new Set<string>();
  for (const k of [...keys, ...trojanUsers]) {
    if (ids.has(k.id))
      throw new LadderError(
        'ERR_USAGE',
        `two keys share the name '${k.id}'; give each key URI its own #tag`,
      );
    ids.add(k.id);
  }
  const loopback = isLoopback(listen.host);
  const allowPrivate = values['allow-private-targets'] ?? loopback;
  // The relay honours borrowed chunks, so the server's upstream reads can use recycled memory.
  let dialer: StreamDialer = new DirectDialer({ recycleReads: true });
  let packetDialer: PacketDialer | undefined = values['no-udp']
    ? undefined
    : new DirectPacketDialer();
  if (!allowPrivate) {
    dialer = new PublicOnlyDialer(dialer);
    if (packetDialer) packetDialer = new PublicOnlyPacketDialer(packetDialer);
  }
  const server = new SsServer({
    keys,
    dialer,
    ...(packetDialer ? { packetDialer } : {}),
    authTimeoutMs: parseSeconds(values['auth-timeout'], '--auth-timeout', 60_000),
    idleTimeoutMs: parseSeconds(values['idle-timeout'], '--idle-timeout', 300_000),
    maxConnections: parseCount(values['max-connections'], '--max-connections', 8192),
  });
  let closeAll: () => Promise<void> = () => server.close(5_000);
  let tlsNote = '';
  let addr;
  const wsListenAt = values['ws-listen']
    ? parseHostPort(values['ws-listen'], '--ws-listen', '0.0.0.0')
    : null;
  if (wsListenAt && wsPaths.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      '--ws-listen needs WebSocket keys: ss:// with plugin=v2ray-plugin;path=/... or trojan:// with type=ws&path=/... (ladder keys new --transport ws)',
    );
  if (trojanUsers.length === 0 && wsPaths.length === 0) {
    addr = await server.listen(listen.host, listen.port);
  } else {
    let cert: string;
    let key: string;
    if (values['tls-cert'] || values['tls-key']) {
      if (!values['tls-cert'] || !values['tls-key'])
        throw new LadderError('ERR_USAGE', 'give both --tls-cert and --tls-key');
      cert = readPem(values['tls-cert'], '--tls-cert');
      key = readPem(values['tls-key'], '--tls-key');
    } else {
      const made = issueCertificate({
        commonName: 'localhost',
        altNames: [
          'localhost',
          listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host,
        ],
        serial: randomBytes(16),
      });
      cert = made.cert;
      key = made.key;
      tlsNote = `\nladder server: TLS certificate made at start (self-signed, not kept across restarts): SHA-256 ${made.fingerprint256}\nladder server: clients pin it with ?pin=${made.fingerprint256.replace(/:/g, '').toLowerCase()} in their trojan:// key (;pin=... in a v2ray-plugin key)`;
    }
    let fallback: Fallback;
    if (values.fallback)
      fallback = new ForwardFallback(
        parseHostPort(values.fallback, '--fallback'),
        new DirectDialer(),
      );
    else fallback = new DecoySite(values['decoy-dir'] ? { dir: values['decoy-dir'] } : {});
    const authTimeoutMs = parseSeconds(values['auth-timeout'], '--auth-timeout', 60_000);
    const trojan =
      trojanUsers.length > 0
        ? new TrojanHandler({
            users: trojanUsers,
            dialer,
            ...(packetDialer ? { packetDialer } : {}),
            fallback,
          })
        : undefined;
    const web =
      wsPaths.length > 0
        ? new WsFront({
            paths: wsPaths,
            ss: server,
            ...(trojan ? { trojan } : {}),
            fallback,
            authTimeoutMs,
          })
        : undefined;
    const mux = new PortMux({
      ss: server,
      tls: {
        secureContext: createSecureContext({ cert, key }),
        handler: web ? new TlsInnerFront({ ...(trojan ? { trojan } : {}), web }) : trojan!,
      },
      authTimeoutMs,
    });
    addr = await mux.listen(listen.host, listen.port);
    let wsListener: WsListener | null = null;
    if (wsListenAt && web) {
      wsListener = new WsListener(web);
      try {
        const a = await wsListener.listen(wsListenAt.host, wsListenAt.port);
        tlsNote += `\nladder server: plain WebSocket (for a CDN or reverse proxy) listening on ${formatHostPort(a.address, a.port)}`;
      } catch (err) {
        await mux.close(0);
        throw err;
      }
    } else if (wsPlain) {
      tlsNote +=
        '\nladder server: note: a WebSocket key has no tls; it is served on the TLS port only, unless you add --ws-listen host:port for the plain WebSocket';
    }
    if (web) tlsNote += `\nladder server: WebSocket on ${new Set(wsPaths).size} secret path(s)`;
    closeAll = async () => {
      await wsListener?.close();
      await mux.close(5_000);
      fallback.close();
    };
  }
  const methods = new Map<string, number>();
  for (const k of keys) methods.set(k.key.method, (methods.get(k.key.method) ?? 0) + 1);
  if (trojanUsers.length > 0) methods.set('trojan over TLS', trojanUsers.length);
  const summary = [...methods].map(([m, n]) => `${m} x${n}`).join(', ');
  const total = keys.length + trojanUsers.length;
  console.log(
    `ladder server listening on ${formatHostPort(addr.address, addr.port)} (tcp${packetDialer ? '+udp' : ''}), ${total} key${total === 1 ? '' : 's'}: ${summary}${tlsNote}`,
  );
  const sig = await untilSignal();
  console.log(`ladder server: ${sig}, closing (open connections get up to 5 s)`);
  await closeAll();
  return 0;
}

function readPem(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new LadderError(
      'ERR_USAGE',
      `${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
