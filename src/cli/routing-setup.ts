/**
 * `ladder client --rules …`: from the routing flags to a RoutedDialer (src/routing/). Kept apart
 * from client-command.ts so that command stays a few lines longer, not a screen.
 * @module
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { createRequire } from 'node:module';
import { lookup as systemLookup } from 'node:dns/promises';
import { getServers } from 'node:dns';
import type { Socket as UdpSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { DialError, LadderError } from '../errors.js';
import { parseRules, type RuleFiles, type RuleTable } from '../routing/rules.js';
import { MmdbReader } from '../routing/mmdb.js';
import { RoutedDialer, type RoutedDialerOptions } from '../routing/routed-dialer.js';
import type { NameAnswer, NameLookup } from '../routing/dns-cache.js';
import { DirectDialer, DirectPacketDialer, type DirectDialerOptions } from '../transport/direct.js';
import { StreamResolver, udpResolver, type Resolver } from '../probe/dns-client.js';
import { DotResolver, DohResolver } from '../probe/encrypted-dns.js';
import { DNS_TYPE } from '../codec/dns.js';
import type { StreamDialer, Target } from '../transport/types.js';
import type { KeyDialers } from './key-dialers.js';
import { parseHostPort } from './args.js';
import { formatHostPort } from '../core/host-port.js';

/** The client's routing flags (joined into its parseFlags options). */
export const ROUTING_FLAGS = {
  rules: { type: 'string' },
  geoip: { type: 'string' },
  'dns-direct': { type: 'string' },
  'dns-remote': { type: 'string' },
  'log-connections': { type: 'boolean' },
} as const;

/** Where names are resolved through the tunnel when --dns-remote is not given. */
export const DEFAULT_DNS_REMOTE = '1.1.1.1:53';

export const ROUTING_HELP = `routing (docs/routing.md):
  --rules <file|preset:cn>  Clash-style rules: DIRECT, PROXY (or a transport's #name in a ladder://
                         key) or REJECT per connection; without it everything goes through the tunnel.
                         preset:cn: private ranges and China direct, the rest through the tunnel
  --geoip <file.mmdb>    MaxMind-format country database for GEOIP rules (default: the one the
                         @ip-location-db/geo-whois-asn-country-mmdb package ships)
  --dns-direct <ip:port> resolver for names routed direct (default: the system's)
  --dns-remote <ip:port|tls://host[:853]|https://host[:443]/path>
                         resolver asked through the tunnel when a rule needs a name's address: DNS
                         over TCP, TLS (DoT) or HTTPS (DoH); the server resolves its name
                         (default ${DEFAULT_DNS_REMOTE})
  --log-connections      print each connection's rule and route (names destinations; off by default)`;

/** The rules `--rules preset:cn` stands for (docs/routing.md explains each line). */
export const PRESET_CN = `# preset:cn — China: domestic direct, the rest through the tunnel
DOMAIN-SUFFIX,cn,DIRECT
GEOIP,LAN,DIRECT
GEOIP,CN,DIRECT
MATCH,PROXY
`;

export interface RoutingConfig {
  readonly rules: string;
  readonly geoip?: string;
  readonly dnsDirect?: Target;
  readonly dnsRemote: RemoteDns;
  readonly logConnections: boolean;
}

type RoutingValues = {
  rules?: string | undefined;
  geoip?: string | undefined;
  'dns-direct'?: string | undefined;
  'dns-remote'?: string | undefined;
  'log-connections'?: boolean | undefined;
};

/**
 * Where --dns-remote sends its queries, through the tunnel: DNS over TCP (`<ip:port>`, or
 * `tcp://<ip>[:53]`), DNS over TLS (`tls://<host>[:853]`, RFC 7858) or DNS over HTTPS
 * (`https://<host>[:443]/<path>`, RFC 8484). A host name is resolved by the tunnel's server.
 */
export type RemoteDns =
  | { readonly protocol: 'tcp'; readonly server: Target }
  | { readonly protocol: 'tls'; readonly server: Target }
  | { readonly protocol: 'https'; readonly server: Target; readonly path: string };

const DNS_REMOTE_FORMS =
  'give <ip:port> (DNS over TCP), tls://<host>[:853] (DNS over TLS) or https://<host>[:443]/<path> (DNS over HTTPS), e.g. tls://1.1.1.1 or https://dns.google/dns-query';

/** RFC 1123 host names: letters, digits and hyphens in labels of at most 63, 253 in all. */
const HOST_NAME =
  /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

function ipAndPort(flag: string, text: string): Target {
  const t = parseHostPort(text, flag);
  if (isIP(t.host) === 0)
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${text}' takes an IP address and port, e.g. 223.5.5.5:53`,
    );
  return t;
}

/** Parses --dns-remote (pure): the forms mihomo and sing-box write, see {@link RemoteDns}. */
export function parseDnsRemote(text: string): RemoteDns {
  const shown = text.slice(0, 80);
  const bad = (why: string): LadderError =>
    new LadderError('ERR_USAGE', `--dns-remote '${shown}': ${why}; ${DNS_REMOTE_FORMS}`);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (isIP(text) !== 0) throw bad('the port is missing (53 for DNS over TCP)');
    try {
      return { protocol: 'tcp', server: ipAndPort('--dns-remote', text) };
    } catch {
      throw bad('not an IP address and port');
    }
  }
  const protocol =
    scheme === 'tcp' ? 'tcp' : scheme === 'tls' ? 'tls' : scheme === 'https' ? 'https' : undefined;
  if (protocol === undefined)
    throw bad(
      `${scheme}:// is not offered (the query travels inside the tunnel, which carries streams)`,
    );
  const rest = text.slice(scheme.length + 3);
  if (rest.includes('#'))
    throw bad(
      'a #fragment (a proxy or option in mihomo) is not taken: Ladder always asks through the tunnel',
    );
  // authority [/path[?query]]
  const slash = rest.indexOf('/');
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  if (authority.includes('@')) throw bad('a user name or password is not taken');
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*))(?::(\d{1,5}))?$/.exec(authority);
  const host = m?.[1] ?? m?.[2] ?? '';
  const port = m?.[3] !== undefined ? Number(m[3]) : { tcp: 53, tls: 853, https: 443 }[protocol];
  if (!m || host === '') throw bad('the host is missing or malformed');
  if (m[1] !== undefined && isIP(host) !== 6)
    throw bad(`'${host.slice(0, 40)}' in brackets is not an IPv6 address`);
  if (m[1] === undefined && isIP(host) === 0 && !HOST_NAME.test(host))
    throw bad(`'${host.slice(0, 60)}' is not a host name or IP address`);
  if (port < 1 || port > 65535) throw bad(`the port ${port} is not from 1 to 65535`);
  const server = { host: host.replace(/\.$/, '').toLowerCase(), port };
  if (protocol === 'tcp') {
    if (isIP(host) === 0)
      throw bad('tcp:// takes an IP address (use tls:// or https:// for a name)');
    if (path !== '' && path !== '/') throw bad('tcp:// takes no path');
    return { protocol, server };
  }
  if (protocol === 'tls') {
    if (path !== '' && path !== '/') throw bad('tls:// takes no path');
    return { protocol, server };
  }
  // RFC 3986 path and query characters only: the request line carries them as they are
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$/.test(path))
    throw bad(
      'the path has characters a URL does not (spaces, quotes, controls): percent-encode them',
    );
  return { protocol, server, path: path === '' || path === '/' ? '/dns-query' : path };
}

/** Checks the routing flags (pure). Undefined when --rules is absent: today's behaviour. */
export function routingConfig(v: RoutingValues): RoutingConfig | undefined {
  if (v.rules === undefined) {
    const stray = (['geoip', 'dns-direct', 'dns-remote', 'log-connections'] as const).find(
      (f) => v[f] !== undefined,
    );
    if (stray)
      throw new LadderError(
        'ERR_USAGE',
        `--${stray} takes effect only with --rules <file|preset:cn>; add --rules or drop --${stray}`,
      );
    return undefined;
  }
  if (v.rules.startsWith('preset:') && v.rules !== 'preset:cn')
    throw new LadderError(
      'ERR_USAGE',
      `--rules ${v.rules.slice(0, 30)}: the presets are: preset:cn`,
    );
  const ipPort = (flag: string, text: string): Target => {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
      throw new LadderError(
        'ERR_USAGE',
        `${flag} '${text.slice(0, 60)}': give an IP address and port, e.g. 223.5.5.5:53; the query is plain DNS over UDP`,
      );
    return ipAndPort(flag, text);
  };
  return {
    rules: v.rules,
    ...(v.geoip !== undefined ? { geoip: v.geoip } : {}),
    ...(v['dns-direct'] !== undefined
      ? { dnsDirect: ipPort('--dns-direct', v['dns-direct']) }
      : {}),
    dnsRemote: parseDnsRemote(v['dns-remote'] ?? DEFAULT_DNS_REMOTE),
    logConnections: v['log-connections'] ?? false,
  };
}

/** Rule files from the disk, rule sets relative to the file naming them. */
const diskFiles: RuleFiles = {
  read(path, from) {
    const full =
      isAbsolute(path) || from.startsWith('preset:') ? path : resolvePath(dirname(from), path);
    return { text: readFileSync(full, 'utf8'), name: path };
  },
};

/** Reads and parses the rules (and the country database when a rule needs one). */
export function loadRules(cfg: RoutingConfig, transports: ReadonlySet<string>): RuleTable {
  let text: string;
  if (cfg.rules === 'preset:cn') text = PRESET_CN;
  else {
    try {
      text = readFileSync(cfg.rules, 'utf8');
    } catch (err) {
      throw new LadderError(
        'ERR_RULES',
        `--rules ${cfg.rules}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give a rule file or preset:cn`,
      );
    }
  }
  const table = parseRules(text, cfg.rules, diskFiles, { transports });
  if (table.usesGeoip || cfg.geoip !== undefined) {
    const file = cfg.geoip ?? defaultGeoipFile();
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (err) {
      throw new LadderError(
        'ERR_GEOIP',
        `--geoip ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give a .mmdb country database`,
      );
    }
    const db = new MmdbReader(bytes, file);
    table.setCountryLookup((ip) => db.country(ip));
  }
  return table;
}

function defaultGeoipFile(): string {
  try {
    return createRequire(import.meta.url).resolve(
      '@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb',
    );
  } catch {
    throw new LadderError(
      'ERR_GEOIP',
      'GEOIP rules need a country database: give --geoip <file.mmdb> (the default, from @ip-location-db/geo-whois-asn-country-mmdb, is not installed)',
    );
  }
}

/** How long one resolver query may take. */
const LOOKUP_TIMEOUT_MS = 5_000;
/** TTL given to the system resolver's answers, which carry none. */
const SYSTEM_TTL_S = 30;

/** A Resolver (probe/dns-client.ts) as a NameLookup: A, then AAAA when there is no A. */
export function lookupWith(r: Resolver): NameLookup {
  return async (name): Promise<NameAnswer> => {
    for (const qtype of [DNS_TYPE.A, DNS_TYPE.AAAA]) {
      const l = await r.lookup(name, qtype, { timeoutMs: LOOKUP_TIMEOUT_MS });
      if (l.addresses.length > 0) {
        const ttls = l.answers.filter((a) => a.type === qtype).map((a) => a.ttl);
        return { addresses: l.addresses, ttlS: ttls.length > 0 ? Math.min(...ttls) : SYSTEM_TTL_S };
      }
    }
    throw new DialError('ERR_DIAL_DNS', 'the name did not resolve');
  };
}

const systemNameLookup: NameLookup = async (name) => {
  try {
    const all = await systemLookup(name, { all: true });
    return { addresses: all.map((a) => a.address), ttlS: SYSTEM_TTL_S };
  } catch (err) {
    throw new DialError('ERR_DIAL_DNS', 'the name did not resolve', { cause: err });
  }
};

/**
 * How DIRECT names are resolved: by --dns-direct, or else by the system. Under --tun the system's
 * resolver would be answered by the tunnel's own fake DNS (every query to port 53 enters the
 * device), so there the queries go to --dns-direct, or else to the system's first configured name
 * server, from a socket that bypasses the tunnel (docs/tun.md, "DIRECT connections").
 */
function directNameLookup(
  cfg: RoutingConfig,
  onUdpSocket: ((socket: UdpSocket) => void) | undefined,
): NameLookup {
  if (!onUdpSocket)
    return cfg.dnsDirect ? lookupWith(udpResolver(cfg.dnsDirect)) : systemNameLookup;
  return lookupWith(udpResolver(directNameServer(cfg), onUdpSocket));
}

/** The resolver of DIRECT names under --tun: --dns-direct, or the system's first name server. */
export function directNameServer(cfg: RoutingConfig): Target {
  return cfg.dnsDirect ?? systemNameServer();
}

/** The first name server the system is configured with (resolv.conf), as a Target. */
function systemNameServer(): Target {
  const first = getServers()[0];
  if (first === undefined)
    throw new LadderError(
      'ERR_USAGE',
      'the system has no name server configured for DIRECT names under --tun; give one with --dns-direct <ip:port>',
    );
  // getServers() gives '1.2.3.4', '1.2.3.4:5353', '::1' or '[::1]:5353'
  const m = /^\[(.+)\]:(\d+)$/.exec(first) ?? /^([\d.]+):(\d+)$/.exec(first);
  return m ? { host: m[1]!, port: Number(m[2]) } : { host: first, port: 53 };
}

/** The --dns-remote resolver, reached through `tunnel`. */
export function remoteResolver(r: RemoteDns, tunnel: StreamDialer): Resolver {
  const label = ' (tunnel)';
  if (r.protocol === 'tls') return new DotResolver({ dialer: tunnel, server: r.server, label });
  if (r.protocol === 'https')
    return new DohResolver({ dialer: tunnel, server: r.server, path: r.path, label });
  return new StreamResolver(tunnel, r.server, label);
}

/** --dns-remote as people write it, for messages. */
function formatDnsRemote(r: RemoteDns): string {
  const at = formatHostPort(r.server.host, r.server.port);
  return r.protocol === 'tcp' ? at : `${r.protocol}://${at}${r.protocol === 'https' ? r.path : ''}`;
}

/**
 * Says once when the remote resolver starts failing (its lookups throw: no answer, TLS refused),
 * and once when it answers again: meanwhile rules that need an address decide by the domestic
 * resolver's answer. A name that does not resolve is an answer, not a failure. The line names the
 * resolver and the error's code, never the name asked.
 */
export function reportingFailures(
  r: Resolver,
  what: string,
  log: (line: string) => void,
): Resolver {
  let failing = false;
  return {
    engine: r.engine,
    address: r.address,
    async lookup(hostname, qtype, o) {
      try {
        const answer = await r.lookup(hostname, qtype, o);
        if (failing) log(`ladder client: the remote resolver ${what} answers again`);
        failing = false;
        return answer;
      } catch (err) {
        if (!failing)
          log(
            `ladder client: the remote resolver ${what} failed (${err instanceof LadderError ? err.code : 'error'}); rules that need an address decide by the domestic resolver's answer until it answers`,
          );
        failing = true;
        throw err;
      }
    },
  };
}

export interface RoutedDialerSetup {
  /** Socket hooks for direct connections (under --tun they must bypass the tunnel). */
  readonly direct?: Pick<DirectDialerOptions, 'onSocket' | 'bindAddress'> & {
    readonly onUdpSocket?: (socket: UdpSocket) => void;
  };
  /** Where --log-connections lines go. */
  readonly log: (line: string) => void;
  /** Where warnings go (default: `log`). */
  readonly warn?: (line: string) => void;
  /** Each TCP connection's decision, for the control page's connection list (never logged). */
  readonly onDecision?: RoutedDialerOptions['onDecision'];
}

/** The RoutedDialer for `cfg` over the key's dialers. */
export function buildRoutedDialer(
  cfg: RoutingConfig,
  key: KeyDialers,
  setup: RoutedDialerSetup,
): RoutedDialer {
  const table = loadRules(cfg, new Set(key.transports.keys()));
  const tunnel: StreamDialer = key.stream;
  return new RoutedDialer({
    table,
    direct: {
      stream: new DirectDialer({
        ...(setup.direct?.onSocket ? { onSocket: setup.direct.onSocket } : {}),
        ...(setup.direct?.bindAddress ? { bindAddress: setup.direct.bindAddress } : {}),
      }),
      packet: new DirectPacketDialer(
        setup.direct?.onUdpSocket ? { onSocket: setup.direct.onUdpSocket } : {},
      ),
    },
    proxy: { stream: key.stream, packet: key.packet },
    transports: key.transports,
    resolveDirect: directNameLookup(cfg, setup.direct?.onUdpSocket),
    resolveRemote: lookupWith(
      reportingFailures(
        remoteResolver(cfg.dnsRemote, tunnel),
        formatDnsRemote(cfg.dnsRemote),
        setup.warn ?? setup.log,
      ),
    ),
    ...(setup.onDecision ? { onDecision: setup.onDecision } : {}),
    ...(cfg.logConnections
      ? { log: (line: string) => setup.log(`ladder client: route ${line}`) }
      : {}),
  });
}
