/**
 * Builders for `ladder server`: each takes the checked {@link ServerConfig} and makes one part of the
 * running server (upstream dialers, the operator, the TLS port, the API and metrics surfaces).
 * server-command.ts composes them; nothing here parses flags.
 * @module
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { DEFAULT_CLOSE_GRACE_MS } from '../core/defaults.js';
import { LadderError } from '../errors.js';
import type { ManagementApi } from '../admin/api.js';
import { CountingGate, PerKeyCapGate, type AccessGate } from '../server/access/gate.js';
import type { Fallback } from '../server/decoy/decoy-site.js';
import { Metrics } from '../server/metrics.js';
import { PreAuthGuard } from '../server/pre-auth.js';
import { SsServer } from '../server/ss-server.js';
import type { TrojanHandler } from '../server/trojan-server.js';
import type { TlsInnerFront, WsFront, WsListener } from '../server/ws-front.js';
import type { PortMux } from '../server/port-mux.js';
import { DnsTunnelServer } from '../transport/dns-tunnel-server.js';
import { DirectDialer, DirectPacketDialer } from '../transport/direct.js';
import {
  PublicOnlyDialer,
  PublicOnlyPacketDialer,
  resolveAllowed,
} from '../transport/guarded-dialer.js';
import { HostsDialer, HostsPacketDialer, parseHosts } from '../transport/hosts.js';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import { NameCachingPacketDialer } from '../transport/udp-name-cache.js';
import { formatHostPort } from './args.js';
import type { Operator } from './operator.js';
import type { ServerConfig } from './server-config.js';

type OperatorModule = typeof import('./operator.js');

/** The servers the operator publishes key changes to, filled in as they are made. */
export interface LiveServers {
  server?: SsServer;
  trojan?: TrojanHandler;
}

/** What `ladder server` dials on behalf of key holders. */
export interface UpstreamDialers {
  dialer: StreamDialer;
  /** Undefined with --no-udp. */
  packetDialer?: PacketDialer;
}

/**
 * The dialers to the key holders' destinations: guarded to public addresses unless
 * --allow-private-targets, UDP names cached per session, and --hosts looked up first.
 */
export function buildUpstreamDialers(config: ServerConfig, metrics: Metrics): UpstreamDialers {
  const allowPrivate = config.allowPrivateTargets;
  // Each target the guard refuses is counted (never named) in the metrics.
  const udpGuard = { onRefused: () => metrics.privateTargetRefused('udp') };
  // The relay honours borrowed chunks, so the server's upstream reads can use recycled memory.
  let dialer: StreamDialer = allowPrivate
    ? new DirectDialer({ recycleReads: true })
    : new PublicOnlyDialer({
        recycleReads: true,
        onRefused: () => metrics.privateTargetRefused('tcp'),
      });
  let packetDialer: PacketDialer | undefined = !config.udp
    ? undefined
    : allowPrivate
      ? new DirectPacketDialer()
      : new PublicOnlyPacketDialer(new DirectPacketDialer(), udpGuard);
  // Each UDP session resolves a destination name once (for a bounded time), not per datagram;
  // with the guard on, through the guard's own resolution, so the cached address is an allowed one.
  if (packetDialer)
    packetDialer = new NameCachingPacketDialer(
      packetDialer,
      allowPrivate
        ? {}
        : { lookup: async (host) => (await resolveAllowed(host, udpGuard))[0]!.address },
    );
  if (config.hostsFile) {
    const hosts = parseHosts(readHostsFile(config.hostsFile), `--hosts ${config.hostsFile}`);
    dialer = new HostsDialer(hosts, dialer);
    if (packetDialer) packetDialer = new HostsPacketDialer(hosts, packetDialer);
  }
  return packetDialer ? { dialer, packetDialer } : { dialer };
}

/**
 * The operator (key store, fleet, API) when --data is given; it publishes key changes to `live`.
 * Loaded only when used: a plain Shadowsocks server does not pay for SQLite, TLS and the web front
 * in memory (a few MiB of a process that should stay small).
 */
export async function openOperator(
  config: ServerConfig,
  metrics: Metrics,
  live: LiveServers,
): Promise<{ op: OperatorModule; operator: Operator } | undefined> {
  const o = config.operator;
  if (!o) return undefined;
  const op = await import('./operator.js');
  const fleet = o.store ? await op.openFleet(o.store, o.dataDir, metrics) : undefined;
  const operator = new op.Operator({
    dataDir: o.dataDir,
    ...(fleet ? { fleet } : {}),
    metrics,
    staticSs: config.ssKeys,
    staticTrojan: config.trojanUsers,
    publish: (ss, users) => {
      live.server?.setKeys(ss);
      live.trojan?.setUsers(users);
    },
  });
  return { op, operator };
}

/** The access gate: the operator's (limits, usage) or a counting one, with --max-connections-per-key. */
export function buildGate(
  config: ServerConfig,
  metrics: Metrics,
  operator: Operator | undefined,
): AccessGate {
  const base = operator?.gate ?? new CountingGate(metrics);
  return config.maxConnectionsPerKey > 0
    ? new PerKeyCapGate(base, config.maxConnectionsPerKey)
    : base;
}

/** One deadline and one set of caps for every connection without a key, on every listener. */
export function buildPreAuthGuard(config: ServerConfig, metrics: Metrics): PreAuthGuard {
  const guard = new PreAuthGuard({
    deadlineMs: config.authTimeoutMs,
    maxTotal: config.maxUnauthenticated,
    maxPerSource: config.maxUnauthenticatedPerSource,
    events: {
      refused: (cap) => metrics.preAuthRefused(cap),
      expired: () => metrics.preAuthExpired(),
    },
  });
  metrics.watchPreAuth(() => guard.pending);
  return guard;
}

/** The Shadowsocks server every listener hands authenticated Shadowsocks streams to. */
export function buildSsServer(
  config: ServerConfig,
  deps: { gate: AccessGate; metrics: Metrics; preAuth: PreAuthGuard } & UpstreamDialers,
): SsServer {
  const { metrics } = deps;
  return new SsServer({
    keys: config.ssKeys,
    gate: deps.gate,
    events: {
      rejected: (code, transport) => metrics.rejected(code, transport),
      accepted: (_id, ms) => metrics.handshake(ms),
    },
    dialer: deps.dialer,
    ...(deps.packetDialer ? { packetDialer: deps.packetDialer } : {}),
    authTimeoutMs: config.authTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    maxConnections: config.maxConnections,
    preAuth: deps.preAuth,
  });
}

/** The certificate of the TLS port and what to print about it. */
export interface TlsCertificate {
  cert: string;
  key: string;
  /** SHA-256 of a self-signed certificate, hex without colons, for keys that pin it. */
  pinSha256?: string;
  /** Lines to print at start (each begins with a newline). */
  note: string;
}

/** The given certificate files, else the operator's kept one, else one made now. */
export async function loadTlsCertificate(
  config: ServerConfig,
  operator: Operator | undefined,
): Promise<TlsCertificate> {
  if (config.tlsFiles) {
    return {
      cert: readPem(config.tlsFiles.cert, '--tls-cert'),
      key: readPem(config.tlsFiles.key, '--tls-key'),
      note: '',
    };
  }
  if (operator) {
    // With a data directory the certificate is kept, so pinned keys survive restarts.
    const made = operator.tlsCertificate();
    return {
      cert: made.cert,
      key: made.key,
      pinSha256: made.fingerprint256.replace(/:/g, '').toLowerCase(),
      note: `\nladder server: TLS certificate (self-signed, kept in ${config.operator!.dataDir}): SHA-256 ${made.fingerprint256}`,
    };
  }
  // Looks like a fresh web server's own (Debian's snakeoil): CN = this machine's name.
  const { snakeoilCertificate } = await import('../server/certificates.js');
  const made = snakeoilCertificate();
  const pin = made.fingerprint256.replace(/:/g, '').toLowerCase();
  return {
    cert: made.cert,
    key: made.key,
    pinSha256: pin,
    note: `\nladder server: TLS certificate made at start (self-signed, not kept across restarts): SHA-256 ${made.fingerprint256}\nladder server: clients pin it with ?pin=${pin} in their trojan:// key (;pin=... in a v2ray-plugin key)`,
  };
}

/** What TLS visitors without a key get: a forward to --fallback, or the decoy site. */
export async function buildFallback(config: ServerConfig): Promise<Fallback> {
  if (!config.fallback) return buildFallbackSite(config);
  const { ForwardFallback } = await import('../server/decoy/decoy-site.js');
  return new ForwardFallback(config.fallback, new DirectDialer());
}

/** A listening server: its address and how to close it. */
export interface Listening {
  address: AddressInfo;
  /** Lines to print at start (each begins with a newline). */
  note: string;
  close(): Promise<void>;
}

/** The TLS port: what it serves, for the operator and the summary. */
export interface TlsPort extends Listening {
  trojan: TrojanHandler;
  /** The site fallback (also what the API answers outside its secret path). */
  siteFallback: Fallback;
  /** SNI the keys handed out carry: the certificate's CN. */
  sni: string;
  pinSha256?: string;
  /** The API on the main port (with --api main). */
  mainApi?: { api: ManagementApi; certSha256: string };
}

/** What the TLS port is built from besides its config. */
type TlsPortDeps = {
  server: SsServer;
  gate: AccessGate;
  metrics: Metrics;
  preAuth: PreAuthGuard;
  operator: Operator | undefined;
  live: LiveServers;
} & UpstreamDialers;

/**
 * The shared port: Shadowsocks and TLS told apart by their first bytes; behind TLS, Trojan and the
 * WebSockets on the keys' secret paths, everything else the decoy (or the API under --api main).
 * With --ws-listen, the same WebSockets as plain HTTP on their own port.
 */
export async function startTlsPort(config: ServerConfig, deps: TlsPortDeps): Promise<TlsPort> {
  const { cert, key, pinSha256, note } = await loadTlsCertificate(config, deps.operator);
  const { siteFallback, fallback, mainApi } = await buildTlsFallback(config, deps.operator, {
    cert,
    key,
  });
  const sni = (await certificateCn(cert)) || 'localhost';
  const { trojan, web, handler } = await tlsHandlers(config, deps, fallback);
  const mux = await portMux(config, deps, { cert, key, handler, fallback });
  const address = await mux.listen(config.listen.host, config.listen.port);
  let wsListener: WsListener | null;
  let wsNote: string;
  try {
    ({ listener: wsListener, note: wsNote } = await startPlainWebSocket(config, web, deps.preAuth));
  } catch (err) {
    await mux.close(0);
    throw err;
  }
  return {
    address,
    note: note + wsNote,
    trojan,
    siteFallback,
    sni,
    ...(pinSha256 ? { pinSha256 } : {}),
    ...(mainApi ? { mainApi } : {}),
    close: async () => {
      await wsListener?.close();
      await mux.close(DEFAULT_CLOSE_GRACE_MS);
      web?.close();
      fallback.close();
    },
  };
}

/** The certificate's subject CN, the SNI the keys handed out carry (none without a certificate). */
async function certificateCn(cert: string): Promise<string | undefined> {
  if (!cert) return undefined;
  const { X509Certificate } = await import('node:crypto');
  return new X509Certificate(cert).subject.match(/CN=([^\n]+)/)?.[1];
}

/** Behind TLS: Trojan, and the WebSockets on the keys' secret paths (ws-front.ts) when any. */
async function tlsHandlers(
  config: ServerConfig,
  deps: TlsPortDeps,
  fallback: Fallback,
): Promise<{
  trojan: TrojanHandler;
  web: WsFront | undefined;
  handler: TrojanHandler | TlsInnerFront;
}> {
  const [{ TrojanHandler }, { TlsInnerFront, WsFront }] = await Promise.all([
    import('../server/trojan-server.js'),
    import('../server/ws-front.js'),
  ]);
  const trojan = (deps.live.trojan = new TrojanHandler({
    users: config.trojanUsers,
    gate: deps.gate,
    events: { fallback: (code) => deps.metrics.rejected(code, 'tls') },
    dialer: deps.dialer,
    ...(deps.packetDialer ? { packetDialer: deps.packetDialer } : {}),
    fallback,
    idleTimeoutMs: config.idleTimeoutMs,
  }));
  // Every request off the secret paths is the decoy.
  const web =
    config.wsPaths.length > 0
      ? new WsFront({
          paths: config.wsPaths,
          ss: deps.server,
          trojan,
          fallback,
          authTimeoutMs: config.authTimeoutMs,
          idleTimeoutMs: config.idleTimeoutMs,
        })
      : undefined;
  return { trojan, web, handler: web ? new TlsInnerFront({ trojan, web }) : trojan };
}

/** The port mux, not yet listening: Shadowsocks, or TLS with the decoy's certificate. */
async function portMux(
  config: ServerConfig,
  deps: TlsPortDeps,
  tls: { cert: string; key: string; handler: TrojanHandler | TlsInnerFront; fallback: Fallback },
): Promise<PortMux> {
  const [{ decoySecureContext }, { PortMux }] = await Promise.all([
    import('../server/decoy/tls-context.js'),
    import('../server/port-mux.js'),
  ]);
  return new PortMux({
    ss: deps.server,
    tls: {
      secureContext: decoySecureContext(tls.cert, tls.key),
      handler: tls.handler,
      // Plain HTTP that Shadowsocks refuses gets nginx's "plain HTTP to HTTPS port" page.
      ...(tls.fallback.handlePlainOnTlsPort
        ? { plainHttp: tls.fallback.handlePlainOnTlsPort }
        : {}),
    },
    authTimeoutMs: config.authTimeoutMs,
    maxConnections: config.maxConnections,
    preAuth: deps.preAuth,
  });
}

/** The TLS port's answer to visitors without a key, with the API in front of it under --api main. */
async function buildTlsFallback(
  config: ServerConfig,
  operator: Operator | undefined,
  tls: { cert: string; key: string },
): Promise<{ siteFallback: Fallback; fallback: Fallback; mainApi?: TlsPort['mainApi'] }> {
  const siteFallback = await buildFallback(config);
  if (config.operator?.api.kind !== 'main' || !operator)
    return { siteFallback, fallback: siteFallback };
  // The API under its secret prefix on this port; everything else still reaches the decoy.
  const { X509Certificate } = await import('node:crypto');
  const api = operator.createApi(tls);
  return {
    siteFallback,
    fallback: api.front(siteFallback),
    mainApi: { api, certSha256: new X509Certificate(tls.cert).fingerprint256 },
  };
}

/** The WebSockets as plain HTTP on --ws-listen (for a CDN or reverse proxy), and what to print. */
async function startPlainWebSocket(
  config: ServerConfig,
  web: WsFront | undefined,
  preAuth: PreAuthGuard,
): Promise<{ listener: WsListener | null; note: string }> {
  if (!web) return { listener: null, note: '' };
  const paths = `\nladder server: WebSocket on ${new Set(config.wsPaths).size} secret path(s)`;
  if (!config.wsListen) {
    const note = config.wsPlain
      ? '\nladder server: note: a WebSocket key has no tls; it is served on the TLS port only, unless you add --ws-listen host:port for the plain WebSocket'
      : '';
    return { listener: null, note: note + paths };
  }
  const { WsListener } = await import('../server/ws-front.js');
  const listener = new WsListener(web, preAuth);
  const a = await listener.listen(
    config.wsListen.host,
    config.wsListen.port,
    config.maxConnections,
  );
  return {
    listener,
    note: `\nladder server: plain WebSocket (for a CDN or reverse proxy) listening on ${formatHostPort(a.address, a.port)}${paths}`,
  };
}

/**
 * Starts the operator's surfaces: key publication with this server's reachability, and the API on
 * its own port or on the main TLS port. Returns the line to print (the API's URL) and the closers.
 */
export async function startOperatorSurfaces(
  config: ServerConfig,
  op: OperatorModule,
  operator: Operator,
  listening: Listening,
  tls: TlsPort | undefined,
): Promise<{ line: string; close: () => Promise<void> }> {
  const o = config.operator!;
  const publicHost = o.publicHost ?? op.guessPublicHost(config.listen.host);
  const port = listening.address.port;
  operator.start(
    {
      port,
      ...(tls
        ? { trojan: { sni: tls.sni, ...(tls.pinSha256 ? { pinSha256: tls.pinSha256 } : {}) } }
        : {}),
    },
    publicHost,
  );
  let line = '';
  if (o.api.kind === 'main' && tls?.mainApi) {
    const { apiUrl, certSha256 } = operator.announceMainPortApi(
      tls.mainApi.api,
      publicHost,
      port,
      tls.mainApi.certSha256,
    );
    line = `\n${JSON.stringify({ apiUrl, certSha256 })}`;
  } else if (o.api.kind === 'port') {
    const apiFallback = tls?.siteFallback ?? (await buildFallbackSite(config));
    const { apiUrl, certSha256 } = await operator.startApi(o.api.at, publicHost, apiFallback);
    line = `\n${JSON.stringify({ apiUrl, certSha256 })}`;
  }
  return { line, close: () => operator.close() };
}

/** The decoy site alone (the API's answer outside its secret path when there is no TLS port). */
async function buildFallbackSite(config: ServerConfig): Promise<Fallback> {
  const { DecoySite } = await import('../server/decoy/decoy-site.js');
  return new DecoySite({
    ...(config.decoyDir ? { dir: config.decoyDir } : {}),
    ...(config.published ? { published: config.published } : {}),
  });
}

/** Prometheus metrics over HTTP (--metrics). */
export async function startMetrics(
  config: ServerConfig,
  metrics: Metrics,
): Promise<{ line: string; close: () => Promise<void> } | undefined> {
  if (!config.metrics) return undefined;
  const op = await import('./operator.js');
  const m = await op.startMetricsServer(metrics, config.metrics);
  const a = m.address() as AddressInfo;
  return {
    line: `\nladder server: metrics at http://${formatHostPort(a.address, a.port)}/metrics`,
    close: () => new Promise((r) => m.close(() => r())),
  };
}

/** The start line: address, protocols and keys by method. */
export function summaryLine(
  config: ServerConfig,
  address: AddressInfo,
  udp: boolean,
  stored: { count: number; trojan: boolean } | undefined,
): string {
  const methods = new Map<string, number>();
  for (const k of config.ssKeys) methods.set(k.key.method, (methods.get(k.key.method) ?? 0) + 1);
  if (config.trojanUsers.length > 0) methods.set('trojan over TLS', config.trojanUsers.length);
  if (stored)
    methods.set(
      `stored in ${config.operator!.dataDir}${stored.trojan ? ' (shadowsocks and trojan)' : ''}`,
      stored.count,
    );
  const summary = [...methods].map(([m, n]) => `${m} x${n}`).join(', ');
  const total = [...methods.values()].reduce((a, b) => a + b, 0);
  return `ladder server listening on ${formatHostPort(address.address, address.port)} (tcp${udp ? '+udp' : ''}), ${total} key${total === 1 ? '' : 's'}: ${summary}`;
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

function readHostsFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new LadderError(
      'ERR_USAGE',
      `--hosts ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

/**
 * The DNS tunnel (--dns-tunnel): each session's stream goes to the Shadowsocks server as a
 * connection from the resolver's address, under the same pre-authentication deadline and caps.
 */
export async function startDnsTunnel(
  config: ServerConfig,
  server: SsServer,
  preAuth: PreAuthGuard,
): Promise<{ line: string; close: () => Promise<void> } | undefined> {
  const t = config.dnsTunnel;
  if (!t) return undefined;
  const tunnel = new DnsTunnelServer({
    domain: t.domain,
    idleTimeoutMs: config.idleTimeoutMs,
    onSession: (stream, source) => {
      if (preAuth.admit(stream, source))
        server.handleConnection(stream, undefined, server.clock.now());
    },
  });
  const at = await tunnel.listen(t.listen.host, t.listen.port);
  return {
    line: `\nDNS tunnel for ${t.domain} on UDP ${formatHostPort(at.address, at.port)}`,
    close: () => {
      tunnel.close();
      return Promise.resolve();
    },
  };
}
