/**
 * A loopback DNS server for tests, on Ladder's own codec: answers A and AAAA queries from a zone
 * (name → IPv4 addresses), NXDOMAIN for names it does not know, over UDP on 127.0.0.1.
 */
import { createSocket } from 'node:dgram';
import {
  decodeDnsMessage,
  dnsMessageBytes,
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
    let q;
    try {
      q = decodeDnsMessage(msg, 0)?.value;
    } catch {
      return;
    }
    const question = q?.questions[0];
    if (!q || !question) return;
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
    sock.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return {
    port: sock.address().port,
    seen,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}
