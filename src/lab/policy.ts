/**
 * Policy files and profiles. A policy names the modules to switch on and their parameters; anything
 * left out takes the reference's defaults (module files cite the sections). Profiles bundle modules
 * the way the GFW bundled them at a time (docs/censorship-techniques.md §17 timeline):
 *
 * - `gfw-2022`: FET dynamic blocking (§1, Nov 2021 – Mar 2023) on the lab's "VPS" prefix, SNI (§6),
 *   DNS (§4) and HTTP (§5) filtering, active probing of FET-flagged servers (§2), Tor's TLS
 *   fingerprint and bridge prober (§12, since 2011–12).
 * - `gfw-2025`: SNI, DNS and HTTP filtering, OpenVPN and WireGuard fingerprints (§10, §11), Tor
 *   (§12); no FET.
 * - `henan-2024`: gfw-2025 behind Henan's regional firewall (§9, since August 2023).
 * - `sensitive-period`: gfw-2025 plus all outbound UDP dropped and TLS allowed only to allow-listed
 *   SNIs (§17).
 *
 * Profiles from the 2024–2026 findings (reference censorship-2024-2026.md; module files cite each
 * source):
 * - `ru-2026`: Russia's TSPU on a home ISP: WireGuard and OpenVPN by protocol (n4p#274), ECH with
 *   cloudflare-ech.com frozen (n4p#417), the TLS-in-TLS rule of 3 packets ≥ 411 bytes (n4p#363),
 *   the 14–32 KB byte budget to the lab's "foreign hosting" prefix with the allowed SNI exempt
 *   (n4p#490, #662), connection-count policing (n4p#546), ClientHello scoring (Xray-core#6293), a
 *   reassembling SNI filter (teleproxy#39) and QUIC SNI (n4p#654).
 * - `ru-2026-mobile`: ru-2026 plus whitelist mode, as on mobile networks (n4p#516, #579, #650).
 * - `ir-2026`: Iran after June 2025: ServerHello dropped, UDP other than DNS, QUIC and IPv6 blocked
 *   (n4p#489), over SNI, DNS and HTTP filtering (n4p#586). The 2026 client allowlist is the `iran
 *   allowlist` column: with it on, the lab's client (not on the list) reaches nothing abroad.
 * - `tm-2025`: Turkmenistan's volume bans (n4p#523) over SNI, DNS and HTTP filtering.
 * - `gfw-2025` gains the multiplexing classifier in score mode (NDSS 2025: a feature researchers
 *   showed, not a rule the GFW is known to enforce) and QUIC load shedding stays off (a property
 *   of load the lab does not generate).
 * @module
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import type { CensorModule } from './censor/types.js';
import { BlockPageModule, type BlockPageParams } from './modules/blockpage.js';
import { DnsModule, type DnsParams } from './modules/dns.js';
import { EgressModule, type EgressParams } from './modules/egress.js';
import { EchModule, EsniModule, type EchParams, type EsniParams } from './modules/esni.js';
import { HenanModule, type HenanParams } from './modules/henan.js';
import { FetModule, type FetParams } from './modules/fet.js';
import { HttpModule, type HttpParams } from './modules/http.js';
import { IpBlockModule, type IpBlockParams } from './modules/ipblock.js';
import { OpenVpnModule, type OpenVpnParams } from './modules/openvpn.js';
import { ProberModule, type ProberParams } from './modules/prober.js';
import {
  AllowlistModule,
  Port443ResetModule,
  ThrottleModule,
  UdpDropModule,
  type AllowlistParams,
  type ThrottleParams,
} from './modules/sensitive.js';
import { SniModule, type SniParams } from './modules/sni.js';
import { IranModule, type IranParams } from './modules/iran.js';
import { MuxModule, type MuxParams } from './modules/mux.js';
import {
  ByteBudgetModule,
  ConnCountModule,
  HelloScoreModule,
  RuTlsInTlsModule,
  WhitelistModule,
  type ByteBudgetParams,
  type ConnCountParams,
  type HelloScoreParams,
  type RuTlsInTlsParams,
  type WhitelistParams,
} from './modules/tspu.js';
import { VolumeBanModule, type VolumeBanParams } from './modules/volume-ban.js';
import { QuicModule, type QuicParams } from './modules/quic.js';
import { TlsInTlsModule, type TlsInTlsParams } from './modules/tls-in-tls.js';
import { TlsFingerprintModule, type TlsFingerprintParams } from './modules/tls-fingerprint.js';
import { TorModule, type TorParams } from './modules/tor.js';
import { WireGuardModule, type WireGuardParams } from './modules/wireguard.js';
import type { LabPlan } from './topology.js';
import { checkPathParams, PATH_PROFILES, pathProfile, type PathParams } from './path.js';

/** Module parameters by module name; every field optional. */
export interface ModuleConfigs {
  fet?: Partial<FetParams>;
  sni?: Partial<SniParams>;
  quic?: Partial<QuicParams>;
  'tls-in-tls'?: Partial<TlsInTlsParams>;
  'tls-fingerprint'?: Partial<TlsFingerprintParams>;
  tor?: Partial<TorParams>;
  egress?: Partial<EgressParams>;
  esni?: Partial<EsniParams>;
  ech?: Partial<EchParams>;
  henan?: Partial<HenanParams>;
  dns?: Partial<DnsParams>;
  http?: Partial<HttpParams>;
  ipblock?: Partial<IpBlockParams>;
  probe?: Partial<ProberParams>;
  openvpn?: Partial<OpenVpnParams>;
  wireguard?: Partial<WireGuardParams>;
  'udp-drop'?: Record<string, never>;
  allowlist?: Partial<AllowlistParams>;
  'port443-reset'?: Record<string, never>;
  throttle?: Partial<ThrottleParams>;
  blockpage?: Partial<BlockPageParams>;
  'byte-budget'?: Partial<ByteBudgetParams>;
  whitelist?: Partial<WhitelistParams>;
  'conn-count'?: Partial<ConnCountParams>;
  'hello-score'?: Partial<HelloScoreParams>;
  'tls-in-tls-ru'?: Partial<RuTlsInTlsParams>;
  iran?: Partial<IranParams>;
  'volume-ban'?: Partial<VolumeBanParams>;
  mux?: Partial<MuxParams>;
}

export type ModuleName = keyof ModuleConfigs;

/** Module names in the order packets visit them. */
export const MODULE_NAMES = [
  'egress',
  'volume-ban',
  'iran',
  'ipblock',
  'udp-drop',
  'port443-reset',
  'allowlist',
  'whitelist',
  'dns',
  'henan',
  'sni',
  'esni',
  'ech',
  'tls-fingerprint',
  'hello-score',
  'conn-count',
  'tor',
  'quic',
  'http',
  'blockpage',
  'fet',
  'openvpn',
  'wireguard',
  'tls-in-tls',
  'tls-in-tls-ru',
  'mux',
  'byte-budget',
  'throttle',
  'probe',
] as const satisfies readonly ModuleName[];

export interface Policy {
  /** Multiplies every published duration: 0.01 makes a 180 s residual last 1.8 s. */
  timeFactor?: number;
  /** Seed for the censor's random choices (sampling probabilities); random if absent. */
  seed?: number;
  /** Prefixes of the censored network; the lab's by default. */
  inside?: string[];
  modules: ModuleConfigs;
  /** The path emulator's parameters (path.ts); absent = the wall adds no delay, loss or cap. */
  path?: PathParams;
}

export const PROFILES = [
  'gfw-2022',
  'gfw-2025',
  'henan-2024',
  'sensitive-period',
  'ru-2026',
  'ru-2026-mobile',
  'ir-2026',
  'tm-2025',
] as const;

/** The TSPU's modules as the lab configures them (ru-2026 and the single-module columns). */
function tspu(plan: LabPlan): ModuleConfigs {
  const allowed = [plan.names.allowed];
  return {
    'byte-budget': { ranges: [plan.vpsPrefix] },
    'conn-count': { maxConnections: 6 },
    'hello-score': { ranges: [{ cidr: plan.vpsPrefix, score: 1 }], allowedSni: allowed },
    'tls-in-tls-ru': {},
    whitelist: { sni: allowed },
  };
}

/** The lab's "Henan": the client namespace's prefixes (§9: only traffic leaving it is censored). */
function henanRegion(plan: LabPlan): string[] {
  return [`${plan.addr.client.replace(/\.\d+$/, '.0')}/24`, '2001:2:0:1::/64'];
}
export type ProfileName = (typeof PROFILES)[number];

/**
 * The policy of a profile list: at most one censor profile and at most one path profile, joined by
 * commas (`gfw-2022,path-cn-us`); a path profile alone means no censor modules.
 */
export function profilePolicy(profile: string, plan: LabPlan): Policy {
  const parts = profile
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const paths = parts.filter((p) => p.startsWith('path-'));
  const censors = parts.filter((p) => !p.startsWith('path-'));
  if (paths.length > 1 || censors.length > 1 || parts.length === 0)
    throw new ConfigError(
      'ERR_CONFIG',
      `profile '${profile}': name one censor profile (${PROFILES.join(', ')}, none) and at most ` +
        `one path profile (${PATH_PROFILES.join(', ')}), e.g. 'gfw-2022,path-cn-us'`,
    );
  const p = censorProfilePolicy(censors[0] ?? 'none', plan);
  if (paths[0] !== undefined) p.path = pathProfile(paths[0]);
  return p;
}

/** The module configuration of a censor profile, with the lab's names and prefixes filled in. */
function censorProfilePolicy(profile: string, plan: LabPlan): Policy {
  const blocked = [plan.names.blocked];
  const base: ModuleConfigs = {
    sni: { blocklist: blocked },
    dns: { blocklist: blocked },
    http: { hosts: blocked, keywords: ['falun'] },
  };
  switch (profile) {
    case 'none':
      return { modules: {} };
    case 'gfw-2022':
      return {
        modules: {
          ...base,
          fet: { targetPrefixes: [plan.vpsPrefix] },
          tor: { proberAddresses: plan.prober },
          probe: { proberAddresses: plan.prober },
        },
      };
    case 'gfw-2025':
      return {
        modules: {
          ...base,
          quic: { blocklist: blocked },
          'tls-in-tls': { action: 'score' },
          openvpn: {},
          wireguard: {},
          tor: { proberAddresses: plan.prober },
          // replay-based probing of high-entropy first packets (§2) outlived FET blocking
          probe: { proberAddresses: plan.prober, trigger: 'entropy' },
          mux: { action: 'score' },
        },
      };
    case 'henan-2024':
      // §9: the regional firewall in front of the GFW (gfw-2025)
      return {
        modules: {
          ...censorProfilePolicy('gfw-2025', plan).modules,
          henan: { blocklist: blocked, region: henanRegion(plan) },
        },
      };
    case 'sensitive-period':
      return {
        modules: {
          ...base,
          quic: { blocklist: blocked },
          'tls-in-tls': { action: 'reset' },
          openvpn: {},
          wireguard: {},
          tor: { proberAddresses: plan.prober },
          'udp-drop': {},
          allowlist: { sni: [plan.names.allowed] },
        },
      };
    case 'ru-2026': {
      const t = tspu(plan);
      return {
        modules: {
          ...base,
          sni: { blocklist: blocked, reassemble: true },
          quic: { blocklist: blocked },
          openvpn: {},
          wireguard: {},
          ech: { mode: 'tspu-ru' },
          'tls-in-tls-ru': t['tls-in-tls-ru']!,
          // n4p#662: a few SNIs (sites the TSPU spares) are exempt from the budget
          'byte-budget': { ...t['byte-budget'], exemptSni: [plan.names.allowed] },
          'conn-count': t['conn-count']!,
          'hello-score': t['hello-score']!,
        },
      };
    }
    case 'ru-2026-mobile':
      return {
        modules: { ...profilePolicy('ru-2026', plan).modules, whitelist: tspu(plan).whitelist! },
      };
    case 'ir-2026':
      return { modules: { ...base, iran: {} } };
    case 'tm-2025':
      return { modules: { ...base, 'volume-ban': {} } };
    default:
      throw new ConfigError(
        'ERR_CONFIG',
        `unknown profile '${profile}' (known: ${PROFILES.join(', ')}, none; ` +
          `paths: ${PATH_PROFILES.join(', ')})`,
      );
  }
}

/** A policy with a single module on, tuned for the lab (its names and prefixes). */
export function modulePolicy(name: ModuleName, plan: LabPlan, overrides: object = {}): Policy {
  const all = profilePolicy('gfw-2022', plan).modules;
  const lab: ModuleConfigs = {
    ...all,
    ipblock: { rules: [{ ip: plan.addr.blockedIp, mode: 'nullroute-both' }] },
    allowlist: { sni: [plan.names.allowed] },
    openvpn: {},
    wireguard: {},
    'udp-drop': {},
    'port443-reset': {},
    throttle: {},
    blockpage: { hosts: [plan.names.blocked] },
    quic: { blocklist: [plan.names.blocked] },
    'tls-in-tls': { action: 'reset' },
    'tls-fingerprint': { measure: true },
    tor: { proberAddresses: plan.prober },
    egress: {},
    esni: {},
    ech: {},
    henan: { blocklist: [plan.names.blocked], region: henanRegion(plan) },
    ...tspu(plan),
    iran: {},
    'volume-ban': {},
    mux: { action: 'reset' },
  };
  return { modules: { [name]: { ...(lab[name] as object), ...overrides } } };
}

/** Reads and checks a policy file. */
export function loadPolicy(path: string): Policy {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError('ERR_CONFIG', `policy ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return checkPolicy(raw, path);
}

export function checkPolicy(raw: unknown, where = 'policy'): Policy {
  if (typeof raw !== 'object' || raw === null || typeof (raw as Policy).modules !== 'object')
    throw new ConfigError('ERR_CONFIG', `${where}: expected an object with "modules"`);
  const p = raw as Policy;
  for (const name of Object.keys(p.modules))
    if (!(MODULE_NAMES as readonly string[]).includes(name))
      throw new ConfigError(
        'ERR_CONFIG',
        `${where}: unknown module '${name}' (known: ${MODULE_NAMES.join(', ')})`,
      );
  if (p.timeFactor !== undefined && !(p.timeFactor > 0))
    throw new ConfigError('ERR_CONFIG', `${where}: timeFactor must be > 0`);
  if (p.path !== undefined) checkPathParams(p.path, `${where}: path`);
  return p;
}

/** Builds the module instances a policy switches on, in packet order. */
export function buildModules(policy: Policy): CensorModule[] {
  const m = policy.modules;
  const out: CensorModule[] = [];
  for (const name of MODULE_NAMES) {
    const cfg = m[name];
    if (cfg === undefined) continue;
    switch (name) {
      case 'ipblock':
        out.push(new IpBlockModule(m.ipblock));
        break;
      case 'udp-drop':
        out.push(new UdpDropModule());
        break;
      case 'port443-reset':
        out.push(new Port443ResetModule());
        break;
      case 'allowlist':
        out.push(new AllowlistModule(m.allowlist));
        break;
      case 'dns':
        out.push(new DnsModule(m.dns));
        break;
      case 'sni':
        out.push(new SniModule(m.sni));
        break;
      case 'quic':
        out.push(new QuicModule(m.quic));
        break;
      case 'tls-fingerprint':
        out.push(new TlsFingerprintModule(m['tls-fingerprint']));
        break;
      case 'tls-in-tls':
        out.push(new TlsInTlsModule(m['tls-in-tls']));
        break;
      case 'tor':
        out.push(new TorModule(m.tor));
        break;
      case 'egress':
        out.push(new EgressModule(m.egress));
        break;
      case 'esni':
        out.push(new EsniModule(m.esni));
        break;
      case 'ech':
        out.push(new EchModule(m.ech));
        break;
      case 'henan':
        out.push(new HenanModule(m.henan));
        break;
      case 'http':
        out.push(new HttpModule(m.http));
        break;
      case 'fet':
        out.push(new FetModule(m.fet));
        break;
      case 'openvpn':
        out.push(new OpenVpnModule(m.openvpn));
        break;
      case 'wireguard':
        out.push(new WireGuardModule(m.wireguard));
        break;
      case 'throttle':
        out.push(new ThrottleModule(m.throttle));
        break;
      case 'probe':
        out.push(new ProberModule(m.probe));
        break;
      case 'blockpage':
        out.push(new BlockPageModule(m.blockpage));
        break;
      case 'byte-budget':
        out.push(new ByteBudgetModule(m['byte-budget']));
        break;
      case 'whitelist':
        out.push(new WhitelistModule(m.whitelist));
        break;
      case 'conn-count':
        out.push(new ConnCountModule(m['conn-count']));
        break;
      case 'hello-score':
        out.push(new HelloScoreModule(m['hello-score']));
        break;
      case 'tls-in-tls-ru':
        out.push(new RuTlsInTlsModule(m['tls-in-tls-ru']));
        break;
      case 'iran':
        out.push(new IranModule(m.iran));
        break;
      case 'volume-ban':
        out.push(new VolumeBanModule(m['volume-ban']));
        break;
      case 'mux':
        out.push(new MuxModule(m.mux));
        break;
    }
  }
  return out;
}
