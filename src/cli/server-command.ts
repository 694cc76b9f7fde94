/**
 * `ladder server --listen <host:port> --key <ss-uri> [--key <ss-uri> ...]`
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseTrojanUri } from '../codec/trojan-uri.js';
import { trojanPasswordHash } from '../codec/trojan.js';
import type { TrojanHandler, TrojanUser } from '../server/trojan-server.js';
import type { WsListener } from '../server/ws-front.js';
import { v2rayPluginOptions } from '../codec/v2ray-plugin.js';
import type { Fallback } from '../server/decoy/decoy-site.js';
import { LadderError } from '../errors.js';
import { useCongestionControl } from '../transport/congestion.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import { parseSsUri } from '../codec/access-key-uri.js';
import type { SsServerKey } from '../codec/ss-tcp.js';
import { SsServer } from '../server/ss-server.js';
import { DirectDialer, DirectPacketDialer } from '../transport/direct.js';
import {
  PublicOnlyDialer,
  PublicOnlyPacketDialer,
  resolveAllowed,
} from '../transport/guarded-dialer.js';
import { NameCachingPacketDialer } from '../transport/udp-name-cache.js';
import type { PacketDialer, StreamDialer } from '../transport/types.js';
import { Metrics } from '../server/metrics.js';
import { CountingGate, PerKeyCapGate } from '../server/access/gate.js';
import { DEFAULT_MAX_PRE_AUTH_PER_SOURCE, PreAuthGuard } from '../server/pre-auth.js';
import { HostsDialer, HostsPacketDialer, parseHosts } from '../transport/hosts.js';
import {
  formatHostPort,
  parseCount,
  parseFlags,
  parseHostPort,
  parseSeconds,
  untilSignal,
} from './args.js';

const HELP = `ladder server --listen <host:port> --key <ss-uri> [--key <ss-uri> ...] [options]
ladder server --listen <host:port> --data <dir> [options]

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
  --hosts <file>             host names to addresses, /etc/hosts format, looked up before DNS
  --no-udp                   do not relay UDP
  --allow-private-targets    let key holders reach this machine's loopback services, its LAN and
                             other private or special-purpose addresses through the server (default:
                             refused, whatever --listen is; a warning is printed when allowed)
  --auth-timeout <s>         close unauthenticated connections after this long (default 60)
  --idle-timeout <s>         close idle connections after this long (default 300)
  --max-connections <n>      connections at once, on every listener (default 8192)
  --max-unauthenticated <n>  connections without a key yet, all sources together (default: half of
                             --max-connections), closed at --auth-timeout (docs/probe-resistance.md)
  --tcp-congestion <name>    TCP congestion control of the server's connections, e.g. bbr on a
                             lossy long path (default: the system's, net.ipv4.tcp_congestion_control);
                             an error if the kernel lacks it (docs/benchmarks.md, "Path benchmark")
  --max-unauthenticated-per-source <n>
                             the same from one IPv4 address or IPv6 /64 (default 256)
  --max-connections-per-key <n>
                             connections and UDP sessions one key holds at once (default: no cap)

operator (docs/operator.md):
  --data <dir>               keep access keys, limits and usage in <dir> (SQLite, mode 0600); manage
                             them with 'ladder keys ... --data <dir>', the API or the dashboard
  --store <postgres-url>     a fleet: keys, limits and usage shared with every server on this
                             PostgreSQL database (postgres://user:password@host:port/db); <dir> of
                             --data then holds this server's cache, certificates and usage buffer
  --api <host:port>          management API and dashboard over HTTPS (with --data; default: the
                             --listen host, a port kept from the first start). Its URL is printed
                             as {"apiUrl":...,"certSha256":...} and kept in <dir>/access.txt.
                             Requests outside its secret path get the decoy site's answers.
  --api main                 serve the API on the main TLS port under its secret path instead, so
                             that no other port is open (needs a TLS port: --trojan or TLS keys)
  --no-api                   no management API
  --public-host <host>       the address put in access keys handed out (default: this machine's)
  --trojan                   also serve the stored keys as Trojan over TLS on the same port
  --metrics <host:port>      Prometheus metrics at http://<host:port>/metrics (e.g. 127.0.0.1:9090)`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('server', argv, {
    listen: { type: 'string' },
    key: { type: 'string', multiple: true },
    'no-udp': { type: 'boolean' },
    'allow-private-targets': { type: 'boolean' },
    'auth-timeout': { type: 'string' },
    'idle-timeout': { type: 'string' },
    'max-connections': { type: 'string' },
    'max-unauthenticated': { type: 'string' },
    'max-unauthenticated-per-source': { type: 'string' },
    'max-connections-per-key': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'decoy-dir': { type: 'string' },
    fallback: { type: 'string' },
    data: { type: 'string' },
    store: { type: 'string' },
    api: { type: 'string' },
    'no-api': { type: 'boolean' },
    'public-host': { type: 'string' },
    trojan: { type: 'boolean' },
    metrics: { type: 'string' },
    hosts: { type: 'string' },
    'ws-listen': { type: 'string' },
    'tcp-congestion': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const listen = parseHostPort(values.listen ?? '0.0.0.0:8388', '--listen', '0.0.0.0');
  await useCongestionControl(values['tcp-congestion']);
  const uris = values.key ?? [];
  if (uris.length === 0 && !values.data) {
    throw new LadderError(
      'ERR_USAGE',
      "server: give at least one --key <ss-uri> (make one with 'ladder keys new --method 2022-blake3-aes-256-gcm'), or --data <dir> to keep keys in a store",
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
  if (!values.data)
    for (const f of ['api', 'no-api', 'public-host', 'trojan', 'store'] as const)
      if (values[f] !== undefined)
        throw new LadderError('ERR_USAGE', `--${f} needs --data <dir> (the key store it works on)`);
  const metrics = new Metrics();
  // The operator publishes keys to servers made below: it reaches them through this holder.
  const live: { server?: SsServer; trojan?: TrojanHandler } = {};
  // Loaded only when used: a plain Shadowsocks server does not pay for SQLite, TLS and the web
  // front in memory (a few MiB of a process that should stay small).
  const op = values.data || values.metrics ? await import('./operator.js') : null;
  const fleet =
    values.data && values.store
      ? await op!.openFleet(values.store, values.data, metrics)
      : undefined;
  const operator = values.data
    ? new op!.Operator({
        dataDir: values.data,
        ...(fleet ? { fleet } : {}),
        metrics,
        staticSs: keys,
        staticTrojan: trojanUsers,
        publish: (ss, users) => {
          live.server?.setKeys(ss);
          live.trojan?.setUsers(users);
        },
      })
    : undefined;
  const baseGate = operator?.gate ?? new CountingGate(metrics);
  const perKey = values['max-connections-per-key']
    ? parseCount(values['max-connections-per-key'], '--max-connections-per-key', 0)
    : 0;
  const gate = perKey > 0 ? new PerKeyCapGate(baseGate, perKey) : baseGate;
  const authTimeoutMs = parseSeconds(values['auth-timeout'], '--auth-timeout', 60_000);
  const idleTimeoutMs = parseSeconds(values['idle-timeout'], '--idle-timeout', 300_000);
  const maxConnections = parseCount(values['max-connections'], '--max-connections', 8192);
  // One deadline and one set of caps for every connection without a key, on every listener.
  const preAuth = new PreAuthGuard({
    deadlineMs: authTimeoutMs,
    maxTotal: parseCount(
      values['max-unauthenticated'],
      '--max-unauthenticated',
      Math.max(1, Math.floor(maxConnections / 2)),
    ),
    maxPerSource: parseCount(
      values['max-unauthenticated-per-source'],
      '--max-unauthenticated-per-source',
      DEFAULT_MAX_PRE_AUTH_PER_SOURCE,
    ),
  });
  // The guard is on unless asked otherwise: behind a reverse proxy --listen is a loopback address,
  // and the key holders are still strangers to this machine's own services.
  const allowPrivate = values['allow-private-targets'] === true;
  if (allowPrivate)
    console.error(
      'ladder server: warning: --allow-private-targets: key holders can reach services of this machine that listen on loopback (management API, metrics, databases), its LAN and link-local cloud metadata through the server',
    );
  // The relay honours borrowed chunks, so the server's upstream reads can use recycled memory.
  let dialer: StreamDialer = allowPrivate
    ? new DirectDialer({ recycleReads: true })
    : new PublicOnlyDialer({ recycleReads: true });
  let packetDialer: PacketDialer | undefined = values['no-udp']
    ? undefined
    : allowPrivate
      ? new DirectPacketDialer()
      : new PublicOnlyPacketDialer(new DirectPacketDialer());
  // Each UDP session resolves a destination name once (for a bounded time), not per datagram;
  // with the guard on, through the guard's own resolution, so the cached address is an allowed one.
  if (packetDialer)
    packetDialer = new NameCachingPacketDialer(
      packetDialer,
      allowPrivate ? {} : { lookup: async (host) => (await resolveAllowed(host))[0]!.address },
    );
  if (values.hosts) {
    let text: string;
    try {
      text = readFileSync(values.hosts, 'utf8');
    } catch (err) {
      throw new LadderError(
        'ERR_USAGE',
        `--hosts ${values.hosts}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    const hosts = parseHosts(text, `--hosts ${values.hosts}`);
    dialer = new HostsDialer(hosts, dialer);
    if (packetDialer) packetDialer = new HostsPacketDialer(hosts, packetDialer);
  }
  const server = new SsServer({
    keys,
    gate,
    events: {
      probe: (code, transport) => metrics.probe(code, transport),
      accepted: (_id, ms) => metrics.handshake(ms),
    },
    dialer,
    ...(packetDialer ? { packetDialer } : {}),
    authTimeoutMs,
    idleTimeoutMs,
    maxConnections,
    preAuth,
  });
  live.server = server;
  let closeAll: () => Promise<void> = () => server.close(5_000);
  let tlsNote = '';
  let addr;
  let pinSha256: string | undefined;
  let sni = 'localhost';
  // The decoy of the TLS port, also what the API gives to requests outside its secret prefix.
  let siteFallback: Fallback | undefined;
  let mainApi: import('../admin/api.js').ManagementApi | undefined;
  let mainCertSha256 = '';
  const apiOnMain = values.api === 'main' && !values['no-api'];
  const wsListenAt = values['ws-listen']
    ? parseHostPort(values['ws-listen'], '--ws-listen', '0.0.0.0')
    : null;
  if (wsListenAt && wsPaths.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      '--ws-listen needs WebSocket keys: ss:// with plugin=v2ray-plugin;path=/... or trojan:// with type=ws&path=/... (ladder keys new --transport ws)',
    );
  const hasTlsPort = trojanUsers.length > 0 || values.trojan === true || wsPaths.length > 0;
  if (apiOnMain && !hasTlsPort)
    throw new LadderError(
      'ERR_USAGE',
      '--api main serves the API on the main TLS port, and this server has none: add --trojan, or give the API its own --api host:port',
    );
  if (!hasTlsPort) {
    addr = await server.listen(listen.host, listen.port);
  } else {
    const [{ X509Certificate }, { decoySecureContext }, { snakeoilCertificate }, { PortMux }] =
      await Promise.all([
        import('node:crypto'),
        import('../server/decoy/tls-context.js'),
        import('../server/certificates.js'),
        import('../server/port-mux.js'),
      ]);
    const [{ TrojanHandler }, { TlsInnerFront, WsFront, WsListener }, decoy] = await Promise.all([
      import('../server/trojan-server.js'),
      import('../server/ws-front.js'),
      import('../server/decoy/decoy-site.js'),
    ]);
    let cert: string;
    let key: string;
    if (values['tls-cert'] || values['tls-key']) {
      if (!values['tls-cert'] || !values['tls-key'])
        throw new LadderError('ERR_USAGE', 'give both --tls-cert and --tls-key');
      cert = readPem(values['tls-cert'], '--tls-cert');
      key = readPem(values['tls-key'], '--tls-key');
    } else if (operator) {
      // With a data directory the certificate is kept, so pinned keys survive restarts.
      const made = operator.tlsCertificate();
      cert = made.cert;
      key = made.key;
      pinSha256 = made.fingerprint256.replace(/:/g, '').toLowerCase();
      tlsNote = `\nladder server: TLS certificate (self-signed, kept in ${values.data}): SHA-256 ${made.fingerprint256}`;
    } else {
      // Looks like a fresh web server's own (Debian's snakeoil): CN = this machine's name.
      const made = snakeoilCertificate();
      cert = made.cert;
      key = made.key;
      pinSha256 = made.fingerprint256.replace(/:/g, '').toLowerCase();
      tlsNote = `\nladder server: TLS certificate made at start (self-signed, not kept across restarts): SHA-256 ${made.fingerprint256}\nladder server: clients pin it with ?pin=${made.fingerprint256.replace(/:/g, '').toLowerCase()} in their trojan:// key (;pin=... in a v2ray-plugin key)`;
    }
    let fallback: Fallback;
    if (values.fallback)
      fallback = new decoy.ForwardFallback(
        parseHostPort(values.fallback, '--fallback'),
        new DirectDialer(),
      );
    else fallback = new decoy.DecoySite(values['decoy-dir'] ? { dir: values['decoy-dir'] } : {});
    siteFallback = fallback;
    if (apiOnMain && operator) {
      // The API under its secret prefix on this port; everything else still reaches the decoy.
      mainApi = operator.createApi({ cert, key });
      mainCertSha256 = new X509Certificate(cert).fingerprint256;
      fallback = mainApi.front(fallback);
    }
    if (cert) {
      const c = new X509Certificate(cert);
      sni = c.subject.match(/CN=([^\n]+)/)?.[1] ?? sni;
    }
    const trojan = (live.trojan = new TrojanHandler({
      users: trojanUsers,
      gate,
      events: {
        fallback: (code) => metrics.probe(code, 'tls'),
      },
      dialer,
      ...(packetDialer ? { packetDialer } : {}),
      fallback,
      idleTimeoutMs,
    }));
    // WebSockets on the secret paths of the keys; every other request is the decoy (ws-front.ts).
    const web =
      wsPaths.length > 0
        ? new WsFront({
            paths: wsPaths,
            ss: server,
            trojan,
            fallback,
            authTimeoutMs,
            idleTimeoutMs,
          })
        : undefined;
    const mux = new PortMux({
      ss: server,
      tls: {
        secureContext: decoySecureContext(cert, key),
        handler: web ? new TlsInnerFront({ trojan, web }) : trojan,
      },
      authTimeoutMs,
      maxConnections,
      preAuth,
    });
    addr = await mux.listen(listen.host, listen.port);
    let wsListener: WsListener | null = null;
    if (wsListenAt && web) {
      wsListener = new WsListener(web, preAuth);
      try {
        const a = await wsListener.listen(wsListenAt.host, wsListenAt.port, maxConnections);
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
      web?.close();
      fallback.close();
    };
  }
  const closers: (() => Promise<void>)[] = [];
  let apiLine = '';
  if (operator) {
    const publicHost = values['public-host'] ?? op!.guessPublicHost(listen.host);
    operator.start(
      {
        port: addr.port,
        ...(live.trojan ? { trojan: { sni, ...(pinSha256 ? { pinSha256 } : {}) } } : {}),
      },
      publicHost,
    );
    closers.push(() => operator.close());
    if (apiOnMain && mainApi) {
      const { apiUrl, certSha256 } = operator.announceMainPortApi(
        mainApi,
        publicHost,
        addr.port,
        mainCertSha256,
      );
      apiLine = `\n${JSON.stringify({ apiUrl, certSha256 })}`;
    } else if (!values['no-api']) {
      const at = parseHostPort(values.api ?? formatHostPort(listen.host, 0), '--api', listen.host);
      const apiFallback =
        siteFallback ??
        new (await import('../server/decoy/decoy-site.js')).DecoySite(
          values['decoy-dir'] ? { dir: values['decoy-dir'] } : {},
        );
      const { apiUrl, certSha256 } = await operator.startApi(at, publicHost, apiFallback);
      apiLine = `\n${JSON.stringify({ apiUrl, certSha256 })}`;
    }
  }
  if (values.metrics) {
    const m = await op!.startMetricsServer(metrics, parseHostPort(values.metrics, '--metrics'));
    const a = m.address() as import('node:net').AddressInfo;
    apiLine += `\nladder server: metrics at http://${formatHostPort(a.address, a.port)}/metrics`;
    closers.push(() => new Promise((r) => m.close(() => r())));
  }
  const methods = new Map<string, number>();
  for (const k of keys) methods.set(k.key.method, (methods.get(k.key.method) ?? 0) + 1);
  if (trojanUsers.length > 0) methods.set('trojan over TLS', trojanUsers.length);
  if (operator)
    methods.set(
      `stored in ${values.data}${live.trojan ? ' (shadowsocks and trojan)' : ''}`,
      operator.keys.list().length,
    );
  const summary = [...methods].map(([m, n]) => `${m} x${n}`).join(', ');
  const total = [...methods.values()].reduce((a, b) => a + b, 0);
  console.log(
    `ladder server listening on ${formatHostPort(addr.address, addr.port)} (tcp${packetDialer ? '+udp' : ''}), ${total} key${total === 1 ? '' : 's'}: ${summary}${tlsNote}${apiLine}`,
  );
  const sig = await untilSignal();
  console.log(`ladder server: ${sig}, closing (open connections get up to 5 s)`);
  await closeAll();
  for (const c of closers) await c();
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
