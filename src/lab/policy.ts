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
import { ProbeModule, type ProbeParams } from './modules/probe.js';
import {
  AllowlistModule,
  Port443ResetModule,
  ThrottleModule,
  UdpDropModule,
  type AllowlistParams,
  type ThrottleParams,
} from './modules/sensitive.js';
import { SniModule, type SniParams } from './modules/sni.js';
import { QuicModule, type QuicParams } from './modules/quic.js';
import { TlsInTlsModule, type TlsInTlsParams } from './modules/tls-in-tls.js';
import { TlsFingerprintModule, type TlsFingerprintParams } from './modules/tls-fingerprint.js';
import { TorModule, type TorParams } from './modules/tor.js';
import { WireGuardModule, type WireGuardParams } from './modules/wireguard.js';
import type { LabPlan } from './topology.js';

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
  probe?: Partial<ProbeParams>;
  openvpn?: Partial<OpenVpnParams>;
  wireguard?: Partial<WireGuardParams>;
  'udp-drop'?: Record<string, never>;
  allowlist?: Partial<AllowlistParams>;
  'port443-reset'?: Record<string, never>;
  throttle?: Partial<ThrottleParams>;
  blockpage?: Partial<BlockPageParams>;
}

export type ModuleName = keyof ModuleConfigs;

/** Module names in the order packets visit them. */
export const MODULE_NAMES = [
  'egress',
  'ipblock',
  'udp-drop',
  'port443-reset',
  'allowlist',
  'dns',
  'henan',
  'sni',
  'esni',
  'ech',
  'tls-fingerprint',
  'tor',
  'quic',
  'http',
  'blockpage',
  'fet',
  'openvpn',
  'wireguard',
  'tls-in-tls',
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
}

export const PROFILES = ['gfw-2022', 'gfw-2025', 'henan-2024', 'sensitive-period'] as const;

/** The lab's "Henan": the client namespace's prefixes (§9: only traffic leaving it is censored). */
function henanRegion(plan: LabPlan): string[] {
  return [`${plan.addr.client.replace(/\.\d+$/, '.0')}/24`, '2001:2:0:1::/64'];
}
export type ProfileName = (typeof PROFILES)[number];

/** The module configuration of a profile, with the lab's names and prefixes filled in. */
export function profilePolicy(profile: string, plan: LabPlan): Policy {
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
        },
      };
    case 'henan-2024':
      // §9: the regional firewall in front of the GFW (gfw-2025)
      return {
        modules: {
          ...profilePolicy('gfw-2025', plan).modules,
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
    default:
      throw new ConfigError(
        'ERR_CONFIG',
        `unknown profile '${profile}' (known: ${PROFILES.join(', ')}, none)`,
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
        out.push(new ProbeModule(m.probe));
        break;
      case 'blockpage':
        out.push(new BlockPageModule(m.blockpage));
        break;
    }
  }
  return out;
}
