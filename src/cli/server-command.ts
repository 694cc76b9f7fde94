/**
 * `ladder server --listen <host:port> --key <ss-uri> [--key <ss-uri> ...]`: the composition root of
 * the server. Flags become a checked configuration (server-config.ts), the builders
 * (server-build.ts) make its parts, and this file puts them together in order.
 * @module
 */
import { DEFAULT_CLOSE_GRACE_MS } from '../core/defaults.js';
import { Metrics } from '../server/metrics.js';
import { useCongestionControl } from '../transport/congestion.js';
import { untilSignal } from './args.js';
import {
  buildGate,
  buildPreAuthGuard,
  buildSsServer,
  buildUpstreamDialers,
  openOperator,
  startMetrics,
  startOperatorSurfaces,
  startDnsTunnel,
  startTlsPort,
  summaryLine,
  type Listening,
  type LiveServers,
  type TlsPort,
} from './server-build.js';
import { parseServerConfig, parseServerFlags } from './server-config.js';

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
  --publish <path>=<file>    serve a file at a secret path of the decoy site (repeat): a signed key
                             document (ladder keys publish) or a client release (ladder build-client)
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
  --metrics <host:port>      Prometheus metrics at http://<host:port>/metrics (e.g. 127.0.0.1:9090)

DNS tunnel (docs/access-keys.md, "DNS tunnel keys"):
  --dns-tunnel <domain>      also be the authoritative name server of <domain> (delegate it here with
                             an NS record) and carry Shadowsocks streams in its queries and answers,
                             for networks where only DNS through the ISP's resolver gets out; keys
                             for it: ss:// 2022 with dns=<domain>. Tens of KB/s.
  --dns-tunnel-listen <host:port>
                             its UDP address (default: the --listen host, port 53)`;

export async function run(argv: string[]): Promise<number> {
  const values = parseServerFlags(argv);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const config = parseServerConfig(values);
  await useCongestionControl(values['tcp-congestion']);
  const metrics = new Metrics();
  // The operator publishes keys to servers made below: it reaches them through this holder.
  const live: LiveServers = {};
  const opened = await openOperator(config, metrics, live);
  const operator = opened?.operator;
  const gate = buildGate(config, metrics, operator);
  const preAuth = buildPreAuthGuard(config, metrics);
  // The guard is on unless asked otherwise: behind a reverse proxy --listen is a loopback address,
  // and the key holders are still strangers to this machine's own services.
  if (config.allowPrivateTargets)
    console.error(
      'ladder server: warning: --allow-private-targets: key holders can reach services of this machine that listen on loopback (management API, metrics, databases), its LAN and link-local cloud metadata through the server',
    );
  const dialers = buildUpstreamDialers(config, metrics);
  const server = (live.server = buildSsServer(config, { gate, metrics, preAuth, ...dialers }));
  let tls: TlsPort | undefined;
  let listening: Listening;
  if (config.tlsPort) {
    tls = await startTlsPort(config, {
      server,
      gate,
      metrics,
      preAuth,
      operator,
      live,
      ...dialers,
    });
    listening = tls;
  } else {
    listening = {
      address: await server.listen(config.listen.host, config.listen.port),
      note: '',
      close: () => server.close(DEFAULT_CLOSE_GRACE_MS),
    };
  }
  const closers: (() => Promise<void>)[] = [];
  let lines = listening.note;
  if (opened) {
    const surfaces = await startOperatorSurfaces(
      config,
      opened.op,
      opened.operator,
      listening,
      tls,
    );
    closers.push(surfaces.close);
    lines += surfaces.line;
  }
  const dnsTunnel = await startDnsTunnel(config, server, preAuth);
  if (dnsTunnel) {
    lines += dnsTunnel.line;
    closers.push(dnsTunnel.close);
  }
  const metricsServer = await startMetrics(config, metrics);
  if (metricsServer) {
    lines += metricsServer.line;
    closers.push(metricsServer.close);
  }
  const stored = operator
    ? { count: operator.keys.list().length, trojan: tls !== undefined }
    : undefined;
  console.log(
    summaryLine(config, listening.address, dialers.packetDialer !== undefined, stored) + lines,
  );
  const sig = await untilSignal();
  console.log(`ladder server: ${sig}, closing (open connections get up to 5 s)`);
  await listening.close();
  for (const c of closers) await c();
  return 0;
}
