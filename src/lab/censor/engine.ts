/**
 * The censor's data plane: one call per packet read from the wall's TUN device. It parses the
 * packet, keeps the per-flow state the GFW keeps (docs/censorship-techniques.md §0 and §18), reassembles the client's
 * TCP payload in sequence order, asks the modules watching the flow for a verdict, and forwards,
 * drops, delays or injects.
 *
 * TCP state follows the Geneva censor models (§18, `censors/censor10.py`): a flow record is made on
 * the client's SYN with the expected sequence number; payload is taken in sequence order; a RST or
 * FIN from the client puts the record into resynchronisation, where the next data packet sets the
 * expected sequence number; packets with bad checksums are ignored by the inspection (but still
 * forwarded: the end host drops them). The GFW accepts any TCP header length (§0), so do we.
 *
 * Fast path: a flow that no module watches costs one parse and one map lookup per packet.
 * @module
 */
import { debuglog } from 'node:util';
import { CodecError } from '../../errors.js';
import { decodeIpHeader, IP_PROTO } from '../packet/ip.js';
import {
  buildTcpPacket,
  decodeTcpHeader,
  decodeUdpHeader,
  l4ChecksumOk,
  TCP_FLAG,
} from '../packet/l4.js';
import type {
  CensorContext,
  CensorEvent,
  CensorModule,
  Flow,
  InjectorType,
  Packet,
  ResidualMode,
} from './types.js';

const debug = debuglog('ladder:lab');

/** Reassembled client bytes kept per watched flow: enough for a ClientHello or HTTP head. */
export const MAX_INSPECT_BYTES = 16 * 1024;
const TCP_IDLE_MS = 300_000;
const UDP_IDLE_MS = 60_000; // QUIC flow state lasts 60 s per 4-tuple (§8)
const MAX_OUT_OF_ORDER = 16;

export interface EngineOptions {
  readonly modules: readonly CensorModule[];
  /** Writes a packet toward its destination (the TUN device). */
  readonly send: (packet: Buffer) => void;
  readonly now?: () => number;
  readonly random?: () => number;
  readonly timeFactor?: number;
  /** IPv4/IPv6 prefixes of the censored ("inside") network, e.g. "198.18.0.0/16". */
  readonly inside: readonly string[];
  readonly onEvent?: (e: CensorEvent) => void;
}

interface FlowRecord extends Flow {
  c2sData: Buffer;
  sawSyn: boolean;
  /** The client's initial sequence number when the record began with its SYN; -1 otherwise. */
  isn: number;
  /** Next expected client sequence number, or -1 while resynchronising. */
  expectSeq: number;
  ooo: Map<number, Buffer>;
  /** Latest client ACK (the server's next sequence number) and client next sequence number. */
  clientAck: number;
  clientNext: number;
  serverNext: number;
  block: 'c2s' | 's2c' | 'both' | undefined;
  closed: boolean;
}

interface ResidualEntry {
  readonly module: string;
  readonly until: number;
  readonly mode: ResidualMode;
  readonly dirs: 'c2s' | 'both';
}

export interface EngineStats {
  packets: number;
  forwarded: number;
  dropped: number;
  injected: number;
  flows: number;
}

export class CensorEngine {
  readonly #modules: readonly CensorModule[];
  readonly #send: (packet: Buffer) => void;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #onEvent: (e: CensorEvent) => void;
  readonly #inside: ((addr: string) => boolean)[];
  readonly #flows = new Map<string, FlowRecord>();
  readonly #residual = new Map<string, ResidualEntry[]>();
  readonly #ctx: CensorContext;
  #nextId = 1;
  #lastSweep = 0;
  readonly stats: EngineStats = { packets: 0, forwarded: 0, dropped: 0, injected: 0, flows: 0 };

  constructor(o: EngineOptions) {
    this.#modules = o.modules;
    this.#send = o.send;
    this.#now = o.now ?? Date.now;
    this.#random = o.random ?? Math.random;
    this.#onEvent = o.onEvent ?? (() => {});
    this.#inside = o.inside.map(prefixMatcher);
    const timeFactor = o.timeFactor ?? 1;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const engine = this;
    this.#ctx = {
      now: () => this.#now(),
      random: () => this.#random(),
      timeFactor,
      inject: (pkt) => {
        engine.stats.injected++;
        engine.#send(pkt);
      },
      resetBoth: (flow, p, injector) => this.#resetBoth(flow as FlowRecord, p, injector),
      blockFlow: (flow, dirs) => {
        (flow as FlowRecord).block = dirs;
      },
      addResidual: (key3, module, seconds, mode, dirs = 'both') => {
        const list = (this.#residual.get(key3) ?? []).filter((e) => e.module !== module);
        list.push({ module, until: this.#now() + seconds * 1000 * timeFactor, mode, dirs });
        this.#residual.set(key3, list);
      },
      emit: (e, flow) => this.#onEvent({ ...e, proto: flow.proto, serverPort: flow.server.port }),
      isInside: (addr) => this.#isInside(addr),
    };
  }

  get context(): CensorContext {
    return this.#ctx;
  }

  /** Handles one IP packet; forwards it unless a module says otherwise. */
  handle(raw: Buffer): void {
    this.stats.packets++;
    const p = this.#parse(raw);
    if (p === undefined) return this.#forward(raw);
    const now = this.#now();
    if (now - this.#lastSweep > 10_000) this.#sweep(now);
    const [flow, packet] = p;
    flow.lastSeen = now;
    if (
      flow.block === 'both' ||
      (flow.block === 'c2s' && packet.c2s) ||
      (flow.block === 's2c' && !packet.c2s)
    )
      return this.#drop();
    if (this.#residual.size > 0) {
      const r = this.#checkResidual(flow, packet, now);
      if (r === 'drop') return this.#drop();
    }
    if (packet.payload.length > 0) {
      if (packet.c2s) {
        flow.c2sPackets++;
        flow.c2sBytes += packet.payload.length;
      } else {
        flow.s2cPackets++;
        flow.s2cBytes += packet.payload.length;
      }
    }
    if (packet.tcp) this.#track(flow, packet);
    if (flow.watchers.size === 0) return this.#forward(raw);
    let delay = 0;
    let drop = false;
    // Every watcher sees the packet, even one another module drops: the prober (§2) must see the
    // first payload that FET detection (§1) flags and drops.
    for (const m of flow.watchers) {
      const v = m.onPacket(packet, flow, this.#ctx);
      if (v === 'drop') drop = true;
      else if (v !== undefined) delay = Math.max(delay, v.delayMs);
    }
    if (drop) return this.#drop();
    const blocked = flow.block as FlowRecord['block'];
    if (blocked === 'both' || (blocked === 'c2s' && packet.c2s)) return this.#drop();
    if (delay > 0) {
      setTimeout(() => this.#forward(raw), delay).unref();
      return;
    }
    this.#forward(raw);
  }

  /** Number of flows currently tracked. */
  get flowCount(): number {
    return this.#flows.size;
  }

  #forward(raw: Buffer): void {
    this.stats.forwarded++;
    this.#send(raw);
  }

  #drop(): void {
    this.stats.dropped++;
  }

  #isInside(addr: string): boolean {
    for (const m of this.#inside) if (m(addr)) return true;
    return false;
  }

  #parse(raw: Buffer): [FlowRecord, Packet] | undefined {
    let ipr;
    try {
      ipr = decodeIpHeader(raw, 0);
    } catch (err) {
      if (err instanceof CodecError) return undefined;
      throw err;
    }
    if (!ipr || ipr.value.fragment) return undefined;
    const ip = ipr.value;
    const l4 = ip.headerLength;
    const end = l4 + ip.payloadLength;
    let tcp;
    let udp;
    let payloadStart;
    try {
      if (ip.protocol === IP_PROTO.TCP) {
        const t = decodeTcpHeader(raw, l4, end);
        if (!t) return undefined;
        tcp = t.value;
        payloadStart = l4 + t.bytesRead;
      } else if (ip.protocol === IP_PROTO.UDP) {
        const u = decodeUdpHeader(raw, l4, end);
        if (!u) return undefined;
        udp = u.value;
        payloadStart = l4 + 8;
      } else return undefined;
    } catch (err) {
      if (err instanceof CodecError) return undefined;
      throw err;
    }
    const srcPort = (tcp ?? udp)!.srcPort;
    const dstPort = (tcp ?? udp)!.dstPort;
    const proto = tcp ? 'tcp' : 'udp';
    const fwdKey = `${proto} ${ip.src} ${srcPort} ${ip.dst} ${dstPort}`;
    let flow = this.#flows.get(fwdKey);
    let c2s = true;
    if (!flow) {
      const revKey = `${proto} ${ip.dst} ${dstPort} ${ip.src} ${srcPort}`;
      flow = this.#flows.get(revKey);
      if (flow) c2s = false;
    }
    const payload = raw.subarray(payloadStart, end);
    // A SYN without ACK names the client.
    const isSyn = tcp !== undefined && (tcp.flags & (TCP_FLAG.SYN | TCP_FLAG.ACK)) === TCP_FLAG.SYN;
    // The client's SYN with a new initial sequence number on a record that exists is a new
    // connection on a reused 4-tuple (a kernel picks an ephemeral port again once the old
    // connection is gone): a fresh record, so modules see it from its start. A retransmitted SYN
    // (the same number) stays on its record.
    if (flow && c2s && isSyn && flow.isn !== tcp!.seq) {
      this.#flows.delete(fwdKey);
      flow = undefined;
    }
    if (!flow) {
      // Otherwise (mid-flow, or the censor restarted) the inside endpoint is taken as the client
      // and the flow is marked as not having seen a SYN.
      let clientIsSrc = true;
      if (tcp && !isSyn) clientIsSrc = this.#isInside(ip.src) || !this.#isInside(ip.dst);
      const client = clientIsSrc
        ? { addr: ip.src, port: srcPort }
        : { addr: ip.dst, port: dstPort };
      const server = clientIsSrc
        ? { addr: ip.dst, port: dstPort }
        : { addr: ip.src, port: srcPort };
      c2s = clientIsSrc;
      const now = this.#now();
      const rec: FlowRecord = {
        id: this.#nextId++,
        proto,
        client,
        server,
        key3: `${proto} ${client.addr} ${server.addr} ${server.port}`,
        outbound: this.#isInside(client.addr) && !this.#isInside(server.addr),
        sawSyn: isSyn,
        isn: isSyn ? tcp!.seq : -1,
        firstSeen: now,
        lastSeen: now,
        c2sData: Buffer.alloc(0),
        c2sPackets: 0,
        s2cPackets: 0,
        c2sBytes: 0,
        s2cBytes: 0,
        watchers: new Set(),
        scratch: new Map(),
        expectSeq: isSyn ? (tcp!.seq + 1) >>> 0 : -1,
        ooo: new Map(),
        clientAck: 0,
        clientNext: 0,
        serverNext: 0,
        block: undefined,
        closed: false,
      };
      const key = clientIsSrc ? fwdKey : `${proto} ${ip.dst} ${dstPort} ${ip.src} ${srcPort}`;
      this.#flows.set(key, rec);
      this.stats.flows++;
      for (const m of this.#modules) if (m.watch(rec, this.#ctx)) rec.watchers.add(m);
      flow = rec;
    }
    return [flow, { raw, ip, tcp, udp, srcPort, dstPort, payload, c2s }];
  }

  /** Sequence bookkeeping for injection and in-order reassembly of the client's payload. */
  #track(flow: FlowRecord, p: Packet): void {
    const tcp = p.tcp!;
    const len = p.payload.length;
    const synFin = (tcp.flags & (TCP_FLAG.SYN | TCP_FLAG.FIN)) !== 0 ? 1 : 0;
    if (!p.c2s) {
      if ((tcp.flags & TCP_FLAG.RST) === 0) flow.serverNext = (tcp.seq + len + synFin) >>> 0;
      return;
    }
    if (tcp.flags & TCP_FLAG.ACK) flow.clientAck = tcp.ack;
    if ((tcp.flags & TCP_FLAG.RST) === 0) flow.clientNext = (tcp.seq + len + synFin) >>> 0;
    if (flow.watchers.size === 0 || flow.c2sData.length >= MAX_INSPECT_BYTES) return;
    // §18: checksum-invalid packets are not inspected.
    if (!l4ChecksumOk(p.raw, p.ip.version, IP_PROTO.TCP, p.ip.headerLength, p.ip.payloadLength))
      return;
    if (tcp.flags & (TCP_FLAG.RST | TCP_FLAG.FIN)) {
      flow.expectSeq = -1; // §18: resynchronise on the next packet
      if (len === 0) return;
    }
    if (len === 0) return;
    if (flow.expectSeq === -1) flow.expectSeq = tcp.seq;
    const rel = (tcp.seq - flow.expectSeq) | 0;
    if (rel > 0) {
      if (flow.ooo.size < MAX_OUT_OF_ORDER) flow.ooo.set(tcp.seq, Buffer.from(p.payload));
      return;
    }
    if (rel + len <= 0) return; // retransmission of bytes already taken
    let chunk = p.payload.subarray(-rel);
    const parts = [flow.c2sData, chunk];
    flow.expectSeq = (tcp.seq + len) >>> 0;
    // Take queued out-of-order segments that now fit.
    for (let again = true; again && flow.ooo.size > 0;) {
      again = false;
      for (const [seq, data] of flow.ooo) {
        const r = (seq - flow.expectSeq) | 0;
        if (r > 0) continue;
        flow.ooo.delete(seq);
        if (r + data.length > 0) {
          chunk = data.subarray(-r);
          parts.push(chunk);
          flow.expectSeq = (seq + data.length) >>> 0;
        }
        again = true;
      }
    }
    const joined = Buffer.concat(parts);
    flow.c2sData =
      joined.length > MAX_INSPECT_BYTES ? joined.subarray(0, MAX_INSPECT_BYTES) : joined;
  }

  #checkResidual(flow: FlowRecord, p: Packet, now: number): 'drop' | undefined {
    const list = this.#residual.get(flow.key3);
    if (!list) return undefined;
    let verdict: 'drop' | undefined;
    for (const e of list) {
      if (e.until <= now) continue;
      if (e.dirs === 'c2s' && !p.c2s) continue;
      if (e.mode === 'drop') verdict = 'drop';
      else if (
        e.mode === 'reset' &&
        p.c2s &&
        p.payload.length > 0 &&
        p.tcp &&
        flow.block === undefined
      ) {
        // §6: during the residual period, the first data packet of a new connection is reset.
        this.#resetBoth(flow, p, 'II');
        flow.block = 'both';
        this.#onEvent({
          module: e.module,
          action: 'residual-reset',
          proto: flow.proto,
          serverPort: flow.server.port,
        });
        verdict = 'drop';
      }
    }
    if (verdict === 'drop' && flow.block === undefined && e0(list, 'drop', now)) {
      this.#onEvent({
        module: e0(list, 'drop', now)!.module,
        action: 'residual-drop',
        proto: flow.proto,
        serverPort: flow.server.port,
      });
      flow.block = 'both';
    }
    return verdict;
  }

  /**
   * RSTs with valid sequence numbers to both ends. To the server: from the client, seq = the client's
   * next sequence number after `p`. To the client: from the server, seq = the client's latest ACK
   * (exactly the client's rcv_nxt, so RFC 5961 checks accept it). IP fields follow the injector
   * fingerprints in §0.
   */
  #resetBoth(flow: FlowRecord, p: Packet, injector: InjectorType): void {
    if (!p.tcp) return;
    const fp = injectorFields(injector, this.#random);
    const toServerSeq = p.c2s ? (p.tcp.seq + p.payload.length) >>> 0 : flow.clientNext;
    const toClientSeq = p.c2s
      ? p.tcp.flags & TCP_FLAG.ACK
        ? p.tcp.ack
        : flow.serverNext
      : (p.tcp.seq + p.payload.length) >>> 0;
    const flags = injector === 'I' ? TCP_FLAG.RST : TCP_FLAG.RST | TCP_FLAG.ACK;
    for (let i = 0; i < fp.count; i++) {
      const f = i === 0 ? fp : injectorFields(injector, this.#random);
      this.#ctx.inject(
        buildTcpPacket({
          ip: {
            src: flow.client.addr,
            dst: flow.server.addr,
            protocol: IP_PROTO.TCP,
            ttl: f.ttl,
            id: f.id,
            df: f.df,
          },
          srcPort: flow.client.port,
          dstPort: flow.server.port,
          seq: toServerSeq,
          ack: toClientSeq,
          flags,
        }),
      );
      this.#ctx.inject(
        buildTcpPacket({
          ip: {
            src: flow.server.addr,
            dst: flow.client.addr,
            protocol: IP_PROTO.TCP,
            ttl: f.ttl,
            id: f.id,
            df: f.df,
          },
          srcPort: flow.server.port,
          dstPort: flow.client.port,
          seq: toClientSeq,
          ack: toServerSeq,
          flags,
        }),
      );
    }
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [k, f] of this.#flows) {
      if (now - f.lastSeen > (f.proto === 'tcp' ? TCP_IDLE_MS : UDP_IDLE_MS)) this.#flows.delete(k);
    }
    for (const [k, list] of this.#residual) {
      const live = list.filter((e) => e.until > now);
      if (live.length === 0) this.#residual.delete(k);
      else if (live.length !== list.length) this.#residual.set(k, live);
    }
    debug('sweep: %d flows, %d residual 3-tuples', this.#flows.size, this.#residual.size);
  }
}

function e0(list: ResidualEntry[], mode: ResidualMode, now: number): ResidualEntry | undefined {
  return list.find((e) => e.mode === mode && e.until > now);
}

/**
 * IP-level fingerprints of the three SNI injectors (§0, sp25 Table "fingerprint"): Type I one RST,
 * IP-ID 0, DF=0; Type II three RST+ACK, random IP-ID in 0x00A3–0xFE5F, DF=1; Type III one RST+ACK,
 * IP-ID 0x9916–0x9933, DF=0, TTL 248. The observed TTLs are what arrived after some hops; the
 * injected TTL is drawn from the observed range.
 */
export function injectorFields(
  t: InjectorType,
  random: () => number,
): { count: number; ttl: number; id: number; df: boolean } {
  const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  switch (t) {
    case 'I':
      return { count: 1, ttl: between(55, 118), id: 0, df: false };
    case 'II':
      return { count: 3, ttl: between(39, 238), id: between(0x00a3, 0xfe5f), df: true };
    case 'III':
      return { count: 1, ttl: 248, id: between(0x9916, 0x9933), df: false };
  }
}

/** A matcher for one CIDR prefix (IPv4 dotted or IPv6 text). */
export function prefixMatcher(cidr: string): (addr: string) => boolean {
  const [net, lenText] = cidr.split('/');
  const len = Number(lenText ?? (net!.includes(':') ? 128 : 32));
  const v6 = net!.includes(':');
  const netBits = toBits(net!, v6);
  return (addr: string) => {
    if (addr.includes(':') !== v6) return false;
    let bits: string;
    try {
      bits = toBits(addr, v6);
    } catch {
      return false;
    }
    return bits.slice(0, len) === netBits.slice(0, len);
  };
}

function toBits(addr: string, v6: boolean): string {
  if (!v6)
    return addr
      .split('.')
      .map((o) => Number(o).toString(2).padStart(8, '0'))
      .join('');
  const halves = addr.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const words = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  return words.map((w) => parseInt(w, 16).toString(2).padStart(16, '0')).join('');
}
