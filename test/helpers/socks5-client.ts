/**
 * A tiny SOCKS5 client for tests: CONNECT, and UDP ASSOCIATE with datagram round trips (RFC 1928).
 */
import { connect, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import {
  decodeReply,
  decodeUdpDatagram,
  encodeGreeting,
  encodeRequest,
  encodeUdpDatagram,
  requestLength,
  SOCKS_CMD,
} from '../../src/codec/socks5.js';
import type { Target } from '../../src/transport/types.js';

function readExactly(
  s: Socket,
  want: (buf: Buffer) => number | null,
  timeoutMs = 10_000,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => done(new Error('SOCKS5 reply timed out')), timeoutMs);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const n = want(buf);
      if (n !== null) {
        s.off('data', onData);
        const rest = buf.subarray(n);
        if (rest.length) s.unshift(rest);
        done(null, buf.subarray(0, n));
      }
    };
    function done(err: Error | null, value?: Buffer): void {
      clearTimeout(t);
      s.off('data', onData);
      s.off('error', onErr);
      if (err) reject(err);
      else resolve(value!);
    }
    const onErr = (e: Error): void => done(e);
    s.on('data', onData);
    s.on('error', onErr);
  });
}

/** Opens a SOCKS5 control connection and sends a request; resolves with the reply code and the socket. */
export async function socksRequest(
  proxyPort: number,
  command: number,
  target: Target,
): Promise<{ code: number; bound: Target; socket: Socket }> {
  const s = connect(proxyPort, '127.0.0.1');
  await new Promise<void>((r, j) => {
    s.once('connect', r);
    s.once('error', j);
  });
  const g = Buffer.alloc(3);
  encodeGreeting([0], g, 0);
  s.write(g);
  await readExactly(s, (b) => (b.length >= 2 ? 2 : null));
  const req = Buffer.alloc(requestLength({ command, target }));
  encodeRequest({ command, target }, req, 0);
  s.write(req);
  const rep = await readExactly(s, (b) => decodeReply(b, 0)?.bytesRead ?? null);
  const d = decodeReply(rep, 0)!;
  return { code: d.value.code, bound: d.value.bound, socket: s };
}

/** UDP ASSOCIATE through the proxy, then send each message to `target` and collect the replies. */
export async function socksUdpRoundTrip(
  proxyPort: number,
  target: Target,
  messages: string[],
  rounds = 20,
): Promise<string[]> {
  const { code, bound, socket } = await socksRequest(proxyPort, SOCKS_CMD.UDP_ASSOCIATE, {
    host: '0.0.0.0',
    port: 0,
  });
  if (code !== 0) throw new Error(`UDP ASSOCIATE refused with code ${code}`);
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  const got = new Set<string>();
  udp.on('message', (msg) => {
    try {
      got.add(Buffer.from(decodeUdpDatagram(msg).data).toString());
    } catch {
      /* ignore malformed */
    }
  });
  const relayHost = bound.host === '0.0.0.0' ? '127.0.0.1' : bound.host;
  // UDP may drop: resend the missing ones, a bounded number of rounds.
  for (let i = 0; i < rounds && got.size < messages.length; i++) {
    for (const m of messages)
      if (!got.has(m)) udp.send(encodeUdpDatagram(target, Buffer.from(m)), bound.port, relayHost);
    await new Promise((r) => setTimeout(r, 150));
  }
  udp.close();
  socket.destroy();
  return [...got].sort();
}
