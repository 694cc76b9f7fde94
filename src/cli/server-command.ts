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
  uris.forEach((uri, i) => {
    try {
      if (/^trojan:/i.test(uri.trim())) {
        const t = parseTrojanUri(uri);
        trojanUsers.push({
          id: t.tag && t.tag.length > 0 ? t.tag : `key-${i + 1}`,
          hash: trojanPasswordHash(t.password),
        });
        return;
      }
      const k = parseSsUri(uri);
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
  if (trojanUsers.length === 0) {
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
      tlsNote = `\nladder server: TLS certificate made at start (self-signed, not kept across restarts): SHA-256 ${made.fingerprint256}\nladder server: clients pin it with ?pin=${made.fingerprint256.replace(/:/g, '').toLowerCase()} in their trojan:// key`;
    }
    let fallback: Fallback;
    if (values.fallback)
      fallback = new ForwardFallback(
        parseHostPort(values.fallback, '--fallback'),
        new DirectDialer(),
      );
    else fallback = new DecoySite(values['decoy-dir'] ? { dir: values['decoy-dir'] } : {});
    const trojan = new TrojanHandler({
      users: trojanUsers,
      dialer,
      ...(packetDialer ? { packetDialer } : {}),
      fallback,
    });
    const mux = new PortMux({
      ss: server,
      tls: { secureContext: createSecureContext({ cert, key }), trojan },
      authTimeoutMs: parseSeconds(values['auth-timeout'], '--auth-timeout', 60_000),
    });
    addr = await mux.listen(listen.host, listen.port);
    closeAll = async () => {
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
