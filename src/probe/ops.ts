/**
 * The probe's network operations, one step each so that a failure can be pinned to its step: a TCP
 * connect, a TLS handshake over a given stream (a socket, or a stream through the tunnel), an HTTP
 * GET over a given stream, and "send the first data, wait for an answer". Each has its own timeout,
 * never retries, and reports an OONI failure string (failure.ts) and times on the caller's clock.
 * @module
 */
import { deadline, signalWithin } from '../transport/deadline.js';
import { connect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates, type TLSSocket } from 'node:tls';
import { request, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { StreamDialer, Target } from '../transport/types.js';
import { EofFailure, failureOf, TimeoutFailure, type Failure } from './failure.js';

export type Now = () => number;

export interface StepOptions {
  readonly timeoutMs: number;
  readonly now: Now;
  readonly signal?: AbortSignal;
}

export interface TcpConnectResult {
  readonly ip: string;
  readonly port: number;
  readonly t0: number;
  readonly t: number;
  readonly failure: Failure | null;
  /** The connected socket (the caller owns it and must destroy it). */
  readonly socket?: Socket;
}

/** One TCP connect to an address (no name resolution here). */
export function tcpConnect(ip: string, port: number, o: StepOptions): Promise<TcpConnectResult> {
  const t0 = o.now();
  return new Promise((resolve) => {
    if (!isIP(ip)) {
      resolve({ ip, port, t0, t: o.now(), failure: `unknown_failure: '${ip}' is not an address` });
      return;
    }
    const socket = connect({ host: ip, port, noDelay: true, allowHalfOpen: true });
    let done = false;
    const finish = (failure: Failure | null): void => {
      if (done) return;
      done = true;
      clear();
      socket.off('error', onError);
      if (failure) {
        socket.destroy();
        resolve({ ip, port, t0, t: o.now(), failure });
      } else {
        socket.on('error', () => socket.destroy()); // later errors belong to the next step
        resolve({ ip, port, t0, t: o.now(), failure: null, socket });
      }
    };
    const onError = (err: Error): void => finish(failureOf(err));
    const clear = deadline(
      o.timeoutMs,
      o.signal,
      () => finish('generic_timeout_error'),
      () => finish('interrupted'),
    );
    socket.once('error', onError);
    socket.once('connect', () => finish(null));
  });
}

export interface TlsOptions extends StepOptions {
  /** Name to send as SNI and to verify the certificate for (an address: no SNI, verify the IP). */
  readonly serverName: string;
  /** Extra trusted CA certificates (PEM), added to Node's built-in store. */
  readonly extraCa?: readonly string[];
  readonly alpn?: readonly string[];
}

export interface TlsResult {
  readonly t0: number;
  readonly t: number;
  readonly failure: Failure | null;
  readonly socket?: TLSSocket;
  readonly cipherSuite?: string;
  readonly tlsVersion?: string;
  readonly negotiatedProtocol?: string;
  /** The peer's chain, DER in base64, leaf first (at most 5). */
  readonly peerCertificates: readonly string[];
}

/** The CA list: Node's built-in roots plus `extra`; undefined (Node's default) when no extra. */
export function trustStore(extra: readonly string[] | undefined): string[] | undefined {
  return extra && extra.length > 0 ? [...rootCertificates, ...extra] : undefined;
}

/** A TLS handshake over `stream`, verifying the certificate for `serverName`. */
export function tlsHandshake(stream: Duplex, o: TlsOptions): Promise<TlsResult> {
  const t0 = o.now();
  return new Promise((resolve) => {
    const ca = trustStore(o.extraCa);
    const tls = tlsConnect({
      socket: stream,
      host: o.serverName,
      ...(isIP(o.serverName) ? {} : { servername: o.serverName }),
      ALPNProtocols: [...(o.alpn ?? ['http/1.1'])],
      ...(ca ? { ca } : {}),
    });
    let done = false;
    const finish = (failure: Failure | null): void => {
      if (done) return;
      done = true;
      clear();
      tls.off('error', onError);
      if (failure) {
        tls.destroy();
        stream.destroy();
        resolve({ t0, t: o.now(), failure, peerCertificates: [] });
        return;
      }
      tls.on('error', () => tls.destroy());
      const cipher = tls.getCipher();
      resolve({
        t0,
        t: o.now(),
        failure: null,
        socket: tls,
        cipherSuite: cipher?.standardName ?? cipher?.name,
        tlsVersion: tls.getProtocol() ?? undefined,
        negotiatedProtocol: tls.alpnProtocol || undefined,
        peerCertificates: peerChain(tls),
      });
    };
    const onError = (err: Error): void => finish(failureOf(err));
    const clear = deadline(
      o.timeoutMs,
      o.signal,
      () => finish('generic_timeout_error'),
      () => finish('interrupted'),
    );
    tls.once('error', onError);
    // A stream through the tunnel that ends without a handshake: the server could not reach the site.
    stream.once('end', () =>
      finish(failureOf(new EofFailure('closed before the TLS handshake ended'))),
    );
    tls.once('secureConnect', () => finish(null));
  });
}

function peerChain(tls: TLSSocket): string[] {
  const out: string[] = [];
  let c = tls.getPeerCertificate(true);
  const seen = new Set<string>();
  while (c && c.raw && out.length < 5) {
    const b64 = c.raw.toString('base64');
    if (seen.has(b64)) break;
    seen.add(b64);
    out.push(b64);
    c = c.issuerCertificate;
  }
  return out;
}

/** Request headers as OONI's Web Connectivity sends them (ts-017 example), plus Connection: close. */
export const REQUEST_HEADERS: readonly (readonly [string, string])[] = [
  ['Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'],
  ['Accept-Language', 'en-US,en;q=0.9'],
  [
    'User-Agent',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36',
  ],
];

export interface HttpOptions extends StepOptions {
  /** Read at most this many body bytes (the rest is left unread: body_is_truncated). */
  readonly maxBodyBytes: number;
}

export interface HttpResult {
  readonly t0: number;
  readonly t: number;
  readonly failure: Failure | null;
  readonly status?: number;
  readonly headersList: readonly (readonly [string, string])[];
  readonly body: Buffer;
  readonly bodyTruncated: boolean;
  readonly requestHeaders: readonly (readonly [string, string])[];
}

/** GET `url` over an open stream (plain or TLS); the stream is consumed and destroyed. */
export function httpGet(stream: Duplex, url: URL, o: HttpOptions): Promise<HttpResult> {
  const t0 = o.now();
  const requestHeaders: [string, string][] = [
    ['Host', url.host],
    ...REQUEST_HEADERS.map(([k, v]) => [k, v] as [string, string]),
    ['Connection', 'close'],
  ];
  return new Promise((resolve) => {
    let done = false;
    let res: IncomingMessage | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (failure: Failure | null, truncated = false): void => {
      if (done) return;
      done = true;
      clear();
      req.destroy();
      stream.destroy();
      resolve({
        t0,
        t: o.now(),
        failure,
        ...(res ? { status: res.statusCode } : {}),
        headersList: res ? pairs(res.rawHeaders) : [],
        body: Buffer.concat(chunks, size),
        bodyTruncated: truncated,
        requestHeaders,
      });
    };
    const req = request({
      createConnection: () => stream as Socket,
      method: 'GET',
      path: `${url.pathname || '/'}${url.search}`,
      headers: requestHeaders.flat(),
      setHost: false,
    });
    const clear = deadline(
      o.timeoutMs,
      o.signal,
      () => finish('generic_timeout_error'),
      () => finish('interrupted'),
    );
    req.on('error', (err) => finish(failureOf(err)));
    req.on('response', (r) => {
      res = r;
      r.on('data', (c: Buffer) => {
        const room = o.maxBodyBytes - size;
        if (c.length >= room) {
          chunks.push(c.subarray(0, room));
          size += room;
          if (c.length > room || !r.complete) finish(null, true);
          return;
        }
        chunks.push(c);
        size += c.length;
      });
      r.on('end', () => finish(null));
      r.on('error', (err) => finish(failureOf(err)));
      r.on('aborted', () => finish('connection_reset'));
    });
    req.end();
  });
}

function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/** The page title, as OONI extracts it (first <title>, at most 512 characters). */
export function extractTitle(body: Buffer): string | undefined {
  const text = body.subarray(0, 256 * 1024).toString('utf8');
  const m = /<title[^>]*>([^<]{0,512})<\/title>/i.exec(text);
  return m ? m[1]!.trim() : undefined;
}

export interface ExchangeResult {
  readonly t0: number;
  readonly t: number;
  /** What came back first: data, an orderly close, a reset or other error, or nothing in time. */
  readonly outcome: 'data' | 'eof' | 'error' | 'timeout';
  readonly failure: Failure | null;
  /** Bytes read (up to `readBytes`). */
  readonly bytes: number;
  /** The first bytes read (at most 64 KiB) for the caller to check. */
  readonly head: Buffer;
}

/**
 * Writes `payload` and waits until `readBytes` bytes come back, the peer closes, an error, or the
 * timeout. Used to tell "silence after the first data packet" from "reset after it".
 */
export function exchange(
  stream: Duplex,
  payload: Uint8Array,
  readBytes: number,
  o: StepOptions,
): Promise<ExchangeResult> {
  const t0 = o.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (outcome: ExchangeResult['outcome'], failure: Failure | null): void => {
      if (done) return;
      done = true;
      clear();
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.on('error', () => stream.destroy());
      const head = Buffer.concat(chunks, size).subarray(0, 64 * 1024);
      resolve({ t0, t: o.now(), outcome, failure, bytes: size, head });
    };
    const onData = (c: Buffer): void => {
      if (size < 64 * 1024) chunks.push(c);
      size += c.length;
      if (size >= readBytes) finish('data', null);
    };
    const onEnd = (): void => finish(size > 0 ? 'data' : 'eof', size > 0 ? null : 'eof_error');
    const onError = (err: Error): void =>
      finish(size > 0 ? 'data' : 'error', size > 0 ? null : failureOf(err));
    const clear = deadline(
      o.timeoutMs,
      o.signal,
      () =>
        finish(
          size > 0 ? 'data' : 'timeout',
          size > 0 ? null : failureOf(new TimeoutFailure('answer')),
        ),
      () => finish('error', 'interrupted'),
    );
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.write(payload);
  });
}

/**
 * The failure behind a dialer's error: DialErrors keep the system error as `cause`; their own
 * timeouts ("no answer within", "no handshake within") are timeouts.
 */
export function dialFailure(err: unknown): Failure {
  const e = err as { cause?: unknown; message?: string; code?: string } | undefined;
  if (e?.cause !== undefined) return failureOf(e.cause);
  if (/no (answer|handshake) within|timed out/i.test(e?.message ?? ''))
    return 'generic_timeout_error';
  if (e?.code === 'ERR_ABORTED') return 'interrupted';
  return failureOf(err);
}

/** Dials through `dialer`, giving up after `timeoutMs` (the dial is aborted, not left running). */
export async function dialWithin(
  dialer: StreamDialer,
  target: Target,
  timeoutMs: number,
): Promise<Duplex> {
  const step = signalWithin(timeoutMs);
  try {
    return await dialer.dial(target, step.signal);
  } catch (err) {
    if (step.timedOut()) throw new TimeoutFailure('dial');
    throw err;
  } finally {
    step.clear();
  }
}
