/**
 * What lives in the lab's namespaces besides the censor: the abroad side's DNS resolver for the
 * lab's names, the "blocked" and the innocuous web sites over HTTP and HTTPS (certificates from the
 * lab CA that the client trusts), and an echo sink; the domestic side's allowed site and its ISP
 * resolver (a forwarder to the abroad resolver, {@link IspResolver}). Run by
 * `ladder lab serve --role abroad|domestic` inside the namespace; prints `listening` when ready.
 *
 * Sites answer `GET /` with a short page naming the site, `GET /page/<n>` with page n of a browsing
 * session (2–60 KB, naming the site), and `GET /bytes/<n>` with n bytes (at most 4 GiB) for
 * throughput measurements. Their certificate chain is the size of a public site's (lab.ts).
 *
 * The naive TLS tunnel (abroad, sink address, {@link NAIVE_TUNNEL_PORT}) is the TLS-in-TLS control of
 * §14: a TLS server that reads a `CONNECT host:port` head, connects, and relays at once — no reply of
 * its own, so a client's inner ClientHello and the site's inner ServerHello flight are the first runs
 * after the outer handshake, which is what rule A looks for.
 * @module
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  connect as connectTcp,
  createServer as createTcpServer,
  type Server,
  type Socket,
} from 'node:net';
import { createSecureContext, createServer as createTlsServer, TLSSocket } from 'node:tls';
import { DecoySite } from '../server/decoy/decoy-site.js';
import { DECOY_TLS_OPTIONS } from '../server/decoy/tls-context.js';
import { splitByFirstByte } from '../server/plain-http-handover.js';
import { join } from 'node:path';
import { buildAnswer, decodeDnsQuestion, DNS_TYPE, isQuery, type DnsRecord } from './packet/dns.js';
import { ipv4Bytes, ipv6Bytes } from './packet/ip.js';
import type { LabPlan } from './topology.js';

export const SINK_PORT = 9000;
/** The naive TLS-in-TLS tunnel's port, on the sink address. */
export const NAIVE_TUNNEL_PORT = 8443;
/**
 * The reference decoy: Ladder's built-in decoy site alone behind TLS (the Ladder server's certificate),
 * on the Ladder address. Probes must get from the Ladder server what they get from this.
 */
export const DECOY_REFERENCE_PORT = 8443;
const MAX_BYTES = 4 * 1024 ** 3;
const CHUNK = Buffer.alloc(256 * 1024, 0x61);

/** The lab's zone: name → [IPv4, IPv6?]. */
export function labZone(plan: LabPlan): Map<string, { a: string; aaaa?: string }> {
  return new Map([
    [plan.names.blocked, { a: plan.addr.blockedIp }],
    [plan.names.allowed, { a: plan.addr.allowedIp }],
    [plan.names.domestic, { a: plan.addr.domestic }],
    ['sink.lab', { a: plan.addr.sinkIp }],
    ['ss.lab', { a: plan.addr.ssIp }],
    ['ladder.lab', { a: plan.addr.ladderIp }],
  ]);
}

/** Answers one query for the zone (pure; exported for tests). */
export function answerQuery(zone: ReturnType<typeof labZone>, msg: Buffer): Buffer | undefined {
  let q;
  try {
    q = decodeDnsQuestion(msg, 0);
  } catch {
    return undefined;
  }
  if (!q || !isQuery(q.value.flags)) return undefined;
  const entry = zone.get(q.value.name);
  if (!entry) return buildAnswer(msg, q.value, null);
  const records: DnsRecord[] = [];
  if (q.value.qtype === DNS_TYPE.A)
    records.push({ type: DNS_TYPE.A, ttl: 300, rdata: ipv4Bytes(entry.a) });
  if (q.value.qtype === DNS_TYPE.AAAA && entry.aaaa)
    records.push({ type: DNS_TYPE.AAAA, ttl: 300, rdata: ipv6Bytes(entry.aaaa) });
  return buildAnswer(msg, q.value, records);
}

/**
 * The size of page n of a site, 2–60 KB, spread like the pages of a browsing session (a fixed
 * function of n, so every run and every transport fetches the same pages).
 */
export function pageSize(n: number): number {
  const x = Math.imul(n + 1, 0x9e3779b1) >>> 0;
  return 2048 + (x % (58 * 1024));
}

function site(name: string) {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/whoami') {
      // Which address the request came from: the client's own, or a tunnel server's (routing tests).
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`ladder lab site ${name}, from ${req.socket.remoteAddress ?? '?'}\n`);
      return;
    }
    const page = /^\/page\/(\d{1,6})$/.exec(req.url ?? '');
    if (page) {
      const head = `ladder lab site ${name}, page ${page[1]}\n`;
      const size = Math.max(pageSize(Number(page[1])), head.length);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(size) });
      res.end(head + 'x'.repeat(size - head.length));
      return;
    }
    const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    if (m) {
      let left = Math.min(Number(m[1]), MAX_BYTES);
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(left),
      });
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, CHUNK.length);
          left -= n;
          if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`ladder lab site ${name}\n`);
  };
}

function listen(
  server: {
    listen(port: number, host: string, cb: () => void): unknown;
    once(e: 'error', cb: (err: Error) => void): unknown;
  },
  host: string,
  port: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
}

/** Queries the ISP resolver holds at once, and how long each waits for the upstream answer. */
export const ISP_RESOLVER_MAX_PENDING = 256;
export const ISP_RESOLVER_TIMEOUT_MS = 3000;

/**
 * The domestic ISP's recursive resolver, as far as the lab needs one: each UDP query is sent on to
 * the abroad resolver from this address, and the answer goes back to whoever asked. It stands for
 * the resolvers that still reach abroad under Iran's 2026 allowlist, the path DNS tunnels take
 * (n4p#561, #586). Bounded: at most {@link ISP_RESOLVER_MAX_PENDING} queries wait, each at most
 * {@link ISP_RESOLVER_TIMEOUT_MS}; an answer nobody waits for is dropped.
 */
export class IspResolver {
  readonly #down: UdpSocket;
  /** The answering socket is the caller's (shared with other services): not bound nor closed here. */
  readonly #sharedDown: boolean;
  readonly #up = createSocket('udp4');
  /** Upstream ID → who asked, with the ID they used. */
  readonly #pending = new Map<
    number,
    { port: number; address: string; theirs: number; timer: NodeJS.Timeout }
  >();
  #nextId = 0;

  readonly #listen: { address: string; port: number };
  readonly #upstream: { address: string; port: number };

  /**
   * With `down`, queries come from the caller through {@link forward} and answers leave by that
   * socket; without, the resolver listens on `listen` itself.
   */
  constructor(
    listen: { address: string; port: number },
    upstream: { address: string; port: number },
    down?: UdpSocket,
  ) {
    this.#listen = listen;
    this.#upstream = upstream;
    this.#sharedDown = down !== undefined;
    this.#down = down ?? createSocket('udp4');
    if (!down) this.#down.on('message', (msg, from) => this.#query(msg, from));
    this.#up.on('message', (msg) => this.#answer(msg));
  }

  async start(): Promise<void> {
    if (!this.#sharedDown) await bindUdp(this.#down, this.#listen.port, this.#listen.address);
    await bindUdp(this.#up, 0, this.#listen.address);
  }

  /** Sends a query on upstream; its answer goes back to `from`. */
  forward(msg: Buffer, from: { port: number; address: string }): void {
    this.#query(msg, from);
  }

  close(): void {
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    if (!this.#sharedDown) this.#down.close();
    this.#up.close();
  }

  #query(msg: Buffer, from: { port: number; address: string }): void {
    if (msg.length < 12 || this.#pending.size >= ISP_RESOLVER_MAX_PENDING) return;
    // A fresh ID upstream: two clients may use the same one.
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    this.#nextId = (id + 1) & 0xffff;
    const out = Buffer.from(msg);
    const theirs = out.readUInt16BE(0);
    out.writeUInt16BE(id, 0);
    const timer = setTimeout(() => this.#pending.delete(id), ISP_RESOLVER_TIMEOUT_MS);
    this.#pending.set(id, { port: from.port, address: from.address, theirs, timer });
    this.#up.send(out, this.#upstream.port, this.#upstream.address);
  }

  #answer(msg: Buffer): void {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    const back = Buffer.from(msg);
    back.writeUInt16BE(p.theirs, 0);
    this.#down.send(back, p.port, p.address);
  }
}

/** Starts the abroad or domestic services; resolves once every socket listens. */
export async function startServices(
  plan: LabPlan,
  role: 'abroad' | 'domestic',
): Promise<() => void> {
  const closers: (() => void)[] = [];
  if (role === 'domestic') await startDomesticServices(plan, closers);
  else {
    await startLabDns(plan, closers);
    const key = readFileSync(join(plan.stateDir, 'site-key.pem'));
    const cert = readFileSync(join(plan.stateDir, 'site-cert.pem'));
    await startSites(plan, { key, cert }, closers);
    await startSinks(plan, { key, cert }, closers);
    await startDecoyReference(plan, closers);
  }
  return () => closers.forEach((c) => c());
}

/** The domestic site and the ISP's resolver. */
async function startDomesticServices(plan: LabPlan, closers: (() => void)[]): Promise<void> {
  const s = createHttpServer(site(plan.names.domestic));
  await listen(s, plan.addr.domestic, 80);
  closers.push(() => s.close());
  const resolver = new IspResolver(
    { address: plan.addr.domestic, port: 53 },
    { address: plan.addr.dnsIp, port: 53 },
  );
  await resolver.start();
  closers.push(() => resolver.close());
}

function bindUdp(socket: UdpSocket, port: number, address: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => resolve());
  });
}

/**
 * The zone Ladder's DNS tunnel runs under (`ladder server --dns-tunnel`), delegated by the lab's
 * resolver to the Ladder server's address, port 53.
 */
export const LADDER_DNS_TUNNEL_DOMAIN = 'tunnel.ladder.lab';

/** Whether a query asks for a name in the tunnel's zone (the resolver then asks the Ladder server). */
function inTunnelZone(msg: Buffer): boolean {
  let q;
  try {
    q = decodeDnsQuestion(msg, 0);
  } catch {
    return false;
  }
  const name = q?.value.name.toLowerCase() ?? '';
  return name === LADDER_DNS_TUNNEL_DOMAIN || name.endsWith(`.${LADDER_DNS_TUNNEL_DOMAIN}`);
}

/**
 * The lab zone's authoritative server, over UDP and TCP. Queries for the DNS tunnel's zone go on
 * to the Ladder server, as a recursive resolver follows the zone's delegation (bounded as the ISP
 * resolver is: {@link IspResolver}).
 */
async function startLabDns(plan: LabPlan, closers: (() => void)[]): Promise<void> {
  const zone = labZone(plan);
  const dns = createSocket('udp4');
  const tunnel = new IspResolver(
    { address: plan.addr.dnsIp, port: 0 },
    { address: plan.addr.ladderIp, port: 53 },
    dns,
  );
  dns.on('message', (msg, rinfo) => {
    if (inTunnelZone(msg)) return tunnel.forward(msg, rinfo);
    const out = answerQuery(zone, msg);
    if (out) dns.send(out, rinfo.port, rinfo.address);
  });
  await bindUdp(dns, 53, plan.addr.dnsIp);
  await tunnel.start();
  closers.push(() => {
    tunnel.close();
    dns.close();
  });
  const dnsTcp = dnsOverTcp(zone);
  await listen(dnsTcp, plan.addr.dnsIp, 53);
  closers.push(() => dnsTcp.close());
}

/** The same zone over TCP (RFC 7766): what a client asks through a tunnel (docs/routing.md). */
function dnsOverTcp(zone: ReturnType<typeof labZone>): Server {
  return createTcpServer((s) => {
    s.on('error', () => s.destroy());
    s.setTimeout(10_000, () => s.destroy());
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length > 2 + 0xffff) return void s.destroy();
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const out = answerQuery(zone, Buffer.from(msg));
        if (!out) return void s.destroy();
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        s.write(Buffer.concat([len, out]));
      }
    });
  });
}

/** The blocked and the allowed site, each over HTTP and HTTPS. */
async function startSites(
  plan: LabPlan,
  tls: { key: Buffer; cert: Buffer },
  closers: (() => void)[],
): Promise<void> {
  for (const [ip, name] of [
    [plan.addr.blockedIp, plan.names.blocked],
    [plan.addr.allowedIp, plan.names.allowed],
  ] as const) {
    const h = createHttpServer(site(name));
    await listen(h, ip, 80);
    const hs = createHttpsServer(tls, site(name));
    await listen(hs, ip, 443);
    closers.push(
      () => h.close(),
      () => hs.close(),
    );
  }
}

/** The echo sink over TCP and UDP, and the naive tunnel beside it. */
async function startSinks(
  plan: LabPlan,
  tls: { key: Buffer; cert: Buffer },
  closers: (() => void)[],
): Promise<void> {
  // echo sink: reflects whatever arrives (FET controls send random first packets to it)
  const sink = createTcpServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await listen(sink, plan.addr.sinkIp, SINK_PORT);
  closers.push(() => sink.close());
  const tunnel = naiveTunnelServer(tls.key, tls.cert);
  await listen(tunnel, plan.addr.sinkIp, NAIVE_TUNNEL_PORT);
  closers.push(() => tunnel.close());
  // and over UDP on the same port (QUIC and UDP controls)
  const udpSink = createSocket('udp4');
  udpSink.on('message', (msg, rinfo) => udpSink.send(msg, rinfo.port, rinfo.address));
  await bindUdp(udpSink, SINK_PORT, plan.addr.sinkIp);
  closers.push(() => udpSink.close());
}

/**
 * The same TLS front as Ladder's one-port server (src/server/port-mux.ts): a TLSSocket over the
 * accepted socket with the same secure context options and ALPN, in front of the decoy site.
 */
async function startDecoyReference(plan: LabPlan, closers: (() => void)[]): Promise<void> {
  const decoy = new DecoySite();
  const secureContext = createSecureContext({
    key: readFileSync(join(plan.stateDir, 'ladder-key.pem')),
    cert: readFileSync(join(plan.stateDir, 'ladder-cert.pem')),
    ...DECOY_TLS_OPTIONS,
  });
  // Bytes that do not start TLS are plain HTTP to the site, as nginx's ssl port reads them.
  const decoyTls = createTcpServer((raw) => {
    raw.on('error', () => raw.destroy());
    splitByFirstByte(
      raw,
      (conn) => {
        const s = new TLSSocket(
          conn as Socket,
          {
            isServer: true,
            secureContext,
            ALPNProtocols: ['http/1.1'],
          } as never,
        );
        s.on('error', () => s.destroy());
        s.once('secure', () => decoy.handle(s, Buffer.alloc(0)));
      },
      decoy.handlePlainOnTlsPort,
    );
  });
  await listen(decoyTls, plan.addr.ladderIp, DECOY_REFERENCE_PORT);
  closers.push(
    () => decoyTls.close(),
    () => decoy.close(),
  );
}

/** Longest CONNECT head the naive tunnel reads. */
const MAX_TUNNEL_HEAD = 4096;

/**
 * The naive tunnel's server: TLS, then `CONNECT host:port …\r\n\r\n`, then the bytes after the head
 * and everything later relayed to host:port (lab addresses only: the abroad namespace has no other
 * route). It never answers the head: the client does not wait for it.
 */
function naiveTunnelServer(key: Buffer, cert: Buffer) {
  return createTlsServer({ key, cert }, (s) => {
    s.on('error', () => s.destroy());
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_TUNNEL_HEAD) s.destroy();
        return;
      }
      s.off('data', onData);
      s.pause();
      const m = /^CONNECT ([\w.-]+):(\d{1,5}) /.exec(head.toString('latin1', 0, end));
      if (!m) return s.destroy();
      const up = connectTcp({ host: m[1]!, port: Number(m[2]) }, () => {
        up.write(head.subarray(end + 4));
        s.pipe(up).pipe(s);
        s.resume();
      });
      up.on('error', () => s.destroy());
      s.on('close', () => up.destroy());
    };
    s.on('data', onData);
  });
}
