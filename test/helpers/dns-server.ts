/**
 * A loopback DNS server for tests, on Ladder's own codec: answers A and AAAA queries from a zone
 * (name → IPv4 addresses), NXDOMAIN for names it does not know, over UDP on 127.0.0.1, and with
 * `startTcpDnsServer` over TCP (RFC 7766 framing), `startDotServer` over TLS (RFC 7858) and
 * `startDohServer` over HTTPS (RFC 8484, Node's https server), each with a few ways to misbehave.
 */
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { createServer as createHttpsServer } from 'node:https';
import {
  decodeDnsMessage,
  decodeDnsTcpFrame,
  dnsMessageBytes,
  encodeDnsTcpFrame,
  DNS_CLASS_IN,
  DNS_FLAG,
  DNS_RCODE,
  DNS_TYPE,
  type DnsRecord,
} from '../../src/codec/dns.js';

export interface DnsServer {
  readonly port: number;
  /** Queries seen, as "name TYPE". */
  readonly seen: string[];
  close(): Promise<void>;
}

export async function startDnsServer(zone: Record<string, string[]>): Promise<DnsServer> {
  const sock = createSocket('udp4');
  const seen: string[] = [];
  sock.on('message', (msg, rinfo) => {
    const out = answer(zone, seen, msg);
    if (out) sock.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return {
    port: sock.address().port,
    seen,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

/** The answer to one query message, or undefined for one that is not a query. */
export function answer(
  zone: Record<string, string[]>,
  seen: string[],
  msg: Uint8Array,
): Buffer | undefined {
  let q;
  try {
    q = decodeDnsMessage(msg, 0)?.value;
  } catch {
    return undefined;
  }
  const question = q?.questions[0];
  if (!q || !question) return undefined;
  const name = question.name.toLowerCase();
  seen.push(
    `${name} ${question.type === DNS_TYPE.AAAA ? 'AAAA' : question.type === DNS_TYPE.A ? 'A' : question.type}`,
  );
  const known = zone[name];
  const answers: DnsRecord[] =
    known && question.type === DNS_TYPE.A
      ? known.map((data) => ({
          name: question.name,
          type: DNS_TYPE.A,
          class: DNS_CLASS_IN,
          ttl: 60,
          data,
        }))
      : [];
  const out = dnsMessageBytes({
    id: q.id,
    flags:
      DNS_FLAG.QR |
      DNS_FLAG.RA |
      (q.flags & DNS_FLAG.RD) |
      (known ? DNS_RCODE.NOERROR : DNS_RCODE.NXDOMAIN),
    questions: [question],
    answers,
    authorities: [],
    additionals: [],
  });
  return out;
}

/** The same zone over TCP on 127.0.0.1: one framed answer per framed query. */
export async function startTcpDnsServer(zone: Record<string, string[]>): Promise<DnsServer> {
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        const f = decodeDnsTcpFrame(buf, 0);
        if (!f) return;
        buf = buf.subarray(f.bytesRead);
        const out = answer(zone, seen, f.value);
        if (!out) return void s.destroy();
        const frame = Buffer.alloc(out.length + 2);
        encodeDnsTcpFrame(out, frame, 0);
        s.write(frame);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface TlsDnsServer extends DnsServer {
  /** The remote port of each connection accepted, in order. */
  readonly peers: number[];
}

export interface TlsDnsOptions {
  readonly cert: string;
  readonly key: string;
  /** DoT: hold a connection's first answers until this many wait, then send them in reverse. */
  readonly batch?: number;
  /** Close the connection after each answer. */
  readonly closeAfterAnswer?: boolean;
  /** Read queries, never answer. */
  readonly silent?: boolean;
  /** DoH: the status, Content-Type and body to answer with instead of the DNS answer. */
  readonly status?: number;
  readonly contentType?: string;
  readonly body?: Buffer;
}

/** The zone over DNS over TLS on 127.0.0.1. */
export async function startDotServer(
  zone: Record<string, string[]>,
  o: TlsDnsOptions,
): Promise<TlsDnsServer> {
  const seen: string[] = [];
  const peers: number[] = [];
  const sockets = new Set<import('node:tls').TLSSocket>();
  const server = createTlsServer({ cert: o.cert, key: o.key }, (s) => {
    sockets.add(s);
    peers.push(s.remotePort ?? 0);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    let buf = Buffer.alloc(0);
    const held: Buffer[] = [];
    let batch = o.batch ?? 1;
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        const f = decodeDnsTcpFrame(buf, 0);
        if (!f) return;
        buf = buf.subarray(f.bytesRead);
        const out = answer(zone, seen, f.value);
        if (!out) return void s.destroy();
        if (o.silent) continue;
        const frame = Buffer.alloc(out.length + 2);
        encodeDnsTcpFrame(out, frame, 0);
        held.push(frame);
        if (held.length < batch) continue;
        for (const h of held.reverse()) s.write(h);
        held.length = 0;
        batch = 1;
        if (o.closeAfterAnswer) s.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    peers,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The zone over DNS over HTTPS (POST application/dns-message) on 127.0.0.1, any path. */
export async function startDohServer(
  zone: Record<string, string[]>,
  o: TlsDnsOptions,
): Promise<TlsDnsServer & { readonly paths: string[] }> {
  const seen: string[] = [];
  const peers: number[] = [];
  const paths: string[] = [];
  const server = createHttpsServer({ cert: o.cert, key: o.key }, (req, res) => {
    paths.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const out = answer(zone, seen, Buffer.concat(chunks));
      if (o.silent) return;
      const body = o.body ?? out ?? Buffer.alloc(0);
      res.writeHead(o.status ?? 200, {
        'Content-Type': o.contentType ?? 'application/dns-message',
        'Content-Length': body.length,
        ...(o.closeAfterAnswer ? { Connection: 'close' } : {}),
      });
      res.end(body);
    });
  });
  server.on('connection', (s: Socket) => peers.push(s.remotePort ?? 0));
  // Node closes idle keep-alive connections after 5 s by default: a loaded machine can pause that
  // long between two queries, and the tests count connections.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    peers,
    paths,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
