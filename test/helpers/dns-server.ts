/**
 * A loopback DNS server for tests, on Ladder's own codec: answers A and AAAA queries from a zone
 * (name → IPv4 addresses), NXDOMAIN for names it does not know, over UDP on 127.0.0.1, and with
 * `startTcpDnsServer` over TCP (RFC 7766 framing).
 */
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Socket } from 'node:net';
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
function answer(
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
