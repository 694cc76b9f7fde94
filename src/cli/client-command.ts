/**
 * `ladder client --server <ss-uri> --socks <host:port> --http <host:port>`
 * @module
 */
import { DEFAULT_HTTP_LISTEN, DEFAULT_SOCKS_LISTEN } from '../core/defaults.js';
import { LadderError } from '../errors.js';
import { useCongestionControl } from '../transport/congestion.js';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import { dialersForKey, serverEndpointsOfKey } from './key-dialers.js';
import { serverNamesOfKey } from '../transport/key-dialers.js';
import { serverLookup, warmLookup } from '../transport/server-lookup.js';
import {
  runTunCleanup,
  startTun,
  tunBypass,
  tunConfig,
  type TunConfig,
  type TunHandle,
} from './tun-command.js';
import { Socks5Server } from '../proxy/socks5-server.js';
import { HttpProxyServer } from '../proxy/http-proxy.js';
import { formatHostPort, parseFlags, parseHostPort, untilSignal } from './args.js';
import {
  directNameServer,
  buildRoutedDialer,
  ROUTING_FLAGS,
  ROUTING_HELP,
  routingConfig,
} from './routing-setup.js';
import {
  buildClientApp,
  startOnlineKeyClient,
  UI_FLAGS,
  UI_HELP,
  uiConfig,
  type ClientApp,
} from './client-app.js';
import type { ClientController } from '../app/client-controller.js';
import { isOnlineKeyUri } from '../codec/online-key.js';

const HELP = `ladder client --server <key> [--socks <host:port>] [--http <host:port>] [options]

Runs local proxies that carry every connection through the Ladder (or any Shadowsocks) server named
by the key URI.

options:
  --server <key>         the access key of the server to use: ss://, trojan://, or ladder://
                         (several transports, tried in order, moving on when one is blocked), or
                         an online key (ssconf://, https://, a Ladder signed key document's URL):
                         fetched at start, and again hourly and when no transport gets through
  --socks <host:port>    SOCKS5 proxy (CONNECT and UDP ASSOCIATE) (default 127.0.0.1:1080)
  --http <host:port>     HTTP proxy (CONNECT and plain requests) (default 127.0.0.1:8080)
  --no-socks, --no-http  do not start that proxy
  --user <name:password> require this username and password on both proxies
  --tun                  full-device VPN (Linux, root): every app's TCP, UDP and DNS through the
                         tunnel, with no proxy settings (docs/tun.md); starts no proxy unless
                         --socks or --http is given
  --tun-name <name>      the TUN device's name (default ladder0)
  --tun-mtu <n>          the TUN device's MTU, 576 to 65535 (default 65520)
  --no-kill-switch       with --tun: if the client dies, let traffic take the ordinary route
                         (default: it is dropped until the client runs again or --tun-cleanup)
  --tun-cleanup          remove the routing a killed --tun left behind, then exit (idempotent)
  --mux-sessions <n>     with a Mux.Cool key (trojan mux=n, v2ray-plugin): sessions one connection
                         carries in its life before a fresh one is opened (default 128, as v2ray;
                         1: a connection per session, each padded from its start)
  --mux-connections <n>  with a trojan Mux.Cool key: connections that sessions open at the same
                         time are spread over, opened together, 1 to 16 (default 3; 1: all on
                         one, as v2ray)
  --first-payload-wait <ms>
                         how long a new connection's request header waits for the app's first
                         bytes, to leave in one record with them, 1 to 60000 (default 50); raise
                         it on a slow device so that the header never leaves alone (docs/lab.md,
                         "TLS in TLS"); a server-speaks-first protocol waits this long once
  --max-connections-per-server <n>
                         hold at most n connections open to each server at once, 1 to 1024 (no
                         cap by default); more wait for one to close. Against connection-count
                         policing (Russia: about 6); keys with Mux.Cool are not capped (their
                         sessions share a few connections already)
  --rotate-after <size>  with a ladder:// key of several transports: after the one in use has
                         carried this many bytes (both ways; e.g. 512k, 2m), new connections use
                         the next. Against bans by traffic volume per server address
                         (Turkmenistan); give the key transports on different addresses, and a
                         size below the ban less the largest single download (docs/lab.md)
  --dns-tunnel-resolver <ip:port>
                         with a key that has dns=<domain> (the DNS tunnel, docs/access-keys.md):
                         the recursive resolver its queries go through (default: the system's
                         first resolver, port 53)
  --no-preconnect        do not open a connection ahead: by default, right after a connection to the
                         server opens, a plain Trojan, split or WebSocket key (one TLS or WebSocket
                         connection per request) opens the next request's connection too, closed
                         unused after 3 s; an idle client opens nothing (docs/access-keys.md)
  --tcp-congestion <name>
                         TCP congestion control of the client's connections to the server, e.g.
                         bbr (default: the system's, net.ipv4.tcp_congestion_control); an error
                         if the kernel lacks it

${ROUTING_HELP}

${UI_HELP}`;

const CLIENT_FLAGS = {
  server: { type: 'string' },
  socks: { type: 'string' },
  http: { type: 'string' },
  'no-socks': { type: 'boolean' },
  'no-http': { type: 'boolean' },
  user: { type: 'string' },
  'mux-sessions': { type: 'string' },
  'mux-connections': { type: 'string' },
  'first-payload-wait': { type: 'string' },
  'max-connections-per-server': { type: 'string' },
  'rotate-after': { type: 'string' },
  'dns-tunnel-resolver': { type: 'string' },
  'no-preconnect': { type: 'boolean' },
  tun: { type: 'boolean' },
  'tun-name': { type: 'string' },
  'tun-mtu': { type: 'string' },
  'no-kill-switch': { type: 'boolean' },
  'tun-cleanup': { type: 'boolean' },
  'tcp-congestion': { type: 'string' },
  ...ROUTING_FLAGS,
  ...UI_FLAGS,
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * The options every key's dialers get: Mux.Cool sessions and connections, first-payload wait,
 * connection cap, rotation volume, the DNS tunnel's resolver and connections opened ahead.
 */
function keyOptionsOf(values: {
  'mux-sessions'?: string | undefined;
  'mux-connections'?: string | undefined;
  'first-payload-wait'?: string | undefined;
  'max-connections-per-server'?: string | undefined;
  'rotate-after'?: string | undefined;
  'dns-tunnel-resolver'?: string | undefined;
  'no-preconnect'?: boolean | undefined;
}): {
  maxConnectionsPerServer?: number;
  rotateAfterBytes?: number;
  muxSessionsPerConnection?: number;
  muxConnections?: number;
  firstPayloadWaitMs?: number;
  dnsTunnelResolver?: { host: string; port: number };
  preconnect: boolean;
} {
  const muxSessionsPerConnection = wholeInRange(
    values['mux-sessions'],
    '--mux-sessions',
    1024,
    'the sessions per connection, 1 to 1024 (default 128)',
  );
  const muxConnections = wholeInRange(
    values['mux-connections'],
    '--mux-connections',
    16,
    'the connections to spread Mux.Cool sessions over, 1 to 16 (default 1)',
  );
  const firstPayloadWaitMs = wholeInRange(
    values['first-payload-wait'],
    '--first-payload-wait',
    60_000,
    'milliseconds, 1 to 60000 (default 50)',
  );
  const maxConnectionsPerServer = wholeInRange(
    values['max-connections-per-server'],
    '--max-connections-per-server',
    1024,
    'a number of connections, 1 to 1024',
  );
  const rotateAfterBytes = parseRotateAfter(values['rotate-after']);
  const resolverText = values['dns-tunnel-resolver'];
  const dnsTunnelResolver =
    resolverText !== undefined ? parseHostPort(resolverText, '--dns-tunnel-resolver') : undefined;
  return {
    preconnect: values['no-preconnect'] !== true,
    ...(dnsTunnelResolver ? { dnsTunnelResolver } : {}),
    ...(maxConnectionsPerServer !== undefined ? { maxConnectionsPerServer } : {}),
    ...(rotateAfterBytes !== undefined ? { rotateAfterBytes } : {}),
    ...(muxSessionsPerConnection ? { muxSessionsPerConnection } : {}),
    ...(muxConnections ? { muxConnections } : {}),
    ...(firstPayloadWaitMs !== undefined ? { firstPayloadWaitMs } : {}),
  };
}

type ClientFlags = ReturnType<typeof parseFlags<typeof CLIENT_FLAGS>>['values'];

/** What `ladder client` runs, from its flags; throws ERR_USAGE naming the flag and the fix. */
export interface ClientConfig {
  /** The --server key (absent with the control page and no key yet). */
  server: string | undefined;
  ui: ReturnType<typeof uiConfig>;
  keyOptions: ReturnType<typeof keyOptionsOf>;
  routing: ReturnType<typeof routingConfig>;
  users: Map<string, string> | undefined;
  /** With --tun; DIRECT names then resolve at the domestic resolver, around the device. */
  tun: TunConfig | undefined;
}

/** The client's flags as a config: pure, no I/O. */
export function clientConfig(values: ClientFlags): ClientConfig {
  const ui = uiConfig(values);
  if (!values.server && !ui)
    throw new LadderError('ERR_USAGE', "client: give the server's key with --server <ss-uri>");
  const keyOptions = keyOptionsOf(values);
  const routing = routingConfig(values);
  const users = parseUser(values.user);
  const tun = values.tun
    ? {
        ...tunConfig(values),
        // DIRECT names are resolved at the domestic resolver, around the device (tun-routing.ts)
        ...(routing ? { dnsDirect: directNameServer(routing) } : {}),
      }
    : undefined;
  return { server: values.server, ui, keyOptions, routing, users, tun };
}

/** Where the client's connections go: the control page's or the online key's, or the key's. */
interface ClientDialers {
  dialer: StreamDialer;
  packetDialer: PacketDialer;
  /** Lines to print once the proxies run. */
  started: string[];
  app: ClientApp | undefined;
  online: ClientController | undefined;
  /** The key in use at start, if any. */
  serverUri: string | undefined;
  /** Closes what the key's dialers opened ahead (the page's and online keys' close their own). */
  close(): void;
}

/**
 * The control page (--ui) or an online key's controller, which switch keys while running, or else
 * the one key's dialers. `beforeConnect` (under --tun) routes a key's servers around the device.
 */
async function clientDialers(
  cfg: ClientConfig,
  beforeConnect: ((uri: string) => void) | undefined,
): Promise<ClientDialers> {
  const { routing, keyOptions } = cfg;
  const print = (l: string): void => console.log(l);
  const tunHooks = beforeConnect ? { tun: { direct: tunBypass, beforeConnect } } : {};
  // An online key without the page: fetched now, and again while connected (client-app.ts).
  const online =
    !cfg.ui && cfg.server !== undefined && isOnlineKeyUri(cfg.server)
      ? await startOnlineKeyClient(cfg.server, { routing, keyOptions, print, ...tunHooks })
      : undefined;
  const serverUri = online?.activeUri() ?? cfg.server;
  const app = cfg.ui
    ? buildClientApp(cfg.ui, { routing, keyOptions, serverKey: cfg.server, print, ...tunHooks })
    : undefined;
  const controller = app?.controller ?? online;
  if (!controller)
    return {
      ...keyDialers(cfg.server!, routing, keyOptions, cfg.tun !== undefined),
      app,
      online,
      serverUri,
    };
  const started = online ? [`ladder client: carrying traffic through ${online.state().what}`] : [];
  const { dialer, packetDialer } = controller;
  return { dialer, packetDialer, started, app, online, serverUri, close: () => {} };
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('client', argv, CLIENT_FLAGS);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values['tun-cleanup']) return runTunCleanup((l) => console.log(l));
  const cfg = clientConfig(values);
  await useCongestionControl(values['tcp-congestion']);
  // Under --tun, a key the page connects has its servers routed around the device first.
  let tunHandle: TunHandle | undefined;
  const d = await clientDialers(
    cfg,
    cfg.tun ? (uri) => tunHandle?.addServers(serverEndpointsOfKey(uri)) : undefined,
  );
  const { dialer, packetDialer, app, online } = d;
  if (d.serverUri && !isOnlineKeyUri(d.serverUri))
    warmLookup(serverLookup, serverNamesOfKey(d.serverUri));
  const closers: (() => Promise<void>)[] = [];
  if (cfg.tun) {
    tunHandle = await startTun(
      cfg.tun,
      { stream: dialer, packet: packetDialer },
      d.serverUri && !isOnlineKeyUri(d.serverUri) ? serverEndpointsOfKey(d.serverUri) : [],
      (l) => console.log(l),
    );
    closers.push(tunHandle);
  }
  // With --tun, a proxy runs only when its flag is given.
  const proxies = await startProxies(values, cfg.tun !== undefined, {
    dialer,
    packetDialer,
    users: cfg.users,
  });
  closers.push(...proxies.closers);
  if (closers.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      'client: with both --no-socks and --no-http there is nothing to run',
    );
  for (const line of d.started) console.log(line);
  await app?.start(proxies.ports);
  await untilSignal();
  await app?.close();
  online?.disconnect();
  d.close();
  await Promise.all(closers.map((c) => c()));
  return 0;
}

/**
 * A whole number from 1 to `max` (no more digits than `max` has), or ERR_USAGE saying what the
 * flag must be.
 */
function wholeInRange(
  text: string | undefined,
  flag: string,
  max: number,
  what: string,
): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!new RegExp(`^[0-9]{1,${String(max).length}}$`).test(text) || n < 1 || n > max)
    throw new LadderError('ERR_USAGE', `${flag} '${text.slice(0, 20)}' must be ${what}`);
  return n;
}

/** `--rotate-after`: bytes, with an optional k, m or g (binary multiples). */
export function parseRotateAfter(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^([0-9]{1,10})([kmg]?)$/i.exec(text.trim());
  const n = m ? Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase()) : NaN;
  if (!m || !Number.isSafeInteger(n) || n < 1024 || n > 2 ** 40)
    throw new LadderError(
      'ERR_USAGE',
      `--rotate-after '${text.slice(0, 20)}' must be a size from 1k to 1024g, e.g. 512k or 2m (bytes, or k, m, g)`,
    );
  return n;
}

function parseUser(text: string | undefined): Map<string, string> | undefined {
  if (text === undefined) return undefined;
  const i = text.indexOf(':');
  if (i <= 0)
    throw new LadderError('ERR_USAGE', '--user takes name:password, e.g. --user alice:secret');
  return new Map([[text.slice(0, i), text.slice(i + 1)]]);
}

/** The dialers of the key (with --rules, routed), and the lines to print once proxies run. */
function keyDialers(
  serverKey: string,
  routing: ReturnType<typeof routingConfig>,
  keyOptions: Parameters<typeof dialersForKey>[2],
  tun: boolean,
): { dialer: StreamDialer; packetDialer: PacketDialer; started: string[]; close(): void } {
  const d = dialersForKey(
    serverKey,
    (to, why) => console.log(`ladder client: now using ${to} (${why})`),
    keyOptions,
  );
  for (const s of d.skipped) console.log(`ladder client: skipping ${s}`);
  const routed = routing
    ? buildRoutedDialer(routing, d, {
        log: (line) => console.log(line),
        // Under --tun, DIRECT connections bind to the machine's own address: routing sends those
        // around the device (docs/tun.md, "DIRECT connections").
        ...(tun ? { direct: tunBypass } : {}),
      })
    : undefined;
  const started = [`ladder client: carrying traffic through ${d.what}`];
  if (routed) started.push(`ladder client: routing by ${routing!.rules}`);
  return {
    dialer: routed ?? d.stream,
    packetDialer: routed ?? d.packet,
    started,
    close: () => d.close(),
  };
}

/** The SOCKS5 and HTTP proxies asked for (with --tun, only those whose flag is given). */
async function startProxies(
  values: { socks?: string; http?: string; 'no-socks'?: boolean; 'no-http'?: boolean },
  tun: boolean,
  d: { dialer: StreamDialer; packetDialer: PacketDialer; users: Map<string, string> | undefined },
): Promise<{ closers: (() => Promise<void>)[]; ports: { socks?: number; http?: number } }> {
  const { dialer, packetDialer, users } = d;
  const closers: (() => Promise<void>)[] = [];
  const ports: { socks?: number; http?: number } = {};
  if (!values['no-socks'] && (!tun || values.socks !== undefined)) {
    const at = parseHostPort(values.socks ?? DEFAULT_SOCKS_LISTEN, '--socks');
    const socks = new Socks5Server({ dialer, packetDialer, ...(users ? { users } : {}) });
    const a = await socks.listen(at.host, at.port);
    ports.socks = a.port;
    closers.push(() => socks.close());
    console.log(`ladder client: SOCKS5 listening on ${formatHostPort(a.address, a.port)}`);
  }
  if (!values['no-http'] && (!tun || values.http !== undefined)) {
    const at = parseHostPort(values.http ?? DEFAULT_HTTP_LISTEN, '--http');
    const http = new HttpProxyServer({ dialer, ...(users ? { users } : {}) });
    const a = await http.listen(at.host, at.port);
    ports.http = a.port;
    closers.push(() => http.close());
    console.log(`ladder client: HTTP proxy listening on ${formatHostPort(a.address, a.port)}`);
  }
  return { closers, ports };
}
