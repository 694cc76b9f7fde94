/**
 * The operator side of `ladder server`, wired here: the key store in `--data DIR`, the key manager
 * that enforces limits, the management API and dashboard (`--api`), Prometheus metrics
 * (`--metrics`). server-command.ts builds the data plane and calls in here.
 * @module
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { snakeoilCertificate } from '../server/certificates.js';
import type { SsServerKey } from '../codec/ss-tcp.js';
import { KeyStore, type AccessKeyStore } from '../store/key-store.js';
import { FleetStore } from '../store/fleet-store.js';
import { KeyManager } from '../server/access/key-manager.js';
import { CountingGate, type AccessGate } from '../server/access/gate.js';
import type { Metrics } from '../server/metrics.js';
import type { TrojanUser } from '../server/trojan-server.js';
import { AdminService, type Reachability } from '../admin/service.js';
import { ManagementApi } from '../admin/api.js';
import type { Fallback } from '../server/decoy/decoy-site.js';
import { listenTcp } from '../transport/listen.js';
import { LadderError } from '../errors.js';
import { formatHostPort } from './args.js';
import type { Target as HostPort } from '../transport/types.js';

/** Writes a file only its owner can read (secrets: TLS keys, the API URL). */
export function writeSecretFile(file: string, data: string): void {
  writeFileSync(file, data, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** The address users' clients dial by default: the first public-looking IPv4 of this machine. */
export function guessPublicHost(listenHost: string): string {
  if (listenHost !== '0.0.0.0' && listenHost !== '::') return listenHost;
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

export interface KeptCertificate {
  cert: string;
  key: string;
  /** SHA-256 as AA:BB:..., as X509Certificate gives it. */
  fingerprint256: string;
}

/**
 * A self-signed certificate kept in the data directory as `<name>-cert.pem` and `<name>-key.pem`
 * (0600): made on first start, read on every later one, so that pins survive restarts. Made like a
 * fresh web server's own (server/certificates.ts), naming this machine and nothing else.
 */
function keptCertificate(dir: string, name: string): KeptCertificate {
  const certFile = join(dir, `${name}-cert.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    const made = snakeoilCertificate();
    writeSecretFile(keyFile, made.key);
    writeSecretFile(certFile, made.cert);
  }
  const cert = readFileSync(certFile, 'utf8');
  return {
    cert,
    key: readFileSync(keyFile, 'utf8'),
    fingerprint256: new X509Certificate(cert).fingerprint256,
  };
}

export interface OperatorOptions {
  dataDir: string;
  /** The fleet's store (`--store`), already open on `dataDir`; default: SQLite in `dataDir`. */
  fleet?: FleetStore;
  metrics: Metrics;
  staticSs: readonly SsServerKey[];
  staticTrojan: readonly TrojanUser[];
  /** Called with every active key (static first) whenever the set changes. */
  publish(ss: readonly SsServerKey[], trojan: readonly TrojanUser[]): void;
}

/** The key store and its manager; `gate` admits managed keys by their limits and static keys always. */
export class Operator {
  readonly store: AccessKeyStore;
  readonly fleet: FleetStore | undefined;
  readonly keys: KeyManager;
  readonly service: AdminService;
  readonly gate: AccessGate;
  #api: ManagementApi | null = null;

  constructor(o: OperatorOptions) {
    this.fleet = o.fleet;
    this.store = o.fleet ?? KeyStore.open(o.dataDir);
    const staticIds = new Set([...o.staticSs, ...o.staticTrojan].map((k) => k.id));
    this.keys = new KeyManager({
      store: this.store,
      metrics: o.metrics,
      onKeysChanged: (ss, trojan) =>
        o.publish([...o.staticSs, ...ss], [...o.staticTrojan, ...trojan]),
    });
    for (const k of this.keys.list())
      if (staticIds.has(k.id))
        throw new LadderError(
          'ERR_USAGE',
          `a --key is named '${k.id}', the id of a stored key in ${o.dataDir}; give the URI another #tag`,
        );
    this.service = new AdminService(this.store, this.keys, o.metrics, o.fleet);
    const counting = new CountingGate(o.metrics);
    this.gate = {
      open: (id, client, transport) =>
        staticIds.has(id)
          ? counting.open(id, client, transport)
          : this.keys.open(id, client, transport),
    };
  }

  /** The self-signed certificate of the TLS transports, made on first start and kept in the data directory. */
  tlsCertificate(): KeptCertificate {
    return keptCertificate(this.store.dir, 'tls');
  }

  start(reach: Reachability, publicHost: string): void {
    this.service.setReachability(reach);
    this.service.defaultHostname(publicHost);
    this.keys.start();
    this.fleet?.setNodeInfo({
      name: this.service.name,
      publicHost: this.service.hostname,
      port: reach.port,
      connections: () => this.service.metrics?.snapshot().active ?? 0,
      reach: () => JSON.stringify(this.service.reachability()),
    });
  }

  /**
   * The management API behind its secret prefix (kept in the store), with `tls` as its certificate
   * (default: its own, kept in the data directory).
   */
  createApi(tls?: { cert: string; key: string }): ManagementApi {
    const { cert, key } = tls ?? keptCertificate(this.store.dir, 'api');
    const prefix =
      '/' + this.store.settingOnce('api_prefix', () => randomBytes(16).toString('base64url'));
    const api = new ManagementApi({ service: this.service, prefix, cert, key });
    this.#api = api;
    return api;
  }

  /**
   * Serves the management API on `at` (port 0: the port kept from the first start, else a random
   * one); a connection whose first request is outside the secret prefix gets `fallback` (the main
   * port's decoy). Returns the line Outline prints, `{"apiUrl": ..., "certSha256": ...}`, also
   * written to access.txt (0600) in the data directory.
   */
  async startApi(
    at: HostPort,
    publicHost: string,
    fallback?: Fallback,
  ): Promise<{ apiUrl: string; certSha256: string }> {
    const { fingerprint256 } = keptCertificate(this.store.dir, 'api');
    const api = this.createApi();
    let port = at.port;
    if (port === 0) port = Number(this.store.getSetting('api_port') ?? '0');
    let addr: AddressInfo;
    try {
      addr = await api.listen(at.host, port, fallback);
    } catch (err) {
      if (at.port !== 0 || port === 0) throw err;
      addr = await api.listen(at.host, 0, fallback); // the kept port is taken now: pick another
    }
    this.store.setSetting('api_port', String(addr.port));
    return this.#announce(api, publicHost, addr.port, fingerprint256);
  }

  /**
   * The API served on the main TLS port (`--api main`): no port of its own. `api` came from
   * createApi with the main port's certificate, whose fingerprint is `fingerprint256`.
   */
  announceMainPortApi(
    api: ManagementApi,
    publicHost: string,
    port: number,
    fingerprint256: string,
  ): { apiUrl: string; certSha256: string } {
    return this.#announce(api, publicHost, port, fingerprint256);
  }

  #announce(
    api: ManagementApi,
    publicHost: string,
    port: number,
    fingerprint256: string,
  ): { apiUrl: string; certSha256: string } {
    const certSha256 = fingerprint256.replace(/:/g, '');
    const apiUrl = `https://${formatHostPort(publicHost, port)}${api.prefix}`;
    writeSecretFile(
      join(this.store.dir, 'access.txt'),
      `apiUrl:${apiUrl}\ncertSha256:${certSha256}\n`,
    );
    return { apiUrl, certSha256 };
  }

  async close(): Promise<void> {
    await this.#api?.close();
    this.keys.stop();
    await this.fleet?.drain();
    this.store.close();
  }
}

/** Serves `metrics.render()` at /metrics over plain HTTP (bind it to loopback or a private address). */
export async function startMetricsServer(metrics: Metrics, at: HostPort): Promise<HttpServer> {
  const server = createHttpServer((req, res) => {
    if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res
        .writeHead(404, { 'Content-Type': 'text/plain' })
        .end('not found; metrics are at /metrics\n');
      return;
    }
    res
      .writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' })
      .end(metrics.render());
  });
  await listenTcp(server, at.host, at.port, 'TCP', '--metrics');
  return server;
}

/** Opens the fleet's store (`--store`) with its cache in `dataDir`, reporting health as a metric. */
export function openFleet(url: string, dataDir: string, metrics: Metrics): Promise<FleetStore> {
  return FleetStore.open(url, dataDir, { onHealth: (up) => metrics.setStoreUp(up) });
}
