/**
 * `ladder server --listen <host:port> --key <ss-uri> [--key <ss-uri> ...]`
 * @module
 */
import { isIP } from 'node:net';
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
  --key <ss-uri>             an access key (repeat for more); make one with 'ladder keys new'
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
  const keys: SsServerKey[] = uris.map((uri, i) => {
    try {
      const k = parseSsUri(uri);
      return {
        id: k.tag && k.tag.length > 0 ? k.tag : `key-${i + 1}`,
        key: makeCipherKey(k.method, k.password),
      };
    } catch (err) {
      if (err instanceof LadderError)
        throw new LadderError(err.code, `--key #${i + 1}: ${err.message}`, { cause: err });
      throw err;
    }
  });
  const ids = new Set<string>();
  for (const k of keys) {
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
  const addr = await server.listen(listen.host, listen.port);
  const methods = new Map<string, number>();
  for (const k of keys) methods.set(k.key.method, (methods.get(k.key.method) ?? 0) + 1);
  const summary = [...methods].map(([m, n]) => `${m} x${n}`).join(', ');
  console.log(
    `ladder server listening on ${formatHostPort(addr.address, addr.port)} (tcp${packetDialer ? '+udp' : ''}), ${keys.length} key${keys.length === 1 ? '' : 's'}: ${summary}`,
  );
  const sig = await untilSignal();
  console.log(`ladder server: ${sig}, closing (open connections get up to 5 s)`);
  await server.close(5_000);
  return 0;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
