/**
 * The censor's seams: a parsed packet, a flow with its reassembled client stream, and the interface
 * every technique module implements. The engine (engine.ts) owns the flow table, TCP reassembly,
 * residual ("penalty box") table and injection; a module only decides.
 * @module
 */
import type { IpHeader } from '../packet/ip.js';
import type { TcpHeader, UdpHeader } from '../packet/l4.js';

export interface Packet {
  readonly raw: Buffer;
  readonly ip: IpHeader;
  readonly tcp: TcpHeader | undefined;
  readonly udp: UdpHeader | undefined;
  readonly srcPort: number;
  readonly dstPort: number;
  /** L4 payload, a view into `raw`. */
  readonly payload: Buffer;
  /** True if the packet travels from the flow's client to its server. */
  readonly c2s: boolean;
}

export interface Endpoint {
  readonly addr: string;
  readonly port: number;
}

/** Per-flow state. A flow's client is the side that sent the SYN (TCP) or the first datagram (UDP). */
export interface Flow {
  readonly id: number;
  readonly proto: 'tcp' | 'udp';
  readonly client: Endpoint;
  readonly server: Endpoint;
  /** The 3-tuple the GFW's residual blocking keys on: (C_ip, S_ip, S_port), with the protocol. */
  readonly key3: string;
  /** Client inside the censored network and server outside it. */
  readonly outbound: boolean;
  /** The censor saw the client's SYN (SNI and HTTP filtering need it, §0). */
  readonly sawSyn: boolean;
  readonly firstSeen: number;
  lastSeen: number;
  /** Client-to-server payload reassembled in sequence order (TCP) from the start, capped. */
  readonly c2sData: Buffer;
  /** Number of payload-carrying packets seen in each direction. */
  c2sPackets: number;
  s2cPackets: number;
  c2sBytes: number;
  s2cBytes: number;
  /** Modules still inspecting this flow; once empty the flow takes the fast path. */
  readonly watchers: Set<CensorModule>;
  /** Per-module scratch state, keyed by module name. */
  readonly scratch: Map<string, unknown>;
}

/** A module's verdict on one packet. Undefined means no opinion (forward). */
export type Verdict = undefined | 'drop' | { readonly delayMs: number };

/** How an injector's packets look (§0 "RST injector fingerprints"). */
export type InjectorType = 'I' | 'II' | 'III';

export interface CensorEvent {
  readonly module: string;
  readonly action: string;
  readonly proto: 'tcp' | 'udp';
  readonly serverPort: number;
  readonly detail?: string;
}

/** What the engine offers modules. */
export interface CensorContext {
  /** Milliseconds, from the engine's clock. */
  now(): number;
  /** Uniform in [0, 1), from the engine's (seedable) generator. */
  random(): number;
  /** Multiplies every published duration (residuals, prober delays): 1 = real time. */
  readonly timeFactor: number;
  /** Writes a raw IP packet into the network, as if it had arrived at the wall. */
  inject(packet: Buffer): void;
  /** Injects RSTs with valid sequence numbers to both ends of `flow`, answering packet `p`. */
  resetBoth(flow: Flow, p: Packet, injector: InjectorType): void;
  /** Drops every later packet of `flow` in the given directions. */
  blockFlow(flow: Flow, dirs: 'c2s' | 's2c' | 'both'): void;
  /** Blocks the 3-tuple for `seconds` × timeFactor: 'drop' drops packets, 'reset' resets data. */
  addResidual(
    key3: string,
    module: string,
    seconds: number,
    mode: ResidualMode,
    dirs?: 'c2s' | 'both',
  ): void;
  emit(e: Omit<CensorEvent, 'proto' | 'serverPort'>, flow: Flow): void;
  /** True if the address is inside the censored network. */
  isInside(addr: string): boolean;
}

export type ResidualMode = 'drop' | 'reset';

/** One censorship technique. */
export interface CensorModule {
  /** Stable name used in policies, events and the report card, e.g. "fet". */
  readonly name: string;
  /** Called once per new flow; return true to receive its packets through `onPacket`. */
  watch(flow: Flow, ctx: CensorContext): boolean;
  /**
   * Called for each packet of a watched flow, after reassembly has updated `flow.c2sData`. To stop
   * watching, remove itself from `flow.watchers`.
   */
  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict;
}
