/**
 * `ladder client --server <ss-uri> --socks <host:port> --http <host:port>`
 * @module
 */
import { LadderError } from '../errors.js';
import { useCongestionControl } from '../transport/congestion.js';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import { dialersForKey, serverEndpointsOfKey } from './key-dialers.js';
import { runTunCleanup, startTun, tunBypass, tunConfig } from './tun-command.js';
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
import { buildClientApp, UI_FLAGS, UI_HELP, uiConfig } from './client-app.js';

const HELP = `ladder client --server <key> [--socks <host:port>] [--http <host:port>] [options]

Runs local proxies that carry every connection through the Ladder (or any Shadowsocks) server named
by the key URI.

options:
  --server <key>         the access key of the server to use: ss://, trojan://, or ladder://
                         (several transports, tried in order, moving on when one is blocked)
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
  --tcp-congestion <name>
                         TCP congestion control of the client's connections to the server, e.g.
                         bbr (default: the system's, net.ipv4.tcp_congestion_control); an error
                         if the kernel lacks it

${ROUTING_HELP}

${UI_HELP}`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('client', argv, {
    server: { type: 'string' },
    socks: { type: 'string' },
    http: { type: 'string' },
    'no-socks': { type: 'boolean' },
    'no-http': { type: 'boolean' },
    user: { type: 'string' },
    'mux-sessions': { type: 'string' },
    tun: { type: 'boolean' },
    'tun-name': { type: 'string' },
    'tun-mtu': { type: 'string' },
    'no-kill-switch': { type: 'boolean' },
    'tun-cleanup': { type: 'boolean' },
    'tcp-congestion': { type: 'string' },
    ...ROUTING_FLAGS,
    ...UI_FLAGS,
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values['tun-cleanup']) return runTunCleanup((l) => console.log(l));
  const ui = uiConfig(values);
  if (ui && values.tun)
    throw new LadderError(
      'ERR_USAGE',
      '--ui and --tun cannot be combined yet (the page may switch to a server the device routes through the tunnel); drop one',
    );
  if (!values.server && !ui)
    throw new LadderError('ERR_USAGE', "client: give the server's key with --server <ss-uri>");
  let muxSessionsPerConnection: number | undefined;
  if (values['mux-sessions'] !== undefined) {
    const text = values['mux-sessions'];
    muxSessionsPerConnection = Number(text);
    if (
      !/^[0-9]{1,4}$/.test(text) ||
      muxSessionsPerConnection < 1 ||
      muxSessionsPerConnection > 1024
    )
      throw new LadderError(
        'ERR_USAGE',
        `--mux-sessions '${text.slice(0, 20)}' must be the sessions per connection, 1 to 1024 (default 128)`,
      );
  }
  await useCongestionControl(values['tcp-congestion']);
  const routing = routingConfig(values);
  const keyOptions = muxSessionsPerConnection ? { muxSessionsPerConnection } : {};
  const app = ui
    ? buildClientApp(ui, {
        routing,
        keyOptions,
        serverKey: values.server,
        print: (l) => console.log(l),
      })
    : undefined;
  let dialer: StreamDialer;
  let packetDialer: PacketDialer;
  const started: string[] = [];
  if (app) ({ dialer, packetDialer } = app.controller);
  else {
    const keyDialers = dialersForKey(
      values.server!,
      (to, why) => console.log(`ladder client: now using ${to} (${why})`),
      keyOptions,
    );
    for (const s of keyDialers.skipped) console.log(`ladder client: skipping ${s}`);
    const routed = routing
      ? buildRoutedDialer(routing, keyDialers, {
          log: (line) => console.log(line),
          // Under --tun, DIRECT connections bind to the machine's own address: routing sends those
          // around the device (docs/tun.md, "DIRECT connections").
          ...(values.tun ? { direct: tunBypass } : {}),
        })
      : undefined;
    dialer = routed ?? keyDialers.stream;
    packetDialer = routed ?? keyDialers.packet;
    started.push(`ladder client: carrying traffic through ${keyDialers.what}`);
    if (routed) started.push(`ladder client: routing by ${routing!.rules}`);
  }
  let users: Map<string, string> | undefined;
  if (values.user !== undefined) {
    const i = values.user.indexOf(':');
    if (i <= 0)
      throw new LadderError('ERR_USAGE', '--user takes name:password, e.g. --user alice:secret');
    users = new Map([[values.user.slice(0, i), values.user.slice(i + 1)]]);
  }
  const closers: (() => Promise<void>)[] = [];
  const ports: { socks?: number; http?: number } = {};
  // With --tun, a proxy runs only when its flag is given.
  const tun = values.tun
    ? {
        ...tunConfig(values),
        // DIRECT names are resolved at the domestic resolver, around the device (tun-routing.ts)
        ...(routing ? { dnsDirect: directNameServer(routing) } : {}),
      }
    : undefined;
  if (tun)
    closers.push(
      await startTun(
        tun,
        { stream: dialer, packet: packetDialer },
        serverEndpointsOfKey(values.server!),
        (l) => console.log(l),
      ),
    );
  if (!values['no-socks'] && (!tun || values.socks !== undefined)) {
    const at = parseHostPort(values.socks ?? '127.0.0.1:1080', '--socks');
    const socks = new Socks5Server({ dialer, packetDialer, ...(users ? { users } : {}) });
    const a = await socks.listen(at.host, at.port);
    ports.socks = a.port;
    closers.push(() => socks.close());
    console.log(`ladder client: SOCKS5 listening on ${formatHostPort(a.address, a.port)}`);
  }
  if (!values['no-http'] && (!tun || values.http !== undefined)) {
    const at = parseHostPort(values.http ?? '127.0.0.1:8080', '--http');
    const http = new HttpProxyServer({ dialer, ...(users ? { users } : {}) });
    const a = await http.listen(at.host, at.port);
    ports.http = a.port;
    closers.push(() => http.close());
    console.log(`ladder client: HTTP proxy listening on ${formatHostPort(a.address, a.port)}`);
  }
  if (closers.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      'client: with both --no-socks and --no-http there is nothing to run',
    );
  for (const line of started) console.log(line);
  await app?.start(ports);
  await untilSignal();
  await app?.close();
  await Promise.all(closers.map((c) => c()));
  return 0;
}
