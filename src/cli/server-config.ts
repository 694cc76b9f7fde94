/**
 * `ladder server` flags turned into one checked, plain configuration: no files read, no sockets, no
 * clocks. Every usage error the server can report about its flags is raised here, before anything
 * starts; the builders in server-build.ts then only wire what this describes.
 * @module
 */
import { parseTrojanUri } from '../codec/trojan-uri.js';
import { trojanPasswordHash } from '../codec/trojan.js';
import { v2rayPluginOptions } from '../codec/v2ray-plugin.js';
import { parseSsUri } from '../codec/access-key-uri.js';
import type { SsServerKey } from '../codec/ss-tcp.js';
import {
  DEFAULT_AUTH_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_SERVER_HOST,
  DEFAULT_SERVER_LISTEN,
} from '../core/defaults.js';
import type { Target } from '../core/target.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import { CodecError, LadderError } from '../errors.js';
import { checkTunnelDomain } from '../codec/dns-tunnel.js';
import type { TrojanUser } from '../server/trojan-server.js';
import { DEFAULT_MAX_PRE_AUTH_PER_SOURCE } from '../server/pre-auth.js';
import { formatHostPort, parseCount, parseFlags, parseHostPort, parseSeconds } from './args.js';
import { publishedFiles } from './publish-flag.js';

/** The flags of `ladder server`, in node:util parseArgs form. */
export const SERVER_FLAGS = {
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
  publish: { type: 'string', multiple: true },
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
  'dns-tunnel': { type: 'string' },
  'dns-tunnel-listen': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The parsed flag values of `ladder server`. */
export type ServerFlags = ReturnType<typeof parseServerFlags>;

/** Parses `ladder server` argv into flag values (usage errors name the bad flag). */
export function parseServerFlags(argv: string[]) {
  return parseFlags('server', argv, SERVER_FLAGS).values;
}

/** Where the management API is served: its own port, the main TLS port, or not at all. */
export type ApiPlacement = { kind: 'port'; at: Target } | { kind: 'main' } | { kind: 'none' };

/** The operator part: a key store on disk, optionally a fleet database, and its surfaces. */
export interface OperatorConfig {
  dataDir: string;
  /** PostgreSQL URL of a fleet store. */
  store?: string;
  api: ApiPlacement;
  /** The address put in keys handed out; undefined: guessed from the machine. */
  publicHost?: string;
  /** Serve the stored keys as Trojan over TLS too. */
  trojan: boolean;
}

/** Everything `ladder server` needs to start, checked. */
export interface ServerConfig {
  listen: Target;
  /** Shadowsocks keys from --key. */
  ssKeys: SsServerKey[];
  /** Trojan users from --key. */
  trojanUsers: TrojanUser[];
  /** The secret paths of the WebSocket keys. */
  wsPaths: string[];
  /** Whether some WebSocket key is plain (no TLS), worth a note without --ws-listen. */
  wsPlain: boolean;
  /** Whether a TLS port is served (Trojan or WebSocket keys, or --trojan). */
  tlsPort: boolean;
  udp: boolean;
  allowPrivateTargets: boolean;
  /** An /etc/hosts-format file looked up before DNS. */
  hostsFile?: string;
  authTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerSource: number;
  /** Connections one key holds at once; 0: no cap. */
  maxConnectionsPerKey: number;
  /** Certificate and key files (PEM); undefined: a self-signed one is made or kept. */
  tlsFiles?: { cert: string; key: string };
  /** What TLS visitors without a key get: a web server to forward to, or the decoy site's files. */
  fallback?: Target;
  decoyDir?: string;
  /** Files the decoy site serves at secret paths (--publish): path → file. */
  published?: ReadonlyMap<string, string>;
  /** Where the plain WebSocket listener goes (--ws-listen). */
  wsListen?: Target;
  operator?: OperatorConfig;
  metrics?: Target;
  /** The DNS tunnel (--dns-tunnel): its domain (canonical) and its UDP address. */
  dnsTunnel?: { domain: string; listen: Target };
}

/** Checks the flags of `ladder server` and turns them into a {@link ServerConfig}. Pure. */
export function parseServerConfig(values: ServerFlags): ServerConfig {
  const listen = parseHostPort(
    values.listen ?? DEFAULT_SERVER_LISTEN,
    '--listen',
    DEFAULT_SERVER_HOST,
  );
  const uris = values.key ?? [];
  if (uris.length === 0 && !values.data) {
    throw new LadderError(
      'ERR_USAGE',
      "server: give at least one --key <ss-uri> (make one with 'ladder keys new --method 2022-blake3-aes-256-gcm'), or --data <dir> to keep keys in a store",
    );
  }
  const keys = parseServerKeys(uris);
  if (!values.data)
    for (const f of ['api', 'no-api', 'public-host', 'trojan', 'store'] as const)
      if (values[f] !== undefined)
        throw new LadderError('ERR_USAGE', `--${f} needs --data <dir> (the key store it works on)`);
  const limits = parseLimits(values);
  const wsListen = values['ws-listen']
    ? parseHostPort(values['ws-listen'], '--ws-listen', DEFAULT_SERVER_HOST)
    : undefined;
  if (wsListen && keys.wsPaths.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      '--ws-listen needs WebSocket keys: ss:// with plugin=v2ray-plugin;path=/... or trojan:// with type=ws&path=/... (ladder keys new --transport ws)',
    );
  const tlsPort = keys.trojanUsers.length > 0 || values.trojan === true || keys.wsPaths.length > 0;
  const apiOnMain = values.api === 'main' && !values['no-api'];
  if (apiOnMain && !tlsPort)
    throw new LadderError(
      'ERR_USAGE',
      '--api main serves the API on the main TLS port, and this server has none: add --trojan, or give the API its own --api host:port',
    );
  let tlsFiles: ServerConfig['tlsFiles'];
  let fallback: Target | undefined;
  if (tlsPort) {
    if (values['tls-cert'] || values['tls-key']) {
      if (!values['tls-cert'] || !values['tls-key'])
        throw new LadderError('ERR_USAGE', 'give both --tls-cert and --tls-key');
      tlsFiles = { cert: values['tls-cert'], key: values['tls-key'] };
    }
    if (values.fallback) fallback = parseHostPort(values.fallback, '--fallback');
  }
  const dnsTunnel = parseDnsTunnel(values, listen);
  const operator = values.data ? parseOperator(values, values.data, listen, apiOnMain) : undefined;
  return {
    listen,
    ssKeys: keys.ssKeys,
    trojanUsers: keys.trojanUsers,
    wsPaths: keys.wsPaths,
    wsPlain: keys.wsPlain,
    tlsPort,
    udp: !values['no-udp'],
    allowPrivateTargets: values['allow-private-targets'] === true,
    ...(values.hosts ? { hostsFile: values.hosts } : {}),
    ...limits,
    ...(tlsFiles ? { tlsFiles } : {}),
    ...(fallback ? { fallback } : {}),
    ...(values['decoy-dir'] ? { decoyDir: values['decoy-dir'] } : {}),
    ...publishedFiles(values.publish, values.fallback),
    ...(wsListen ? { wsListen } : {}),
    ...(operator ? { operator } : {}),
    ...(values.metrics ? { metrics: parseHostPort(values.metrics, '--metrics') } : {}),
    ...(dnsTunnel ? { dnsTunnel } : {}),
  };
}

/** --dns-tunnel <domain> and --dns-tunnel-listen (default: the --listen host, port 53). */
function parseDnsTunnel(values: ServerFlags, listen: Target): ServerConfig['dnsTunnel'] {
  const text = values['dns-tunnel'];
  if (text === undefined) {
    if (values['dns-tunnel-listen'] !== undefined)
      throw new LadderError(
        'ERR_USAGE',
        '--dns-tunnel-listen needs --dns-tunnel <domain> (the domain delegated to this server)',
      );
    return undefined;
  }
  let domain: string;
  try {
    domain = checkTunnelDomain(text);
  } catch (err) {
    if (!(err instanceof CodecError)) throw err;
    throw new LadderError(
      'ERR_USAGE',
      `--dns-tunnel: ${err.message.replace(/^DNS tunnel: /, '')}; give the domain whose NS record points at this server`,
    );
  }
  const at = values['dns-tunnel-listen'] ?? formatHostPort(listen.host, 53);
  return { domain, listen: parseHostPort(at, '--dns-tunnel-listen', listen.host) };
}

type Limits = Pick<
  ServerConfig,
  | 'authTimeoutMs'
  | 'idleTimeoutMs'
  | 'maxConnections'
  | 'maxUnauthenticated'
  | 'maxUnauthenticatedPerSource'
  | 'maxConnectionsPerKey'
>;

/** Timeouts and caps, each from its flag or its default. */
function parseLimits(values: ServerFlags): Limits {
  const maxConnectionsPerKey = values['max-connections-per-key']
    ? parseCount(values['max-connections-per-key'], '--max-connections-per-key', 0)
    : 0;
  const authTimeoutMs = parseSeconds(
    values['auth-timeout'],
    '--auth-timeout',
    DEFAULT_AUTH_TIMEOUT_MS,
  );
  const idleTimeoutMs = parseSeconds(
    values['idle-timeout'],
    '--idle-timeout',
    DEFAULT_IDLE_TIMEOUT_MS,
  );
  const maxConnections = parseCount(
    values['max-connections'],
    '--max-connections',
    DEFAULT_MAX_CONNECTIONS,
  );
  const maxUnauthenticated = parseCount(
    values['max-unauthenticated'],
    '--max-unauthenticated',
    Math.max(1, Math.floor(maxConnections / 2)),
  );
  const maxUnauthenticatedPerSource = parseCount(
    values['max-unauthenticated-per-source'],
    '--max-unauthenticated-per-source',
    DEFAULT_MAX_PRE_AUTH_PER_SOURCE,
  );
  return {
    authTimeoutMs,
    idleTimeoutMs,
    maxConnections,
    maxUnauthenticated,
    maxUnauthenticatedPerSource,
    maxConnectionsPerKey,
  };
}

/** The operator part (--data and the flags that need it). */
function parseOperator(
  values: ServerFlags,
  dataDir: string,
  listen: Target,
  apiOnMain: boolean,
): OperatorConfig {
  const api: ApiPlacement = values['no-api']
    ? { kind: 'none' }
    : apiOnMain
      ? { kind: 'main' }
      : {
          kind: 'port',
          at: parseHostPort(values.api ?? formatHostPort(listen.host, 0), '--api', listen.host),
        };
  return {
    dataDir,
    ...(values.store ? { store: values.store } : {}),
    api,
    ...(values['public-host'] !== undefined ? { publicHost: values['public-host'] } : {}),
    trojan: values.trojan === true,
  };
}

type ServerKeys = Pick<ServerConfig, 'ssKeys' | 'trojanUsers' | 'wsPaths' | 'wsPlain'>;

/** Parses the --key URIs; a key without a #tag is named `key-<n>`, and names must differ. */
export function parseServerKeys(uris: readonly string[]): ServerKeys {
  const out: ServerKeys = { ssKeys: [], trojanUsers: [], wsPaths: [], wsPlain: false };
  uris.forEach((uri, i) => {
    try {
      if (/^trojan:/i.test(uri.trim())) {
        const t = parseTrojanUri(uri);
        out.trojanUsers.push({
          id: t.tag && t.tag.length > 0 ? t.tag : `key-${i + 1}`,
          hash: trojanPasswordHash(t.password),
        });
        if (t.type === 'ws') {
          out.wsPaths.push(t.path ?? '/');
          out.wsPlain ||= t.security === 'none';
        }
        return;
      }
      const k = parseSsUri(uri);
      const ws = v2rayPluginOptions(k.plugin);
      if (ws) {
        out.wsPaths.push(ws.path);
        out.wsPlain ||= !ws.tls;
      }
      out.ssKeys.push({
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
  for (const k of [...out.ssKeys, ...out.trojanUsers]) {
    if (ids.has(k.id))
      throw new LadderError(
        'ERR_USAGE',
        `two keys share the name '${k.id}'; give each key URI its own #tag`,
      );
    ids.add(k.id);
  }
  return out;
}
