/**
 * `ladder client --server <ss-uri> --socks <host:port> --http <host:port>`
 * @module
 */
import { LadderError } from '../errors.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import { parseSsUri } from '../codec/access-key-uri.js';
import { SsPacketDialer, SsStreamDialer } from '../transport/ss-dialer.js';
import { TrojanDialer } from '../transport/trojan-dialer.js';
import { parseTrojanUri } from '../codec/trojan-uri.js';
import { v2rayPluginOptions } from '../codec/v2ray-plugin.js';
import { wsConnector } from '../transport/ws-dialer.js';
import { readFileSync } from 'node:fs';
import type { PacketDialer, StreamDialer, Target } from '../transport/types.js';
import { Socks5Server } from '../proxy/socks5-server.js';
import { HttpProxyServer } from '../proxy/http-proxy.js';
import { formatHostPort, parseFlags, parseHostPort, untilSignal } from './args.js';

const HELP = `ladder client --server <ss-uri> [--socks <host:port>] [--http <host:port>] [options]

Runs local proxies that carry every connection through the Ladder (or any Shadowsocks) server named
by the key URI.

options:
  --server <ss-uri>      the access key of the server to use
  --socks <host:port>    SOCKS5 proxy (CONNECT and UDP ASSOCIATE) (default 127.0.0.1:1080)
  --http <host:port>     HTTP proxy (CONNECT and plain requests) (default 127.0.0.1:8080)
  --no-socks, --no-http  do not start that proxy
  --user <name:password> require this username and password on both proxies`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('client', argv, {
    server: { type: 'string' },
    socks: { type: 'string' },
    http: { type: 'string' },
    'no-socks': { type: 'boolean' },
    'no-http': { type: 'boolean' },
    user: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!values.server)
    throw new LadderError('ERR_USAGE', "client: give the server's key with --server <ss-uri>");
  let dialer: StreamDialer;
  let packetDialer: PacketDialer;
  let server: Target;
  let what: string;
  if (/^trojan:/i.test(values.server.trim())) {
    const t = parseTrojanUri(values.server);
    server = { host: t.host, port: t.port };
    const tls = {
      sni: t.sni ?? t.wsHost ?? t.host,
      ...(t.pinSha256 ? { pinSha256: t.pinSha256 } : {}),
    };
    const d = new TrojanDialer(server, {
      password: t.password,
      ...tls,
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
    dialer = d;
    packetDialer = d;
    what =
      t.type === 'ws'
        ? `trojan over WebSocket${t.security === 'none' ? '' : ' over TLS'}`
        : 'trojan over TLS';
    if (t.pinSha256) what += ' (pinned certificate)';
  } else {
    const k = parseSsUri(values.server);
    const key = makeCipherKey(k.method, k.password);
    server = { host: k.host, port: k.port };
    const ws = v2rayPluginOptions(k.plugin);
    if (k.plugin && !ws)
      throw new LadderError(
        'ERR_USAGE',
        `client: the key's plugin '${k.plugin.name}' is not built in (Ladder speaks v2ray-plugin's WebSocket mode); remove plugin= to use plain Shadowsocks`,
      );
    dialer = new SsStreamDialer(
      server,
      key,
      ws
        ? {
            connect: wsConnector(server, {
              path: ws.path,
              host: ws.host,
              mux: ws.mux ? (ws.muxConcurrency ?? 1) : 0,
              ...(ws.tls
                ? {
                    tls: {
                      sni: ws.host,
                      ...(ws.pinSha256 ? { pinSha256: ws.pinSha256 } : {}),
                      ...(ws.cert ? { ca: readPem(ws.cert) } : {}),
                    },
                  }
                : {}),
            }),
          }
        : {},
    );
    // SIP003: UDP does not go through the plugin; it goes to the server's own UDP port.
    packetDialer = new SsPacketDialer(server, key);
    what = ws
      ? `${k.method} over WebSocket${ws.tls ? ' over TLS' : ''}${ws.mux ? ' (Mux.Cool)' : ''}`
      : k.method;
  }
  let users: Map<string, string> | undefined;
  if (values.user !== undefined) {
    const i = values.user.indexOf(':');
    if (i <= 0)
      throw new LadderError('ERR_USAGE', '--user takes name:password, e.g. --user alice:secret');
    users = new Map([[values.user.slice(0, i), values.user.slice(i + 1)]]);
  }
  const closers: (() => Promise<void>)[] = [];
  if (!values['no-socks']) {
    const at = parseHostPort(values.socks ?? '127.0.0.1:1080', '--socks');
    const socks = new Socks5Server({ dialer, packetDialer, ...(users ? { users } : {}) });
    const a = await socks.listen(at.host, at.port);
    closers.push(() => socks.close());
    console.log(`ladder client: SOCKS5 listening on ${formatHostPort(a.address, a.port)}`);
  }
  if (!values['no-http']) {
    const at = parseHostPort(values.http ?? '127.0.0.1:8080', '--http');
    const http = new HttpProxyServer({ dialer, ...(users ? { users } : {}) });
    const a = await http.listen(at.host, at.port);
    closers.push(() => http.close());
    console.log(`ladder client: HTTP proxy listening on ${formatHostPort(a.address, a.port)}`);
  }
  if (closers.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      'client: with both --no-socks and --no-http there is nothing to run',
    );
  console.log(
    `ladder client: carrying traffic through ${formatHostPort(server.host, server.port)} with ${what}`,
  );
  await untilSignal();
  await Promise.all(closers.map((c) => c()));
  return 0;
}

function readPem(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new LadderError(
      'ERR_USAGE',
      `the key's v2ray-plugin cert=${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
    );
  }
}
