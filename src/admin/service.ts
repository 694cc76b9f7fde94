/**
 * What an operator can do to a server, whoever asks: the management API (api.ts), the dashboard
 * (through the API) and `ladder keys --data DIR` (directly, in another process). One place for the
 * server's settings and for the access URLs handed to users.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { LadderError } from '../errors.js';
import { formatSsUri } from '../codec/access-key-uri.js';
import { formatTrojanUri, parseTrojanUri } from '../codec/trojan-uri.js';

import { formatLadderKey, MAX_LADDER_KEY_LENGTH, MAX_TRANSPORTS } from '../codec/ladder-key.js';
import type { AccessKeyStore } from '../store/key-store.js';
import type { FleetNode } from '../store/pg-fleet.js';
import {
  checkDataLimit,
  checkExpiry,
  checkName,
  checkPositiveOrNull,
  checkTransports,
} from '../access/access-key.js';
import type { KeyManager, KeyView } from '../server/access/key-manager.js';
import type { Metrics } from '../server/metrics.js';

/** Mux.Cool sessions per TLS connection for the Trojan transport of a ladder:// bundle. */
const BUNDLE_MUX = 8;

export const LADDER_VERSION = '0.1.0';

/** How the running server can be reached; stored so that offline tools build the same URLs. */
export interface Reachability {
  /** The port every key is served on. */
  port: number;
  /** Trojan over TLS on the same port, when on: the SNI to send and the certificate pin if self-signed. */
  trojan?: { sni: string; pinSha256?: string };
}

/** A key as the API returns it: Outline's fields first, Ladder's after. */
export interface ApiKey {
  id: string;
  name: string;
  password: string;
  port: number;
  method: string;
  accessUrl: string;
  dataLimit?: { bytes: number };
  // Ladder's additions (Outline clients ignore unknown fields)
  ladder: {
    state: KeyView['state'];
    disabled: boolean;
    transports: readonly string[];
    createdMs: number;
    expiresMs: number | null;
    dataLimit: { bytes: number; period: string } | null;
    effectiveLimit: { bytes: number; period: string } | null;
    speedLimitBps: number | null;
    deviceLimit: number | null;
    usedBytes: number;
    totalBytes: number;
    connections: number;
    devices: number;
    trojanUrl?: string;
    /** Every transport of the key in one ladder:// key, Trojan first (it looks like HTTPS). */
    bundleUrl: string;
  };
}

/** A node's view of its fleet (fleet-store.ts), when the store is shared. */
export interface FleetView {
  readonly nodeId: string;
  readonly up: boolean | null;
  nodes(): readonly FleetNode[];
  usageByNode(): { nodeId: string; keyId: string; bytes: number }[];
}

/** A node not heard from for this long is shown as down and left out of new bundles. */
const NODE_STALE_MS = 15_000;

export class AdminService {
  readonly store: AccessKeyStore;
  readonly keys: KeyManager;
  readonly metrics: Metrics | undefined;
  readonly fleet: FleetView | undefined;

  constructor(store: AccessKeyStore, keys: KeyManager, metrics?: Metrics, fleet?: FleetView) {
    this.store = store;
    this.fleet = fleet;
    this.keys = keys;
    this.metrics = metrics;
    store.settingOnce('server_id', () => randomUUID());
    store.settingOnce('created_ms', () => String(Date.now()));
  }

  /** Records how the server is reached now (called by `ladder server` at start). */
  setReachability(r: Reachability): void {
    this.store.setSetting('reachability', JSON.stringify(r));
    if (this.store.getSetting('port_for_new_access_keys') === undefined)
      this.store.setSetting('port_for_new_access_keys', String(r.port));
  }

  reachability(): Reachability {
    const v = this.store.getSetting('reachability');
    if (!v)
      throw new LadderError(
        'ERR_CONFIG',
        `no server has run with --data ${this.store.dir} yet, so its port is unknown; start 'ladder server --data ${this.store.dir}' once`,
      );
    return JSON.parse(v) as Reachability;
  }

  get name(): string {
    return this.store.getSetting('name') ?? 'Ladder Server';
  }

  set name(name: string) {
    if (typeof name !== 'string' || name.length === 0 || name.length > 100)
      throw new LadderError('ERR_USAGE', 'a server name must be 1-100 characters');
    this.store.setSetting('name', name);
  }

  get hostname(): string {
    return this.store.getSetting('hostname') ?? '127.0.0.1';
  }

  set hostname(h: string) {
    const ok =
      typeof h === 'string' &&
      (isIP(h) !== 0 ||
        /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
          h,
        ));
    if (!ok)
      throw new LadderError(
        'ERR_USAGE',
        `hostname ${JSON.stringify(h)} is not a host name or IP address`,
      );
    this.store.setSetting('hostname', h);
  }

  /** Sets the hostname only if none was chosen (the server's default from --public-host or its address). */
  defaultHostname(h: string): void {
    if (this.store.getSetting('hostname') === undefined) this.hostname = h;
  }

  get portForNewAccessKeys(): number {
    return Number(this.store.getSetting('port_for_new_access_keys') ?? this.reachability().port);
  }

  /** Ladder serves every key on one port: only that port can be chosen. */
  set portForNewAccessKeys(port: number) {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new LadderError('ERR_USAGE', 'the port must be an integer from 1 through 65535');
    const serving = this.reachability().port;
    if (port !== serving)
      throw new LadderError(
        'ERR_CONFLICT',
        `Ladder serves every access key on one port (${serving}); restart the server with --listen to use port ${port}`,
      );
    this.store.setSetting('port_for_new_access_keys', String(port));
  }

  /** Ladder sends no telemetry; this only records the operator's answer for Outline Manager. */
  get metricsEnabled(): boolean {
    return this.store.getSetting('metrics_enabled') === 'true';
  }

  set metricsEnabled(v: boolean) {
    if (typeof v !== 'boolean')
      throw new LadderError('ERR_USAGE', '`metricsEnabled` must be true or false');
    this.store.setSetting('metrics_enabled', String(v));
  }

  serverJson(): Record<string, unknown> {
    const limit = this.keys.defaultLimit;
    let port: number | undefined;
    try {
      port = this.portForNewAccessKeys;
    } catch {
      port = undefined;
    }
    return {
      name: this.name,
      serverId: this.store.getSetting('server_id'),
      metricsEnabled: this.metricsEnabled,
      createdTimestampMs: Number(this.store.getSetting('created_ms')),
      version: LADDER_VERSION,
      ...(limit ? { accessKeyDataLimit: { bytes: limit.bytes } } : {}),
      ...(port !== undefined ? { portForNewAccessKeys: port } : {}),
      hostnameForAccessKeys: this.hostname,
    };
  }

  /**
   * Makes a key from a request body: Outline's fields (name, method, password, port, `limit`:
   * {bytes}, over 30 days) and Ladder's (`dataLimit` with a period, expiresMs, speedLimitBps,
   * deviceLimit, transports). The port, if given, must be the server's: all keys share it.
   */
  createKey(b: Record<string, unknown>, id?: string): KeyView {
    if (b.port !== undefined && b.port !== this.reachability().port)
      throw new LadderError(
        'ERR_CONFLICT',
        `Ladder serves every access key on one port (${this.reachability().port})`,
      );
    for (const f of ['name', 'method', 'password'] as const)
      if (b[f] !== undefined && typeof b[f] !== 'string')
        throw new LadderError('ERR_USAGE', `Expected a string for ${f}`);
    const given = (v: unknown): boolean => v !== undefined && v !== null;
    const limit = b.limit !== undefined ? b.limit : given(b.dataLimit) ? b.dataLimit : undefined;
    return this.keys.create({
      ...(id !== undefined ? { id } : {}),
      ...(b.name !== undefined ? { name: b.name as string } : {}),
      ...(b.method ? { method: b.method as string } : {}),
      ...(b.password !== undefined ? { password: b.password as string } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(given(b.expiresMs) ? { expiresMs: b.expiresMs } : {}),
      ...(given(b.speedLimitBps) ? { speedLimitBps: b.speedLimitBps } : {}),
      ...(given(b.deviceLimit) ? { deviceLimit: b.deviceLimit } : {}),
      ...(given(b.transports) ? { transports: b.transports } : {}),
    });
  }

  /**
   * Ladder's partial update of a key: any of name, disabled, dataLimit, expiresMs, speedLimitBps,
   * deviceLimit (null removes a limit). Everything is checked before anything changes.
   */
  patchKey(id: string, b: Record<string, unknown>): KeyView {
    this.keys.get(id); // ERR_NOT_FOUND before any change
    const known = [
      'name',
      'disabled',
      'dataLimit',
      'expiresMs',
      'speedLimitBps',
      'deviceLimit',
      'transports',
    ];
    for (const f of Object.keys(b))
      if (!known.includes(f))
        throw new LadderError('ERR_USAGE', `unknown field '${f}'; a key has ${known.join(', ')}`);
    if (b.disabled !== undefined && typeof b.disabled !== 'boolean')
      throw new LadderError('ERR_USAGE', '`disabled` must be true or false');
    if (b.name !== undefined) checkName(b.name);
    if (b.dataLimit !== undefined && b.dataLimit !== null) checkDataLimit(b.dataLimit);
    if (b.expiresMs !== undefined) checkExpiry(b.expiresMs);
    if (b.speedLimitBps !== undefined)
      checkPositiveOrNull(b.speedLimitBps, 'a speed limit (bytes per second)');
    if (b.deviceLimit !== undefined) checkPositiveOrNull(b.deviceLimit, 'a device limit');
    if (b.transports !== undefined) checkTransports(b.transports);
    if (b.name !== undefined) this.keys.rename(id, b.name);
    if (b.dataLimit !== undefined) this.keys.setDataLimit(id, b.dataLimit);
    if (b.expiresMs !== undefined) this.keys.setExpiry(id, b.expiresMs);
    if (b.speedLimitBps !== undefined) this.keys.setSpeedLimit(id, b.speedLimitBps);
    if (b.deviceLimit !== undefined) this.keys.setDeviceLimit(id, b.deviceLimit);
    if (b.transports !== undefined) this.keys.setTransports(id, b.transports);
    if (b.disabled !== undefined) this.keys.setDisabled(id, b.disabled as boolean);
    return this.keys.get(id);
  }

  /** A key's URIs on one server: ss://, trojan:// when served, and the bundle's transports. */
  #urlsOn(
    k: KeyView,
    host: string,
    r: Reachability,
  ): { accessUrl: string; trojanUrl: string | undefined; bundled: string[] } {
    const accessUrl = formatSsUri({
      method: k.method,
      password: k.secret,
      host,
      port: r.port,
      ...(k.name ? { tag: k.name } : {}),
    });
    const trojanUrl =
      r.trojan && k.transports.includes('trojan')
        ? formatTrojanUri({
            password: k.secret,
            host,
            port: r.port,
            sni: r.trojan.sni,
            ...(r.trojan.pinSha256 ? { pinSha256: r.trojan.pinSha256 } : {}),
            ...(k.name ? { tag: k.name } : {}),
          })
        : undefined;
    const transports = [
      ...(trojanUrl ? [trojanUrl] : []),
      ...(k.transports.includes('ss') ? [accessUrl] : []),
    ];
    // The bundle is for Ladder's client, and the server is Ladder: its Trojan rides Mux.Cool
    // (mux=8, v2ray's default concurrency), so most connections skip the TLS handshake
    // (docs/benchmarks.md). The trojan:// key alone stays plain, for GUIs of every kind.
    const bundled = transports.map((t) =>
      t === trojanUrl ? formatTrojanUri({ ...parseTrojanUri(t), mux: BUNDLE_MUX }) : t,
    );
    return { accessUrl, trojanUrl, bundled: bundled.length > 0 ? bundled : [accessUrl] };
  }

  /** The other live servers of the fleet, as (host, reachability), oldest first. */
  #otherServers(): { host: string; reach: Reachability }[] {
    if (!this.fleet) return [];
    const now = Date.now();
    const out: { host: string; reach: Reachability }[] = [];
    for (const n of this.fleet.nodes()) {
      if (n.nodeId === this.fleet.nodeId || now - n.seenMs > NODE_STALE_MS) continue;
      try {
        const reach = JSON.parse(n.reach) as Reachability;
        if (typeof reach.port === 'number') out.push({ host: n.publicHost, reach });
      } catch {
        // a node that has not said how to reach it yet
      }
    }
    return out;
  }

  keyJson(k: KeyView): ApiKey {
    const r = this.reachability();
    const { accessUrl, trojanUrl, bundled } = this.#urlsOn(k, this.hostname, r);
    const limit = k.dataLimit;
    // In a fleet the bundle lists this server first, then the others (the client measures them
    // and uses the fastest that works), as many as fit the key's size limits.
    const all = [...bundled];
    for (const o of this.#otherServers()) {
      const more = this.#urlsOn(k, o.host, o.reach).bundled;
      if (all.length + more.length > MAX_TRANSPORTS) break;
      const next = [...all, ...more];
      if (
        formatLadderKey({ transports: next, ...(k.name ? { name: k.name } : {}) }).length >
        MAX_LADDER_KEY_LENGTH
      )
        break;
      all.push(...more);
    }
    const bundleUrl = formatLadderKey({
      transports: all,
      ...(k.name ? { name: k.name } : {}),
    });
    return {
      id: k.id,
      name: k.name,
      password: k.secret,
      port: r.port,
      method: k.method,
      accessUrl,
      ...(limit ? { dataLimit: { bytes: limit.bytes } } : {}),
      ladder: {
        state: k.state,
        disabled: k.disabled,
        transports: k.transports,
        createdMs: k.createdMs,
        expiresMs: k.expiresMs,
        dataLimit: limit,
        effectiveLimit: k.limit,
        speedLimitBps: k.speedLimitBps,
        deviceLimit: k.deviceLimit,
        usedBytes: k.usedBytes,
        totalBytes: k.totalBytes,
        connections: k.connections,
        devices: k.devices,
        ...(trojanUrl ? { trojanUrl } : {}),
        bundleUrl,
      },
    };
  }

  /** The fleet as this node sees it: servers, their health, usage per server and key. */
  fleetJson(): Record<string, unknown> {
    if (!this.fleet)
      return {
        fleet: false,
        servers: [
          { id: this.store.getSetting('server_id'), name: this.name, self: true, healthy: true },
        ],
      };
    const now = Date.now();
    const perNode = new Map<string, Record<string, number>>();
    for (const u of this.fleet.usageByNode()) {
      let m = perNode.get(u.nodeId);
      if (!m) perNode.set(u.nodeId, (m = {}));
      m[u.keyId] = (m[u.keyId] ?? 0) + u.bytes;
    }
    return {
      fleet: true,
      storeReachable: this.fleet.up === true,
      keys: this.store.listKeys().length,
      servers: this.fleet.nodes().map((n) => {
        const byKey = perNode.get(n.nodeId) ?? {};
        return {
          id: n.nodeId,
          name: n.name,
          host: n.publicHost,
          port: n.port,
          self: n.nodeId === this.fleet!.nodeId,
          healthy: now - n.seenMs <= NODE_STALE_MS,
          lastSeenMs: n.seenMs,
          startedMs: n.startedMs,
          activeConnections: n.connections,
          bytes: Object.values(byKey).reduce((a, b) => a + b, 0),
          bytesByKey: byKey,
        };
      }),
    };
  }
}
