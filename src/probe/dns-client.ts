/**
 * Stub resolvers for the probe: one query, one name, one type, no retries. Three ways to reach a
 * resolver: UDP from this machine (what the system resolver does, so what a censor sees), UDP through
 * a tunnel's PacketDialer, and DNS over TCP through any StreamDialer (the tunnel's, for the control).
 *
 * An on-path injector answers before the real resolver does (docs/censorship-techniques.md §4: forged answers race the
 * genuine one, which is not dropped). A datagram lookup therefore takes the first answer, as the
 * system would, and keeps listening for a short grace period: further answers to the same query with
 * other addresses are evidence of injection, reported as `lateAnswers`.
 * @module
 */
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  answerAddresses,
  decodeDnsMessage,
  decodeDnsTcpFrame,
  dnsMessageBytes,
  dnsQuery,
  dnsRcode,
  DNS_FLAG,
  DNS_TYPE,
  encodeDnsTcpFrame,
  type DnsMessage,
  type DnsRecord,
} from '../codec/dns.js';
import type { PacketDialer, StreamDialer, Target } from '../transport/types.js';
import { deadline, signalWithin } from '../transport/deadline.js';
import { EofFailure, failureOf, rcodeFailure, TimeoutFailure, type Failure } from './failure.js';

export interface DnsLookup {
  readonly hostname: string;
  readonly qtype: number;
  readonly engine: 'udp' | 'tcp';
  /** `host:port` of the resolver, with ` (tunnel)` when the query went through the tunnel. */
  readonly resolverAddress: string;
  /** Milliseconds on the caller's clock. */
  readonly t0: number;
  readonly t: number;
  readonly failure: Failure | null;
  readonly rcode: number | undefined;
  /** Addresses of the first acceptable answer. */
  readonly addresses: readonly string[];
  readonly answers: readonly DnsRecord[];
  readonly raw: Buffer | undefined;
  /** Answers to the same query that arrived after the first, within the grace period. */
  readonly lateAnswers: readonly {
    readonly rcode: number;
    readonly addresses: readonly string[];
  }[];
}

export interface LookupOptions {
  readonly timeoutMs: number;
  /** How long to keep listening after the first answer (datagram resolvers only; default 0). */
  readonly graceMs?: number;
  readonly signal?: AbortSignal;
  /** The caller's clock in milliseconds (default performance.now). */
  readonly now?: () => number;
}

export interface Resolver {
  readonly engine: 'udp' | 'tcp';
  readonly address: string;
  lookup(hostname: string, qtype: number, o: LookupOptions): Promise<DnsLookup>;
}

/** Most answers kept from one query (first and late ones together). */
const MAX_RESPONSES = 8;

function formatTarget(t: Target): string {
  return isIPv6(t.host) ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** True if `m` answers `q` (same ID, QR set, same question). */
export function answersQuery(m: DnsMessage, q: DnsMessage): boolean {
  const a = m.questions[0];
  const b = q.questions[0]!;
  return (
    m.id === q.id &&
    (m.flags & DNS_FLAG.QR) !== 0 &&
    a !== undefined &&
    a.type === b.type &&
    a.name.toLowerCase() === b.name.toLowerCase()
  );
}

/** The message in `raw`, or undefined if it does not decode (never throws). */
export function parseDnsMessage(raw: Uint8Array): DnsMessage | undefined {
  try {
    return decodeDnsMessage(raw, 0)?.value;
  } catch {
    return undefined;
  }
}

/** A DnsLookup from the first acceptable answer, or from the failure when there is none. */
export function lookupResult(
  base: Pick<DnsLookup, 'hostname' | 'qtype' | 'engine' | 'resolverAddress' | 't0'>,
  t: number,
  first: { m: DnsMessage; raw: Buffer } | undefined,
  failure: Failure | null,
  late: DnsLookup['lateAnswers'] = [],
): DnsLookup {
  if (!first)
    return {
      ...base,
      t,
      failure: failure ?? 'dns_server_misbehaving',
      rcode: undefined,
      addresses: [],
      answers: [],
      raw: undefined,
      lateAnswers: late,
    };
  const rcode = dnsRcode(first.m.flags);
  const addresses = answerAddresses(first.m).filter((a) =>
    base.qtype === DNS_TYPE.AAAA ? a.includes(':') : !a.includes(':'),
  );
  const f = rcodeFailure(rcode) ?? (addresses.length === 0 ? 'dns_no_answer' : null);
  return {
    ...base,
    t,
    failure: f,
    rcode,
    addresses,
    answers: first.m.answers,
    raw: first.raw,
    lateAnswers: late,
  };
}

/** A way to exchange datagrams with one resolver. */
export interface DatagramChannel {
  send(query: Buffer): void;
  close(): void;
}

/** UDP lookups; `open` makes a fresh channel (a fresh source port) for each query. */
export class DatagramResolver implements Resolver {
  readonly engine = 'udp' as const;
  readonly address: string;
  readonly #open: (
    onMessage: (msg: Buffer) => void,
    onError: (err: Error) => void,
  ) => DatagramChannel;

  constructor(
    address: string,
    open: (onMessage: (msg: Buffer) => void, onError: (err: Error) => void) => DatagramChannel,
  ) {
    this.address = address;
    this.#open = open;
  }

  lookup(hostname: string, qtype: number, o: LookupOptions): Promise<DnsLookup> {
    const now = o.now ?? (() => performance.now());
    const query = dnsQuery(randomInt(0x10000), hostname, qtype);
    const base = { hostname, qtype, engine: this.engine, resolverAddress: this.address, t0: now() };
    return new Promise((resolve) => {
      let first: { m: DnsMessage; raw: Buffer } | undefined;
      const late: { rcode: number; addresses: string[] }[] = [];
      let done = false;
      let firstAt = 0;
      let channel: DatagramChannel | undefined;
      const finish = (failure: Failure | null): void => {
        if (done) return;
        done = true;
        clear();
        if (grace) clearTimeout(grace);
        try {
          channel?.close();
        } catch {
          // already closed
        }
        resolve(lookupResult(base, first ? firstAt : now(), first, failure, late));
      };
      let grace: NodeJS.Timeout | undefined;
      const clear = deadline(
        o.timeoutMs,
        o.signal,
        () => finish(first ? null : 'generic_timeout_error'),
        () => finish('interrupted'),
      );
      try {
        channel = this.#open(
          (msg) => {
            if (done) return;
            const m = parseDnsMessage(msg);
            if (!m || !answersQuery(m, query)) return;
            if (!first) {
              first = { m, raw: Buffer.from(msg) };
              firstAt = now();
              const g = o.graceMs ?? 0;
              if (g <= 0) return finish(null);
              grace = setTimeout(() => finish(null), g);
              return;
            }
            late.push({ rcode: dnsRcode(m.flags), addresses: answerAddresses(m) });
            if (late.length + 1 >= MAX_RESPONSES) finish(null);
          },
          (err) => finish(first ? null : failureOf(err)),
        );
        channel.send(dnsMessageBytes(query));
      } catch (err) {
        finish(failureOf(err));
      }
    });
  }
}

/** UDP from this machine to `server`. */
export function udpResolver(
  server: Target,
  onSocket?: (socket: ReturnType<typeof createSocket>) => void,
): DatagramResolver {
  return new DatagramResolver(formatTarget(server), (onMessage, onError) => {
    const sock = createSocket(isIPv6(server.host) ? 'udp6' : 'udp4');
    sock.on('error', onError);
    // A socket hook (under --tun: bind to the machine's own address, around the tunnel) runs before
    // the first send; dgram queues sends while the bind is under way.
    onSocket?.(sock);
    sock.on('message', (msg, rinfo) => {
      if (rinfo.port === server.port) onMessage(msg);
    });
    return {
      send: (q) => sock.send(q, server.port, server.host, (err) => err && onError(err)),
      close: () => sock.close(),
    };
  });
}

/** UDP through a tunnel: the query leaves the tunnel's server toward `server`. */
export function tunnelUdpResolver(dialer: PacketDialer, server: Target): DatagramResolver {
  return new DatagramResolver(`${formatTarget(server)} (tunnel)`, (onMessage) => {
    const session = dialer.open((payload, from) => {
      if (from.port === server.port) onMessage(payload);
    });
    return { send: (q) => session.send(q, server), close: () => session.close() };
  });
}

/** Largest TCP answer read. */
const MAX_TCP_ANSWER_BYTES = 0xffff + 2;

/** DNS over TCP through a StreamDialer (direct or through the tunnel). */
export class StreamResolver implements Resolver {
  readonly engine = 'tcp' as const;
  readonly address: string;
  readonly #dialer: StreamDialer;
  readonly #server: Target;

  constructor(dialer: StreamDialer, server: Target, label = '') {
    this.#dialer = dialer;
    this.#server = server;
    this.address = `${formatTarget(server)}${label}`;
  }

  async lookup(hostname: string, qtype: number, o: LookupOptions): Promise<DnsLookup> {
    const now = o.now ?? (() => performance.now());
    const query = dnsQuery(randomInt(0x10000), hostname, qtype);
    const base = { hostname, qtype, engine: this.engine, resolverAddress: this.address, t0: now() };
    const step = signalWithin(o.timeoutMs, o.signal);
    let stream: Duplex | undefined;
    try {
      stream = await this.#dialer.dial(this.#server, step.signal);
      const q = dnsMessageBytes(query);
      const frame = Buffer.alloc(q.length + 2);
      encodeDnsTcpFrame(q, frame, 0);
      const raw = await exchangeFrame(stream, frame, step.signal);
      const m = parseDnsMessage(raw);
      if (!m) return lookupResult(base, now(), undefined, 'dns_server_misbehaving');
      if (m.id !== query.id)
        return lookupResult(base, now(), undefined, 'dns_reply_with_wrong_query_id');
      return lookupResult(base, now(), { m, raw }, null);
    } catch (err) {
      const f: Failure = step.timedOut() ? 'generic_timeout_error' : failureOf(err);
      return lookupResult(base, now(), undefined, f);
    } finally {
      step.clear();
      stream?.destroy();
    }
  }
}

/** Writes one frame and reads one framed answer. */
function exchangeFrame(stream: Duplex, frame: Buffer, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (c: Buffer): void => {
      chunks.push(c);
      size += c.length;
      if (size > MAX_TCP_ANSWER_BYTES) {
        cleanup();
        reject(new Error('DNS over TCP: answer too long'));
        return;
      }
      if (size < 2) return;
      const head = chunks[0]!.length >= 2 ? chunks[0]! : Buffer.concat(chunks, size);
      if (size < 2 + head.readUInt16BE(0)) return; // join the chunks once, when the frame is whole
      const f = decodeDnsTcpFrame(Buffer.concat(chunks, size), 0);
      cleanup();
      if (f) resolve(Buffer.from(f.value));
      else reject(new Error('DNS over TCP: bad frame'));
    };
    const onEnd = (): void => {
      cleanup();
      reject(new EofFailure('DNS over TCP: closed before the answer'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onAbort = (): void => {
      cleanup();
      reject(new TimeoutFailure('DNS over TCP'));
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
    stream.write(frame);
  });
}

/**
 * The first `nameserver` of a resolv.conf text, as a target on port 53, or undefined if there is
 * none (pure; the CLI reads the file).
 */
export function resolvConfNameserver(text: string): Target | undefined {
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m) {
      const host = m[1]!.replace(/%.*$/, '');
      return { host, port: 53 };
    }
  }
  return undefined;
}
