/**
 * A script for lab tests, run inside a namespace: `node socks-udp-dns.js <socksPort|0> <dnsIp> <name>
 * <genuineIp>`. Sends one A query for `name` to `dnsIp:53`, through the SOCKS5 proxy on
 * 127.0.0.1:<socksPort> (UDP ASSOCIATE) or, with port 0, directly; prints as JSON the addresses of
 * every answer received until the one carrying `genuineIp` arrives (forged answers race ahead of it),
 * or until 8 s have passed. Exits 0 when the genuine answer came.
 */
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import {
  answerAddresses,
  decodeDnsMessage,
  dnsMessageBytes,
  dnsQuery,
  DNS_TYPE,
} from '../../src/codec/dns.js';
import { decodeUdpDatagram, encodeUdpDatagram, SOCKS_CMD } from '../../src/codec/socks5.js';
import { socksRequest } from './socks5-client.js';

const [portText, dnsIp, name, genuine] = process.argv.slice(2) as [string, string, string, string];
const socksPort = Number(portText);
const query = dnsMessageBytes(dnsQuery(randomInt(0x10000), name, DNS_TYPE.A));
const seen: string[][] = [];
let relay: { host: string; port: number } | undefined;
let control: { destroy(): void } | undefined;
if (socksPort > 0) {
  const r = await socksRequest(socksPort, SOCKS_CMD.UDP_ASSOCIATE, { host: '0.0.0.0', port: 0 });
  if (r.code !== 0) {
    console.log(JSON.stringify({ error: `UDP ASSOCIATE refused with ${r.code}` }));
    process.exit(1);
  }
  control = r.socket;
  relay = { host: r.bound.host === '0.0.0.0' ? '127.0.0.1' : r.bound.host, port: r.bound.port };
}
const udp = createSocket('udp4');
// Through the proxy, datagrams go to its relay on loopback; directly, to the lab's resolver.
await new Promise<void>((r) => udp.bind(0, relay ? '127.0.0.1' : undefined, r));
const done = (ok: boolean): void => {
  console.log(JSON.stringify({ answers: seen }));
  udp.close();
  control?.destroy();
  process.exit(ok ? 0 : 1);
};
udp.on('message', (msg) => {
  let payload: Uint8Array = msg;
  if (relay) {
    try {
      payload = decodeUdpDatagram(msg).data;
    } catch {
      return;
    }
  }
  let addrs: string[];
  try {
    const m = decodeDnsMessage(payload, 0)?.value;
    if (!m) return;
    addrs = answerAddresses(m);
  } catch {
    return;
  }
  seen.push(addrs);
  if (addrs.includes(genuine)) done(true);
});
// Deadline only: the outcome is decided by which answers arrive, not by this timer.
setTimeout(() => done(false), 8_000).unref();
if (relay) udp.send(encodeUdpDatagram({ host: dnsIp, port: 53 }, query), relay.port, relay.host);
else udp.send(query, 53, dnsIp);
